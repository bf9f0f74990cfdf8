//! Device discovery: the device count, the kernels shared per device, and the mapping of
//! inc-cuda's errors to [`CommError`] (PCI bus ids come from `inc_cuda::sys`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use cudarc::driver::CudaContext;
use inc_cuda::{CudaError, Kernels};

use crate::error::CommError;

/// Whether a CUDA driver is present and has at least one device (cached; never panics).
pub fn device_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        if !inc_cuda::sys::driver_present() {
            return 0;
        }
        CudaContext::device_count()
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0)
    })
}

/// Maps an inc-cuda error of rank `rank` to a [`CommError`].
pub fn cuda_err(rank: usize, e: CudaError) -> CommError {
    match e {
        CudaError::NoDriver | CudaError::NoNvrtc => CommError::BackendUnavailable {
            backend: "cuda".into(),
            reason: e.to_string(),
        },
        CudaError::TooLarge {
            bytes, capacity, ..
        } => CommError::TooLarge {
            rank,
            bytes,
            max: capacity,
        },
        CudaError::InvalidArgument(reason) => CommError::InvalidArgument { rank, reason },
        CudaError::Kernel(rec) => {
            crate::backend::sim::sim_err(rank, inc_sim::SimError::Protocol(rec))
        }
        CudaError::Poisoned(rec) => CommError::Poisoned {
            rank,
            cause: Box::new(crate::backend::sim::sim_err(
                rank,
                inc_sim::SimError::Protocol(rec),
            )),
        },
        other => CommError::Backend {
            rank,
            reason: other.to_string(),
        },
    }
}

pub(super) fn drv(
    rank: usize,
    what: &str,
) -> impl FnOnce(cudarc::driver::DriverError) -> CommError + '_ {
    move |e| CommError::Backend {
        rank,
        reason: format!("{what}: {e}"),
    }
}

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The kernels of device `ordinal`, shared by every communicator of this process on it.
///
/// Sharing is required, not an optimisation: kernel modules are loaded at an instance's
/// first use, and a module load in a context waits for that context's running kernels. Two
/// virtual ranks on one device with a `Kernels` each deadlock on their first call: rank 0's
/// kernel spins for rank 1, whose launch waits for its own module load, which waits for
/// rank 0's kernel (seen on an H200 as a timeout on the first call). With one `Kernels`, an
/// instance is loaded once, by the first rank that needs it, before its kernel runs.
pub(super) fn shared_kernels(
    ordinal: usize,
    ctx: &Arc<CudaContext>,
) -> std::result::Result<Arc<Kernels>, CudaError> {
    static KERNELS: OnceLock<Mutex<HashMap<usize, Weak<Kernels>>>> = OnceLock::new();
    let map = KERNELS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut g = map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(k) = g.get(&ordinal).and_then(Weak::upgrade) {
        return Ok(k);
    }
    let k = Arc::new(Kernels::load(ctx)?);
    g.insert(ordinal, Arc::downgrade(&k));
    Ok(k)
}

#[cfg(test)]
mod tests {
    use inc_sim::Algo;

    use super::super::CudaBackend;
    use super::*;
    use crate::options::CommOptions;

    #[test]
    fn errors_map_to_typed_comm_errors() {
        let rec = inc_sim::ErrorRecord {
            code: inc_sim::ERR_TIMEOUT,
            rank: 1,
            block: 0,
            peer: 2,
            phase: 1,
            _pad: 0,
            expected: 5,
            seen: 4,
        };
        assert!(matches!(
            cuda_err(1, CudaError::Kernel(rec)),
            CommError::Timeout {
                rank: 1,
                peer: Some(2),
                ..
            }
        ));
        let mism = inc_sim::ErrorRecord {
            code: inc_sim::ERR_CALL_MISMATCH,
            ..rec
        };
        assert!(matches!(
            cuda_err(0, CudaError::Kernel(mism)),
            CommError::CallMismatch {
                rank: 0,
                peer: 2,
                ..
            }
        ));
        assert!(matches!(
            cuda_err(0, CudaError::Poisoned(mism)),
            CommError::Poisoned { rank: 0, .. }
        ));
        assert!(matches!(
            cuda_err(0, CudaError::NoDriver),
            CommError::BackendUnavailable { .. }
        ));
        assert!(matches!(
            cuda_err(
                3,
                CudaError::TooLarge {
                    algo: Algo::OneShot,
                    bytes: 10,
                    needed: 16,
                    capacity: 8
                }
            ),
            CommError::TooLarge {
                rank: 3,
                bytes: 10,
                max: 8
            }
        ));
        let t = cuda_err(1, CudaError::Kernel(rec)).with_timeout_ms(250);
        assert!(matches!(
            t,
            CommError::Timeout {
                timeout_ms: 250,
                ..
            }
        ));
    }

    #[test]
    fn device_count_without_driver_is_zero_not_a_panic() {
        if inc_cuda::sys::driver_present() {
            eprintln!("skip: a CUDA driver is present");
            return;
        }
        assert_eq!(device_count(), 0);
        let store: std::sync::Arc<dyn inc_store::Store> =
            std::sync::Arc::new(inc_store::MemStore::new());
        let setup = crate::backend::Setup {
            rank: 0,
            world: 1,
            device: 0,
            opts: &CommOptions::default(),
            multi_process: false,
            store: &store,
            prefix: "t",
        };
        let e = CudaBackend::new(&setup).unwrap_err();
        assert!(matches!(e, CommError::BackendUnavailable { .. }), "{e}");
    }
}
