//! Stream order of one communicator's calls on the cuda backend.
//!
//! The protocol requires a communicator's calls to run on the device in the order they
//! were made (the parity halves and the device epoch assume it). A call may be enqueued on
//! any stream of the rank's device, so after every call an event is recorded on its stream,
//! and a call on another stream first makes that stream wait for it (`cuStreamWaitEvent`):
//! calls on two streams never overlap, and run in call order.
//!
//! CUDA graphs: the wait and the record happen only between calls of the same capture
//! (the same capture id) or between calls outside any capture. Between a captured call
//! and a live one there is no wait: a graph runs when it is launched, so ordering its
//! launches with the communicator's other calls is the caller's job (launch it on the
//! stream of the previous call, or wait on [`Work::event`](crate::Work::event)).

use std::sync::Arc;

use cudarc::driver::{CudaEvent, CudaStream};

use crate::error::{CommError, Result};

/// The previous call's stream and an event recorded after it.
#[derive(Default)]
pub(crate) struct StreamOrder {
    last: Option<Last>,
}

struct Last {
    stream: Arc<CudaStream>,
    /// `None`: recorded outside a capture; `Some(id)`: inside capture `id`.
    capture: Option<u64>,
    event: CudaEvent,
}

impl StreamOrder {
    /// The capture `stream` is in (`None` outside a capture).
    pub(crate) fn capture_of(rank: usize, stream: &CudaStream) -> Result<Option<u64>> {
        stream
            .context()
            .bind_to_thread()
            .map_err(|e| backend(rank, "cuCtxSetCurrent", e))?;
        // SAFETY: the stream is alive (borrowed) and its context is current.
        unsafe { inc_cuda::sys::capture_id(stream.cu_stream()) }
            .map_err(|e| backend(rank, "cuStreamGetCaptureInfo", e))
    }

    /// Before a call on `stream` (in `capture`): wait for the previous call when it ran
    /// on another stream of the same capture state.
    pub(crate) fn before(
        &self,
        rank: usize,
        stream: &Arc<CudaStream>,
        capture: Option<u64>,
    ) -> Result<()> {
        match &self.last {
            Some(l) if l.capture == capture && l.stream.cu_stream() != stream.cu_stream() => stream
                .wait(&l.event)
                .map_err(|e| backend(rank, "cuStreamWaitEvent", e)),
            _ => Ok(()),
        }
    }

    /// After a call enqueued on `stream` (in `capture`): record the event the next call
    /// waits on.
    pub(crate) fn after(
        &mut self,
        rank: usize,
        stream: &Arc<CudaStream>,
        capture: Option<u64>,
    ) -> Result<()> {
        let event = match self.last.take() {
            // An event last recorded in a capture is not re-recorded outside it (nor the
            // other way round): a fresh one is made at such a transition.
            Some(l) if l.capture == capture && l.event.context() == stream.context() => l.event,
            _ => stream
                .context()
                .new_event(None)
                .map_err(|e| backend(rank, "cuEventCreate", e))?,
        };
        event
            .record(stream)
            .map_err(|e| backend(rank, "cuEventRecord", e))?;
        self.last = Some(Last {
            stream: stream.clone(),
            capture,
            event,
        });
        Ok(())
    }
}

fn backend(rank: usize, what: &str, e: cudarc::driver::DriverError) -> CommError {
    CommError::Backend {
        rank,
        reason: format!("{what}: {e}"),
    }
}
