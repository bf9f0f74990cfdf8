//! Data backends behind [`Comm`](crate::Comm). Today: `sim` (inc-sim's CPU data
//! backend). The `cuda` backend (inc-cuda's PeerBuffers + Kernels, NCCL fallback through
//! cudarc) is not wired in yet; selecting it returns
//! [`CommError::BackendUnavailable`](crate::CommError::BackendUnavailable).

pub mod sim;

/// Whether the cuda backend can run in this build (not yet: `auto` picks `sim`).
pub fn cuda_available() -> bool {
    false
}
