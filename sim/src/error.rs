//! The crate's one error type.

use crate::types::{error_code_name, ErrorRecord};

/// Errors of inc-sim (bad input, shared memory, and protocol failures of the CPU backend).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A name did not parse.
    #[error("invalid {what}: {value:?}")]
    Parse {
        /// What was being parsed.
        what: &'static str,
        /// The input.
        value: String,
    },
    /// A configuration or argument is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The protocol failed on a rank (timeout, sequence or call mismatch, peer abort).
    #[error("allreduce failed: {}", .0)]
    Protocol(ErrorRecord),
    /// Shared memory could not be created, opened or mapped.
    #[error("shared memory {path}: {source}")]
    Shm {
        /// The file under /dev/shm.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl SimError {
    /// The protocol error code (`ERR_*`), when this is a protocol failure.
    pub fn code(&self) -> Option<u32> {
        match self {
            SimError::Protocol(r) => Some(r.code),
            _ => None,
        }
    }

    /// Short kind name (`timeout`, `call-mismatch`, ..., `config`).
    pub fn kind(&self) -> &'static str {
        match self {
            SimError::Parse { .. } => "parse",
            SimError::Config(_) => "config",
            SimError::Protocol(r) => error_code_name(r.code),
            SimError::Shm { .. } => "shm",
        }
    }
}

impl From<inc_proto::ParseError> for SimError {
    fn from(e: inc_proto::ParseError) -> Self {
        SimError::Parse {
            what: e.what,
            value: e.value,
        }
    }
}
