//! inc-proto: the protocol vocabulary and kernel ABI of inc (docs/PROTOCOL.md, version 1),
//! the one source of every protocol constant. No dependencies (an optional `serde`
//! feature derives `Serialize` on the vocabulary types).
//!
//! - [`types`]: [`DType`], [`ReduceOp`], [`Algo`] (with its kernel name), [`call_sig`],
//!   flag and abort words, the signal-pad layout [`PadLayout`], error codes and the
//!   [`ErrorRecord`].
//! - [`push`]: the push one-shot's (LL) region layout [`push::PushLayout`], line and tag
//!   helpers, [`push::push_call_sig`].
//! - [`steps`]: the step names of every program (the kernels' `// STEP` markers).
//! - [`args`]: the kernel argument block [`KernelArgs`] and its `FLAG_*` bits, the host
//!   block offsets.
//! - [`codegen`]: kernels/proto.cuh, the CUDA header generated from all of the above
//!   (`cargo xtask codegen`; a test fails when the committed header is stale).
//!
//! inc-sim re-exports these (its programs are checked against [`steps`]); inc-cuda uses
//! them directly and never depends on the simulator.

pub mod areas;
pub mod args;
pub mod codegen;
pub mod lines;
pub mod push;
pub mod steps;
pub mod types;

pub use args::*;
pub use steps::step_names;
pub use types::*;
