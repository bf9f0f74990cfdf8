//! The one error type of inc-comm.
//!
//! Every variant that can happen on one rank names that rank, and where a second rank is
//! involved (a dead or mismatched peer) it names the peer too. The type is `Clone` so a
//! poisoned [`Comm`](crate::Comm) can hand the same error back on every later call.

use std::sync::Arc;

/// An underlying error kept as the [`std::error::Error::source`] of a [`CommError`]:
/// shared (so `CommError` stays `Clone`) and compared by its message.
#[derive(Clone)]
pub struct ErrorSource(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl ErrorSource {
    /// Wraps an error.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ErrorSource(Arc::new(e))
    }
}

impl std::fmt::Debug for ErrorSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for ErrorSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for ErrorSource {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for ErrorSource {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for ErrorSource {}

/// Everything that can go wrong in inc-comm. New variants may come in minor releases
/// (`#[non_exhaustive]`): match with a wildcard arm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommError {
    /// An `INC_*` environment variable or a [`CommOptions`](crate::CommOptions) field has
    /// a value that cannot be used.
    #[error("invalid option {name}={value:?}: {reason}")]
    InvalidOption {
        /// Variable or field name.
        name: String,
        /// The value given.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A call argument is wrong (lengths differ, rank out of range...).
    #[error("rank {rank}: invalid argument: {reason}")]
    InvalidArgument {
        /// The rank that saw it.
        rank: usize,
        /// What is wrong.
        reason: String,
    },
    /// The ranks could not agree on a communicator; every rank returns the same error.
    #[error("rank {rank}: rendezvous failed: {reason}")]
    Rendezvous {
        /// The rank that reports it.
        rank: usize,
        /// Why (the same text on every rank when the verdict came from gathered data).
        reason: String,
    },
    /// A wait ran past its deadline (a peer never joined, died or is stuck).
    #[error("rank {rank}: timed out after {timeout_ms} ms {what}")]
    Timeout {
        /// The rank that waited.
        rank: usize,
        /// The peer waited for, when known.
        peer: Option<usize>,
        /// What was being waited for.
        what: String,
        /// The timeout that expired.
        timeout_ms: u64,
    },
    /// A peer raised the abort flag (it failed or timed out first).
    #[error("rank {rank}: peer {peer} aborted the call: {reason}")]
    PeerAborted {
        /// The rank that saw the abort.
        rank: usize,
        /// The rank that raised it.
        peer: usize,
        /// Details (block, phase, reason code).
        reason: String,
    },
    /// Ranks made different calls at the same sequence number (size, dtype, op or algo).
    #[error("rank {rank}: call mismatch with peer {peer}: {reason}")]
    CallMismatch {
        /// The rank that detected it.
        rank: usize,
        /// The peer whose call differs.
        peer: usize,
        /// Details.
        reason: String,
    },
    /// Ranks disagree about how many calls happened (a peer is ahead).
    #[error(
        "rank {rank}: sequence mismatch with peer {peer}: expected {expected:#x}, saw {seen:#x}"
    )]
    SeqMismatch {
        /// The rank that detected it.
        rank: usize,
        /// The peer that is out of step.
        peer: usize,
        /// The flag value expected.
        expected: u64,
        /// The flag value seen.
        seen: u64,
    },
    /// The buffer does not fit the symmetric buffer and no fallback can take it.
    #[error(
        "rank {rank}: buffer of {bytes} bytes is too large (max {max} bytes with these buffers; INC_BUFFER_BYTES or CommOptions::with_buffer_bytes sets a parity half)"
    )]
    TooLarge {
        /// The rank that checked.
        rank: usize,
        /// Bytes requested.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// The element type cannot be reduced on the chosen path.
    #[error("rank {rank}: unsupported dtype {dtype}: {reason}")]
    UnsupportedDtype {
        /// The rank that checked.
        rank: usize,
        /// The dtype name.
        dtype: String,
        /// Why.
        reason: String,
    },
    /// The operation is not available with this backend / configuration.
    #[error("rank {rank}: unsupported: {reason}")]
    Unsupported {
        /// The rank that checked.
        rank: usize,
        /// Why.
        reason: String,
    },
    /// A backend cannot be used on this machine (no GPU, no CUDA driver, no libnccl...).
    #[error("backend {backend} unavailable: {reason}")]
    BackendUnavailable {
        /// `cuda`, `sim` or `nccl`.
        backend: String,
        /// Why.
        reason: String,
    },
    /// The key-value store failed (connection lost, bad reply...).
    #[error("rank {rank}: store error: {reason}")]
    Store {
        /// The rank that used the store.
        rank: usize,
        /// The store's error text.
        reason: String,
        /// The store's error.
        #[source]
        source: ErrorSource,
    },
    /// The data backend (CUDA or the CPU simulator) failed outside the protocol.
    #[error("rank {rank}: backend error: {reason}")]
    Backend {
        /// The rank that saw it.
        rank: usize,
        /// The backend's error text.
        reason: String,
    },
    /// NCCL failed or is missing.
    #[error("rank {rank}: nccl: {reason}")]
    Nccl {
        /// The rank that called NCCL.
        rank: usize,
        /// Why.
        reason: String,
    },
    /// An earlier protocol error poisoned this communicator; every later call fails fast.
    #[error("rank {rank}: communicator poisoned by an earlier error: {cause}")]
    Poisoned {
        /// The rank of this communicator.
        rank: usize,
        /// The first error.
        #[source]
        cause: Box<CommError>,
    },
    /// An operating-system call failed (spawning, pipes, shared memory...).
    #[error("{what}: {reason}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error text.
        reason: String,
        /// The OS error.
        #[source]
        source: ErrorSource,
    },
}

impl CommError {
    /// A [`CommError::Timeout`] restated with the communicator's configured timeout
    /// (the layer that waited may only know its own deadline); other errors unchanged.
    pub(crate) fn with_timeout_ms(self, timeout_ms: u64) -> Self {
        match self {
            CommError::Timeout {
                rank, peer, what, ..
            } => CommError::Timeout {
                rank,
                peer,
                what,
                timeout_ms,
            },
            other => other,
        }
    }

    /// True for errors that poison a communicator: after them the ranks may no longer be
    /// in step, so no later call may touch the shared buffers.
    pub fn poisons(&self) -> bool {
        matches!(
            self,
            CommError::Timeout { .. }
                | CommError::PeerAborted { .. }
                | CommError::CallMismatch { .. }
                | CommError::SeqMismatch { .. }
                | CommError::Backend { .. }
                | CommError::Poisoned { .. }
        )
    }

    /// Builds an [`CommError::InvalidOption`].
    pub(crate) fn option(name: &str, value: &str, reason: impl Into<String>) -> Self {
        CommError::InvalidOption {
            name: name.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Result alias of inc-comm.
pub type Result<T, E = CommError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_rank_and_peer() {
        let e = CommError::CallMismatch {
            rank: 1,
            peer: 3,
            reason: "sizes differ".into(),
        };
        let s = e.to_string();
        assert!(s.contains("rank 1") && s.contains("peer 3") && s.contains("sizes differ"));
        assert!(e.poisons());
        let p = CommError::Poisoned {
            rank: 1,
            cause: Box::new(e.clone()),
        };
        assert!(p.to_string().contains("sizes differ"));
        // The cause is the source of a Poisoned error; a store's error that of Store.
        use std::error::Error as _;
        assert_eq!(p.source().map(|s| s.to_string()), Some(e.to_string()));
        let io = std::io::Error::other("pipe closed");
        let st = CommError::Io {
            what: "spawning".into(),
            reason: io.to_string(),
            source: ErrorSource::new(io),
        };
        assert_eq!(
            st.source().map(|s| s.to_string()).as_deref(),
            Some("pipe closed")
        );
        assert_eq!(st.clone(), st);
        assert!(!CommError::option("INC_ALGO", "x", "bad").poisons());
    }
}
