//! Data backends behind [`Comm`](crate::Comm): `sim` (inc-sim's CPU data backend, shared
//! memory across processes) and `cuda` (inc-cuda's PeerBuffers + Kernels; the NCCL
//! fallback lives in [`crate::nccl`]).

pub mod cuda;
pub mod sim;
pub mod symmetric;

/// Whether the cuda backend can run here: the CUDA driver loads and reports at least one
/// device (`auto` picks `cuda` then, else `sim`). Never panics; cached after the first call.
pub fn cuda_available() -> bool {
    cuda::device_count() > 0
}

/// Number of CUDA devices (0 without a driver).
pub fn cuda_device_count() -> usize {
    cuda::device_count()
}
