//! [`Work`]: the handle of one allreduce call.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cudarc::driver::CudaEvent;

use crate::backend::cuda::{EventPool, KernelCheck};
use crate::error::{CommError, Result};
use crate::nccl::Nccl;

/// The handle of one allreduce. On the sim backend the call has finished when it returns,
/// so the handle is complete; on the cuda backend it holds a CUDA event recorded after the
/// kernel (or the NCCL call), and [`Work::wait`] also reads the device error record and
/// turns a protocol failure into a typed [`CommError`] (`Timeout`, `PeerAborted`,
/// `CallMismatch`, `SeqMismatch`, naming the rank and peer), which also poisons the
/// communicator.
///
/// A call enqueued while its stream is being captured into a CUDA graph returns a handle
/// without an event (nothing ran yet): `wait` returns `Ok` at once; errors of the graph's
/// replays surface through [`Comm::check`](crate::Comm::check) after the replay's stream
/// has completed.
#[must_use = "an allreduce is only known to be done (and correct) after Work::wait"]
pub struct Work {
    pub(crate) state: WorkState,
}

pub(crate) enum WorkState {
    Done,
    Captured,
    Cuda(CudaWork),
}

pub(crate) enum Checker {
    Kernel(KernelCheck),
    Nccl(Arc<std::sync::Mutex<Nccl>>),
}

pub(crate) struct CudaWork {
    pub(crate) event: Option<CudaEvent>,
    pub(crate) pool: Arc<EventPool>,
    pub(crate) check: Checker,
    pub(crate) poison: Arc<OnceLock<CommError>>,
    pub(crate) rank: usize,
    /// NCCL has no bounded waits of its own: `wait` polls up to this long.
    pub(crate) timeout: Duration,
}

impl Drop for CudaWork {
    fn drop(&mut self) {
        if let Some(e) = self.event.take() {
            self.pool.give(e);
        }
    }
}

impl CudaWork {
    fn wait(&mut self) -> Result<()> {
        let Some(ev) = &self.event else {
            return Ok(());
        };
        let res = match &self.check {
            Checker::Kernel(_) => ev.synchronize().map_err(|e| CommError::Backend {
                rank: self.rank,
                reason: format!("cuEventSynchronize: {e}"),
            }),
            Checker::Nccl(n) => {
                // NCCL can wait forever on a dead peer: poll with a deadline.
                let deadline = Instant::now() + self.timeout;
                loop {
                    match ev.try_is_complete() {
                        Ok(true) => break Ok(()),
                        Ok(false) => {}
                        Err(e) => {
                            break Err(CommError::Backend {
                                rank: self.rank,
                                reason: format!("cuEventQuery: {e}"),
                            })
                        }
                    }
                    match crate::nccl::lock(n, self.rank) {
                        Ok(g) => {
                            if let Some(e) = g.async_error() {
                                break Err(e);
                            }
                        }
                        Err(e) => break Err(e),
                    }
                    if Instant::now() >= deadline {
                        break Err(CommError::Timeout {
                            rank: self.rank,
                            peer: None,
                            what: "waiting for an NCCL allreduce".into(),
                            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
                        });
                    }
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        };
        let res = res.and_then(|()| match &self.check {
            Checker::Kernel(k) => k.error().map_or(Ok(()), Err),
            Checker::Nccl(n) => {
                crate::nccl::lock(n, self.rank).and_then(|g| g.async_error().map_or(Ok(()), Err))
            }
        });
        if let Err(e) = &res {
            if e.poisons() {
                let _ = self.poison.set(e.clone());
            }
            tracing::error!(rank = self.rank, error = %e, "allreduce failed");
        }
        res
    }

    fn is_completed(&self) -> bool {
        self.event.as_ref().is_none_or(|e| e.is_complete())
    }
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Work")
            .field("completed", &self.is_completed())
            .finish()
    }
}

impl Work {
    pub(crate) fn done() -> Self {
        Work {
            state: WorkState::Done,
        }
    }

    /// Blocks until the call is complete; returns its error, if it failed. Bounded: the
    /// kernels give up after the communicator's timeout per wait, NCCL calls are polled up
    /// to the timeout.
    pub fn wait(self) -> Result<()> {
        match self.state {
            WorkState::Done | WorkState::Captured => Ok(()),
            WorkState::Cuda(mut w) => w.wait(),
        }
    }

    /// True when the call has completed (never blocks).
    pub fn is_completed(&self) -> bool {
        match &self.state {
            WorkState::Done | WorkState::Captured => true,
            WorkState::Cuda(w) => w.is_completed(),
        }
    }

    /// The CUDA event recorded after the call, if any (to make another stream wait on it
    /// with `CudaStream::wait`). `None` on the sim backend and while capturing.
    pub fn event(&self) -> Option<&CudaEvent> {
        match &self.state {
            WorkState::Cuda(w) => w.event.as_ref(),
            _ => None,
        }
    }
}
