//! Helpers shared by the GPU test files (`gpu.rs`, `gpu_push.rs`).

use std::sync::Arc;

use cudarc::driver::CudaContext;
use inc_cuda::open_device;

/// Device 0 with event tracking off, or `None` (after a SKIP line) when there is no GPU;
/// panics instead when `INC_REQUIRE_GPU=1`.
pub fn gpu() -> Option<Arc<CudaContext>> {
    match open_device(0) {
        Ok(c) => {
            // SAFETY: the tests order all work explicitly with stream syncs, so cudarc's
            // per-slice event tracking is not needed (and would break graph capture).
            unsafe { c.disable_event_tracking() };
            Some(c)
        }
        Err(e) => {
            if std::env::var("INC_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("INC_REQUIRE_GPU=1 but no GPU: {e}");
            }
            eprintln!("SKIP (no GPU): {e}. These tests need an NVIDIA GPU; this is not a pass.");
            None
        }
    }
}

/// A deterministic xorshift64 stream seeded by `seed`.
pub fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}
