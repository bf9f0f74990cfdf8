//! Stream order of one communicator's calls on the cuda backend.
//!
//! The protocol requires a communicator's calls to run on the device in the order they
//! were made (the parity halves and the device epoch assume it). A call may be enqueued on
//! any stream of the rank's device, so a call on another stream than the previous call's
//! first records an event on that previous stream and makes its own stream wait for it
//! (`cuStreamWaitEvent`): calls on two streams never overlap, and run in call order. Calls
//! that stay on one stream (the common case, and every call inside one captured stream)
//! pay nothing: no event is recorded per call, so a CUDA graph holds only the kernels.
//!
//! CUDA graphs: the wait and the record happen only between calls of the same capture
//! (the same capture id) or between calls outside any capture. Between a captured call
//! and a live one there is no wait: a graph runs when it is launched, so ordering its
//! launches with the communicator's other calls is the caller's job (launch it on the
//! stream of the previous call, or wait on [`Work::event`](crate::Work::event)).

use std::sync::Arc;

use cudarc::driver::{CudaEvent, CudaStream};

use crate::error::{CommError, Result};

/// The last call's stream and capture, and the event used when the stream changes.
#[derive(Default)]
pub(crate) struct StreamOrder {
    last: Option<Last>,
    /// Reused for every stream switch of the same context.
    event: Option<CudaEvent>,
}

struct Last {
    stream: Arc<CudaStream>,
    capture: Option<u64>,
}

impl StreamOrder {
    /// The capture id of `stream` (`None` when it is not capturing).
    pub(crate) fn capture_of(rank: usize, stream: &CudaStream) -> Result<Option<u64>> {
        stream
            .context()
            .bind_to_thread()
            .map_err(|e| backend(rank, "cuCtxSetCurrent", e))?;
        // SAFETY: the stream is live (borrowed) and its context is current.
        unsafe { inc_cuda::sys::capture_id(stream.cu_stream()) }
            .map_err(|e| backend(rank, "cuStreamGetCaptureInfo", e))
    }

    /// Before a call on `stream`: when the previous call ran on another stream of the same
    /// capture (or both outside any capture), record an event on that stream now (it
    /// follows the previous call) and make `stream` wait for it.
    pub(crate) fn before(
        &mut self,
        rank: usize,
        stream: &Arc<CudaStream>,
        capture: Option<u64>,
    ) -> Result<()> {
        let Some(l) = &self.last else {
            return Ok(());
        };
        if l.capture != capture || l.stream.cu_stream() == stream.cu_stream() {
            return Ok(());
        }
        let event = match self.event.take() {
            Some(e) if e.context() == stream.context() => e,
            _ => stream
                .context()
                .new_event(None)
                .map_err(|e| backend(rank, "cuEventCreate", e))?,
        };
        let res = event
            .record(&l.stream)
            .map_err(|e| backend(rank, "cuEventRecord", e))
            .and_then(|()| {
                stream
                    .wait(&event)
                    .map_err(|e| backend(rank, "cuStreamWaitEvent", e))
            });
        self.event = Some(event);
        res
    }

    /// After a call on `stream`: remember it (no device work).
    pub(crate) fn after(&mut self, stream: &Arc<CudaStream>, capture: Option<u64>) {
        self.last = Some(Last {
            stream: stream.clone(),
            capture,
        });
    }
}

fn backend(rank: usize, what: &str, e: cudarc::driver::DriverError) -> CommError {
    CommError::Backend {
        rank,
        reason: format!("{what}: {e}"),
    }
}
