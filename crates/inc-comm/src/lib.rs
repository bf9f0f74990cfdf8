//! inc-comm: the facade of `inc`, low-latency allreduce between the GPUs of one machine
//! (or the CPU simulator), plus the `inc` command-line tool.
//!
//! One type, [`Comm`], one way in, the same on GPUs and on the simulator:
//!
//! * **Creation** (collective): [`Comm::init`] over any [`inc_store::Store`],
//!   [`Comm::from_env`] (torchrun's `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`,
//!   `MASTER_ADDR`, `MASTER_PORT`, and `INC_*` options, see [`options`]) over the TCP store,
//!   or [`Comm::init_threads`] (one process drives every device, in-memory store).
//!   The [`rendezvous`] runs four all-gathers (versions/options, host/devices,
//!   topology/buffer handles, mapping success); every rank computes the same verdict from
//!   the same data, so all ranks get a communicator or all get the same error; every wait
//!   has a timeout.
//! * **Calls** (collective): [`Comm::allreduce_host`] / [`Comm::allreduce_host_out`] for
//!   `bf16`/`f16`/`f32` ([`Element`]) and sum/avg/min/max ([`ReduceOp`]), returning a
//!   [`Work`]. The path is chosen by [`select`] from the call's size in BYTES, the topology
//!   class and the world size (overridable by `INC_ALGO`, the `INC_*_MAX_BYTES` limits and
//!   a tune table); [`Comm::select_algo`] shows the choice, [`Comm::stats`] counts calls per
//!   path and the last fallback reason.
//! * **Errors**: one enum, [`CommError`]; a dead peer, a timeout, a mismatched call, a
//!   too-large buffer each name the rank (and peer). A protocol error poisons the
//!   communicator: later calls fail fast with [`CommError::Poisoned`].
//! * **Device calls** (cuda backend, collective): [`Comm::allreduce`] (in place) and
//!   [`Comm::allreduce_out`] take cudarc's own `CudaSlice<T>` and `Arc<CudaStream>` (any
//!   stream of the rank's device, e.g. [`Comm::stream`]; the context is
//!   [`Comm::cuda_context`]); [`Comm::allreduce_using`] pins a path. They return at once
//!   with a [`Work`] holding a pooled CUDA event; [`Work::wait`] syncs it and turns the
//!   kernels' error record into `Timeout` / `PeerAborted` / `CallMismatch` / `SeqMismatch`.
//!   The host side makes no allocation and no system call besides the launch and the event
//!   record, and is CUDA-graph capturable (no event while capturing; [`Comm::check`] reads
//!   the error record after a replay).
//! * **Backends** ([`backend`]): `sim` — inc-sim's CPU data backend; across processes the
//!   symmetric buffers live in POSIX shared memory and their names travel through the store
//!   exactly where CUDA IPC handles do, so rendezvous and failures are tested without a GPU.
//!   `cuda` — inc-cuda's `PeerBuffers` (CUDA IPC across processes, peer mapping in one
//!   process) and NVRTC kernels; several ranks may share one GPU ("virtual ranks") only with
//!   [`CommOptions::allow_shared_device`] / `INC_ALLOW_SHARED_DEVICE=1`. `auto` picks `cuda`
//!   when the driver loads and reports a device, else `sim`.
//! * **NCCL fallback** ([`nccl`]): through cudarc's dynamically loaded `nccl`, the unique id
//!   shared through the store, created on first use (at init with `INC_ALGO=nccl`); used
//!   when no intra-node path fits and for `INC_ALGO=nccl`. Without libnccl the NCCL path
//!   returns [`CommError::Nccl`] ("libnccl not found: ...") and the others work.
//! * **CLI helpers**: [`launch`] (`inc launch -n N -- CMD`) and [`demo`] (`inc demo`).
//!
//! ```
//! use inc_comm::{BackendKind, Comm, CommOptions, ReduceOp};
//!
//! // Three simulated ranks driven by threads of this process.
//! let opts = CommOptions { backend: BackendKind::Sim, ..CommOptions::default() };
//! let comms = Comm::init_threads(&[0, 1, 2], opts)?;
//! std::thread::scope(|s| {
//!     for c in &comms {
//!         s.spawn(move || -> Result<(), inc_comm::CommError> {
//!             let mut v = vec![c.rank() as f32; 1000];
//!             c.allreduce_host(&mut v, ReduceOp::Sum)?.wait()?;
//!             assert!(v.iter().all(|x| *x == 3.0)); // 0 + 1 + 2
//!             Ok(())
//!         });
//!     }
//! });
//! assert_eq!(comms[0].stats().push_one_shot, 1); // small: push-one-shot
//! # Ok::<(), inc_comm::CommError>(())
//! ```
//!
//! On GPUs (one process, two virtual ranks on GPU 0; `no_run`: needs a GPU):
//!
//! ```no_run
//! use inc_comm::{BackendKind, Comm, CommOptions, ReduceOp};
//!
//! let opts = CommOptions {
//!     backend: BackendKind::Cuda,
//!     allow_shared_device: true,
//!     ..CommOptions::default()
//! };
//! let comms = Comm::init_threads(&[0, 0], opts)?;
//! std::thread::scope(|s| {
//!     for c in &comms {
//!         s.spawn(move || -> Result<(), inc_comm::CommError> {
//!             let stream = c.stream().expect("cuda backend").clone();
//!             let mut x = stream.clone_htod(&[1.0f32; 4096]).expect("upload");
//!             c.allreduce(&mut x, ReduceOp::Sum, &stream)?.wait()?; // 2.0 everywhere
//!             Ok(())
//!         });
//!     }
//! });
//! # Ok::<(), inc_comm::CommError>(())
//! ```
//!
//! Multi-process: `inc launch -n 4 -- inc demo --backend sim` (each rank calls
//! [`Comm::from_env`]); on one GPU, `INC_ALLOW_SHARED_DEVICE=1 inc launch -n 2 -- inc demo
//! --backend cuda` (CUDA IPC between the two processes).

pub mod backend;
pub mod comm;
pub mod counters;
pub mod demo;
pub mod element;
pub mod error;
pub mod launch;
pub mod nccl;
pub mod options;
mod order;
pub mod rendezvous;
pub mod select;
pub mod topo;
pub mod work;

pub use comm::{Comm, TorchrunEnv};
pub use counters::CommStats;
pub use element::Element;
pub use error::{CommError, Result};
pub use inc_sim::{Algo, DType, ReduceOp};
pub use options::{AlgoChoice, BackendKind, CommOptions, Path, SimTopology};
pub use select::{Capacity, Fallback, Selection, Selector, TuneTable};
pub use work::Work;
