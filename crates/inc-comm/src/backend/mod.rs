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

/// A duration in milliseconds with 0.1 ms resolution, for the init and kernel logs.
pub(crate) fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}
