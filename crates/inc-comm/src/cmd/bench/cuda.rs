//! The cuda path of `inc bench`: device buffers, CUDA-event timing, CUDA graphs, and NCCL
//! beside inc on the same buffers.
//!
//! Not wired yet: inc-comm's device API (`Comm::allreduce_using` on `CudaSlice`s) landed
//! after this module was written, so `--backend cuda` is a clear error for now (the sim
//! path is complete). The plan: per rank, one `CudaSlice` input/output pair shared by every
//! series; eager = CUDA events around one `allreduce_using`; graph = capture
//! `--graph-calls` back-to-back calls, replay, divide; `#wrong` = copy the output back and
//! check it every repetition (`measure::count_wrong`); NCCL = the same buffers through
//! `Path::Nccl`; nccl-symm = n/a until window registration is exposed.

use super::{Plan, Report};

/// Runs the plan on GPUs.
pub(crate) fn run(_plan: &Plan) -> Result<Option<Report>, String> {
    Err(
        "inc bench cannot measure on the cuda backend yet (its GPU timing path is not \
         wired in this build); use --backend sim"
            .into(),
    )
}
