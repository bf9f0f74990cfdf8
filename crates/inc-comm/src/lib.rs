//! inc-comm: the facade of `inc`, low-latency allreduce between the GPUs of one machine
//! (or the CPU simulator). The `inc` command-line tool is the separate crate inc-cli.
//!
//! One type, [`Comm`], the same on GPUs and on the simulator. Every rank creates it
//! collectively, one of three ways in:
//!
//! 1. **Threads of one process** ([`Comm::init_threads`]): one communicator per device,
//!    meeting through an in-memory store.
//! 2. **torchrun / `inc launch`** ([`Comm::from_env`]): one process per rank, from
//!    `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`
//!    (a TCP store, PyTorch-compatible) and `INC_*` options ([`CommOptions::from_env`]).
//! 3. **Any store** ([`Comm::init`]): your own [`inc_store::Store`] (a `TcpStore`, a
//!    `MemStore`, or one of your own), rank and world.
//!
//! The rendezvous runs four all-gathers (versions/options, host/devices,
//! topology/buffer handles, mapping success); every rank computes the same verdict from
//! the same data, so all ranks get a communicator or all get the same error; every wait
//! has a timeout.
//!
//! * **Calls** (collective, every rank in the same order): [`Comm::allreduce`] /
//!   [`Comm::allreduce_out`] on device memory (any cudarc `DevicePtr`/`DevicePtrMut`:
//!   `CudaSlice<T>` or a view of one) and a stream; they return at once with a [`Work`].
//!   [`Comm::allreduce_host`] / [`Comm::allreduce_host_out`] take host slices and block.
//!   Elements: `bf16`/`f16`/`f32` ([`Element`]); ops: sum/avg/min/max ([`ReduceOp`]).
//!   The path ([`AlgoPath`]) is chosen from the call's size in bytes, the topology class and
//!   the world size (overridable by `INC_ALGO`, the `INC_*_MAX_BYTES` limits and a
//!   [`TuneTable`]); [`Comm::select_algo`] shows the choice, [`Comm::stats`] counts calls
//!   per path and the last fallback reason.
//! * **Order**: calls of one communicator run on the device in call order, whatever
//!   stream each is enqueued on (a call on another stream than the previous one waits for
//!   it through an event).
//! * **Errors**: one enum, [`CommError`]; a dead peer, a timeout, a mismatched call, a
//!   too-large buffer each name the rank (and peer). [`Work::wait`] reports a call's
//!   failure; a failure recorded by the kernels is also returned by the next call even if
//!   its `Work` was dropped unread. A protocol error poisons the communicator: later calls
//!   fail fast with [`CommError::Poisoned`].
//! * **Teardown**: [`Comm::shutdown`] is collective and bounded (importers close their
//!   mappings, a barrier, then each rank frees its buffer); drop does the same where
//!   buffers are shared between processes.
//! * **Backends** ([`BackendKind`]): `sim` — inc-sim's CPU data backend (shared memory
//!   across processes, so rendezvous and failures are tested without a GPU); `cuda` —
//!   CUDA IPC across processes, peer mapping in one process, NVRTC kernels; several ranks
//!   may share one GPU only with [`CommOptions::allow_shared_device`]. `auto` picks `cuda`
//!   when the driver loads and reports a device ([`cuda_available`]), else `sim`.
//! * **NCCL fallback** ([`nccl`]): through cudarc's dynamically loaded `nccl`, created on
//!   first use; used when no intra-node path fits and for `INC_ALGO=nccl`. Without
//!   libnccl the NCCL path returns [`CommError::Nccl`] and the others work. The module's
//!   [`nccl::NcclComm`] is inc's one wrapper of raw NCCL calls (`inc bench` drives its
//!   NCCL columns, symmetric windows included, through it too).
//! * **Demo**: [`demo`], the checked all-paths run behind `inc demo` (inc-cli; its
//!   `inc launch -n N -- CMD` launcher lives there too).
//!
//! # Threads of one process
//!
//! ```
//! use inc_comm::{BackendKind, Comm, CommOptions, ReduceOp};
//!
//! // Three simulated ranks driven by threads of this process.
//! let opts = CommOptions::default().with_backend(BackendKind::Sim);
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
//! On GPUs (two virtual ranks on GPU 0; `no_run`: needs a GPU), device memory and a
//! stream of cudarc:
//!
//! ```no_run
//! use inc_comm::{BackendKind, Comm, CommOptions, ReduceOp};
//!
//! let opts = CommOptions::default()
//!     .with_backend(BackendKind::Cuda)
//!     .with_allow_shared_device(true);
//! let comms = Comm::init_threads(&[0, 0], opts)?;
//! std::thread::scope(|s| {
//!     for c in &comms {
//!         s.spawn(move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!             let stream = c.stream().ok_or("not the cuda backend")?.clone();
//!             let mut x = stream.clone_htod(&[1.0f32; 4096])?;
//!             c.allreduce(&mut x, ReduceOp::Sum, &stream)?.wait()?; // 2.0 everywhere
//!             let mut half = x.slice_mut(0..2048); // views work too
//!             c.allreduce(&mut half, ReduceOp::Max, &stream)?.wait()?;
//!             Ok(())
//!         });
//!     }
//! });
//! # Ok::<(), inc_comm::CommError>(())
//! ```
//!
//! # Symmetric tensors (zero-copy)
//!
//! A tensor that every rank can read and write is reduced in place with no copy-in and no
//! copy-out, at any size (`no_run`: needs GPUs):
//!
//! ```no_run
//! use inc_comm::{Comm, ReduceOp};
//!
//! let comm = Comm::from_env()?;
//! let stream = comm.stream().expect("cuda backend").clone();
//! // collective: every rank allocates the same tensors in the same order
//! let mut t = comm.alloc_symmetric::<half::bf16>(1 << 24)?;
//! let host = vec![half::bf16::ONE; 1 << 24];
//! stream
//!     .memcpy_htod(&host, &mut t.view_mut())
//!     .expect("upload"); // or write it with your own kernels
//! comm.allreduce_symmetric(&mut t, .., ReduceOp::Sum, &stream)?.wait()?;
//! comm.allreduce_symmetric(&mut t, ..4096, ReduceOp::Sum, &stream)?.wait()?; // a prefix
//! comm.shutdown()?; // returns every rank's symmetric memory, collectively
//! # Ok::<(), inc_comm::CommError>(())
//! ```
//!
//! # torchrun or `inc launch`
//!
//! Each process is one rank (`no_run`: needs the launcher's variables), e.g.
//! `inc launch -n 4 -- my-program` or `torchrun --nproc-per-node 4 my-program`:
//!
//! ```no_run
//! use inc_comm::{Comm, ReduceOp};
//!
//! let comm = Comm::from_env()?; // RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, INC_*
//! let mut grads = vec![1.0f32; 1 << 16];
//! comm.allreduce_host(&mut grads, ReduceOp::Avg)?.wait()?;
//! comm.shutdown()?; // collective; bounded by the timeout
//! # Ok::<(), inc_comm::CommError>(())
//! ```
//!
//! # Any store
//!
//! ```
//! use std::sync::Arc;
//! use inc_comm::{BackendKind, Comm, CommOptions, ReduceOp};
//! use inc_store::{MemStore, Store};
//!
//! // Any `Store` works: here an in-memory one shared by two threads.
//! let store: Arc<dyn Store> = Arc::new(MemStore::new());
//! let opts = CommOptions::default().with_backend(BackendKind::Sim);
//! std::thread::scope(|s| {
//!     let ranks: Vec<_> = (0..2)
//!         .map(|rank| {
//!             let (store, opts) = (store.clone(), opts.clone());
//!             s.spawn(move || -> Result<Vec<f32>, inc_comm::CommError> {
//!                 let comm = Comm::init(store, rank, 2, opts)?;
//!                 let mut v = vec![rank as f32 + 1.0; 256];
//!                 comm.allreduce_host(&mut v, ReduceOp::Max)?.wait()?;
//!                 comm.shutdown()?;
//!                 Ok(v)
//!             })
//!         })
//!         .collect();
//!     for r in ranks {
//!         let v = r.join().expect("rank thread")?;
//!         assert!(v.iter().all(|x| *x == 2.0));
//!     }
//!     Ok::<(), inc_comm::CommError>(())
//! })?;
//! # Ok::<(), inc_comm::CommError>(())
//! ```
//!
//! Multi-process from the shell: `inc launch -n 4 -- inc demo --backend sim`; on one GPU,
//! `INC_ALLOW_SHARED_DEVICE=1 inc launch -n 2 -- inc demo --backend cuda` (CUDA IPC
//! between the two processes).

mod backend;
mod comm;
mod counters;
pub mod demo;
mod element;
mod error;
pub mod nccl;
mod options;
mod order;
mod rendezvous;
mod select;
mod topo;
mod work;

pub use backend::cuda::DEFAULT_CUDA_BUFFER_BYTES;
pub use backend::sim::DEFAULT_SIM_BUFFER_BYTES;
pub use backend::{cuda_available, cuda_device_count};
pub use comm::{Comm, SymmetricTensor, TorchrunEnv};
pub use counters::CommStats;
pub use element::Element;
pub use error::{CommError, ErrorSource, Result};
pub use inc_proto::{Algo, DType, ReduceOp};
pub use options::{
    AlgoChoice, AlgoPath, BackendKind, CommOptions, SimTopology, DEFAULT_TIMEOUT_MS, MAX_BLOCKS,
    MAX_BUFFER_BYTES,
};
pub use select::{Capacity, Fallback, Selection, Selector, TuneRule, TuneTable};
pub use work::Work;
