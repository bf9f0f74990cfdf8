//! The in-process buffer registry (ranks of one process map each other's buffers through
//! it), the reusable events of a rank, and the check a [`Work`](crate::Work) runs after its
//! event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use cudarc::driver::{CudaContext, CudaEvent};
use inc_cuda::PeerBuffers;

use crate::error::CommError;

/// A rank's buffers, shared with the peers of this process that map them (they keep them
/// alive until their own communicator is gone).
pub(crate) type Slot = Mutex<PeerBuffers>;

pub(super) fn registry() -> &'static Mutex<HashMap<String, Weak<Slot>>> {
    static REG: OnceLock<Mutex<HashMap<String, Weak<Slot>>>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(HashMap::new()))
}

pub(crate) fn lock(slot: &Slot) -> MutexGuard<'_, PeerBuffers> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reusable CUDA events of one rank (a [`Work`](crate::Work) borrows one and gives it back
/// when dropped, so steady-state calls create none).
#[derive(Default)]
pub struct EventPool {
    free: Mutex<Vec<CudaEvent>>,
}

impl EventPool {
    /// An event of `ctx` (reused when one is free).
    pub fn take(
        &self,
        ctx: &Arc<CudaContext>,
    ) -> std::result::Result<CudaEvent, cudarc::driver::DriverError> {
        let reused = self.free.lock().ok().and_then(|mut v| v.pop());
        match reused {
            Some(e) => Ok(e),
            None => ctx.new_event(None),
        }
    }

    /// Returns an event to the pool.
    pub fn give(&self, e: CudaEvent) {
        if let Ok(mut v) = self.free.lock() {
            if v.len() < 64 {
                v.push(e);
            }
        }
    }
}

/// What [`Work::wait`](crate::Work::wait) of a kernel call reads after the event.
pub(crate) struct KernelCheck {
    pub(crate) rank: usize,
    pub(crate) bufs: Arc<Slot>,
    pub(crate) timeout_ms: u64,
}

impl KernelCheck {
    /// The error the kernels recorded for this rank, as a typed error.
    pub(crate) fn error(&self) -> Option<CommError> {
        let rec = lock(&self.bufs).read_error()?;
        Some(
            crate::backend::sim::sim_err(self.rank, inc_sim::SimError::Protocol(rec))
                .with_timeout_ms(self.timeout_ms),
        )
    }
}
