//! [`Work`]: the handle of one allreduce call.

use crate::error::Result;

/// The handle of one allreduce. On the sim backend the call has finished when it returns,
/// so the handle is complete; on the cuda backend it holds a CUDA event recorded after the
/// kernel, and [`Work::wait`] also reads the device error record and turns a protocol
/// failure into a [`CommError`](crate::CommError).
#[must_use = "an allreduce is only known to be done (and correct) after Work::wait"]
pub struct Work {
    pub(crate) state: WorkState,
}

pub(crate) enum WorkState {
    Done,
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

    /// Blocks until the call is complete; returns its error, if it failed.
    pub fn wait(self) -> Result<()> {
        match self.state {
            WorkState::Done => Ok(()),
        }
    }

    /// True when the call has completed (never blocks).
    pub fn is_completed(&self) -> bool {
        match &self.state {
            WorkState::Done => true,
        }
    }
}
