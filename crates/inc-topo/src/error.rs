//! The error type of this crate.

use crate::hcm::NotHcm;

/// Everything that can go wrong while reading, checking or classifying a topology.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopoError {
    /// `nvidia-smi topo -m` text that could not be understood; `line` is 1-based.
    #[error("nvidia-smi topo text, line {line}: {reason}")]
    Parse {
        /// 1-based line number in the input where the problem was found.
        line: usize,
        /// What is wrong with that line.
        reason: String,
    },
    /// A link-count matrix that is not a valid mesh (size, squareness, symmetry, diagonal).
    #[error("invalid NVLink mesh: {0}")]
    InvalidMesh(String),
    /// A topology JSON document that is malformed or inconsistent.
    #[error("invalid topology JSON: {0}")]
    Json(String),
    /// A hybrid-cube-mesh table that does not fit its mesh.
    #[error("not a hybrid cube mesh: {0}")]
    NotHcm(#[from] NotHcm),
    /// NVML could not be loaded or queried (no driver, no GPU, API failure).
    #[error("NVML: {0}")]
    Nvml(String),
}
