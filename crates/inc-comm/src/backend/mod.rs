//! Data backends behind [`Comm`](crate::Comm): one trait, [`Backend`], implemented by
//! `sim` (inc-sim's CPU data backend, shared memory across processes) and `cuda`
//! (inc-cuda's PeerBuffers + Kernels, symmetric memory, and the NCCL fallback of
//! [`crate::nccl`]).
//!
//! A communicator holds its backend as a `Box<dyn Backend>`, chosen once by [`create`]:
//! each step of a call is one virtual call, with no allocation. What only the cuda
//! backend can do (device memory and streams, symmetric tensors, NCCL) has a default
//! method that returns the error the sim backend has always returned, so `Comm` never asks
//! which backend it holds.

pub mod cuda;
pub mod sim;
pub mod symmetric;

use std::sync::{Arc, OnceLock};

use cudarc::driver::{CudaContext, CudaStream};
use inc_sim::{DType, ReduceOp};
use inc_store::{Handshake, Store};
use inc_topo::{NvlMesh, TopologyClass};

use self::symmetric::SymSlot;
use crate::error::{CommError, Result};
use crate::options::{AlgoPath, BackendKind, CommOptions};
use crate::order::StreamOrder;
use crate::select::Capacity;
use crate::work::Work;

/// Whether the cuda backend can run here: the CUDA driver loads and reports at least one
/// device (`auto` picks `cuda` then, else `sim`). Never panics; cached after the first call.
pub fn cuda_available() -> bool {
    cuda::device_count() > 0
}

/// Number of CUDA devices (0 without a driver).
pub fn cuda_device_count() -> usize {
    cuda::device_count()
}

/// The poison slot a communicator shares with its [`Work`]s.
pub(crate) type Poison = Arc<OnceLock<CommError>>;

/// What a rank's backend needs to come up.
pub(crate) struct Setup<'a> {
    /// This rank.
    pub rank: usize,
    /// Ranks of the communicator.
    pub world: usize,
    /// The device this rank drives.
    pub device: usize,
    /// The communicator's options.
    pub opts: &'a CommOptions,
    /// The peers are other processes (shared memory, CUDA IPC) rather than threads.
    pub multi_process: bool,
    /// The communicator's store (the NCCL fallback meets its peers there).
    pub store: &'a Arc<dyn Store>,
    /// The communicator's key prefix in the store.
    pub prefix: &'a str,
}

/// Creates the backend of `kind` (resolved: `sim` or `cuda`).
pub(crate) fn create(kind: BackendKind, setup: Setup<'_>) -> Result<Box<dyn Backend>> {
    match kind {
        BackendKind::Sim => Ok(Box::new(sim::SimBackend::new(
            setup.rank,
            setup.world,
            setup.device,
            setup.opts,
            setup.multi_process || setup.opts.sim_shm,
        )?)),
        BackendKind::Cuda => Ok(Box::new(cuda::CudaBackend::new(&setup)?)),
        BackendKind::Auto => Err(CommError::Backend {
            rank: setup.rank,
            reason: "backend not resolved".into(),
        }),
    }
}

/// What a rank publishes about its device in the first handshake.
pub(crate) struct Identity {
    /// Device id: the PCI bus id (cuda), `sim-device-<n>` (sim).
    pub device_id: String,
    /// Device uuid in hex (empty on sim).
    pub uuid: String,
    /// Bytes of one parity half.
    pub buffer_bytes: u64,
    /// Bytes of the signal pad.
    pub signal_bytes: u64,
    /// Blocks per call (0: chosen per call).
    pub blocks: u32,
    /// The backend as the handshake encodes it.
    pub handshake: inc_store::Backend,
}

/// What the calls of one communicator share, under its call lock: the previous call's
/// stream and event, and the device staging buffers of host calls (cuda backend; the sim
/// backend leaves both empty).
#[derive(Default)]
pub(crate) struct CallState {
    pub(crate) order: StreamOrder,
    pub(crate) staging: cuda::Staging,
}

/// One allreduce on device memory, in raw device addresses.
pub(crate) struct DeviceCall<'a> {
    /// The chosen path.
    pub path: AlgoPath,
    /// Element type.
    pub dtype: DType,
    /// Reduction.
    pub op: ReduceOp,
    /// Device address of the input.
    pub input: u64,
    /// Device address of the output (the input's in place).
    pub output: u64,
    /// Elements.
    pub count: usize,
    /// The stream the call is enqueued on.
    pub stream: &'a Arc<CudaStream>,
    /// A symmetric tensor's part and the byte offset of the call in it (zero-copy).
    pub symmetric: Option<(&'a SymSlot, u64)>,
}

/// The error of a device-memory call on a backend without device memory.
pub(crate) fn no_device(rank: usize) -> CommError {
    CommError::Unsupported {
        rank,
        reason: "device buffers need the cuda backend (use allreduce_host on sim)".into(),
    }
}

/// The error of the NCCL path on a backend without NCCL.
pub(crate) fn no_nccl(rank: usize) -> CommError {
    CommError::Unsupported {
        rank,
        reason: "the nccl path needs the cuda backend".into(),
    }
}

/// One rank's data backend. The rendezvous calls the first group in order (identity,
/// mesh, allocate, open_peers, all_opened, capacity); calls, health checks and teardown
/// use the rest. Methods with a default are capabilities of the cuda backend only.
pub(crate) trait Backend: Send + Sync {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// This rank.
    fn rank(&self) -> usize;

    /// What this rank publishes in the first handshake.
    fn identity(&self) -> Identity;

    /// The mesh this rank proposes, from every rank's first handshake (all ranks compute
    /// the same one).
    fn mesh(&self, peers: &[Handshake]) -> Result<NvlMesh>;

    /// Allocates this rank's buffer (`ranks_on_device`: ranks on the busiest device of
    /// the group); returns the handle(s) to publish.
    fn allocate(&mut self, prefix: &str, ranks_on_device: usize) -> Result<Vec<Vec<u8>>>;

    /// Maps every peer's buffer (`handles[q]` as rank q published them) and checks the
    /// mappings.
    fn open_peers(&mut self, handles: &[Vec<Vec<u8>>], class: &TopologyClass) -> Result<()>;

    /// Every rank mapped every buffer: drop the names that let peers find this rank's.
    fn all_opened(&mut self);

    /// What each algorithm's buffers hold, in bytes.
    fn capacity(&self) -> Capacity;

    /// Raises the abort word: this and every peer's pending and later calls fail fast.
    fn abort(&self);

    /// A failure recorded since the last check, even one of a call whose `Work` was
    /// dropped unread (at the entry of every call: cheap when there is none).
    fn pending_error(&self) -> Option<CommError> {
        None
    }

    /// The error the device recorded, read after work completed ([`Comm::check`]).
    ///
    /// [`Comm::check`]: crate::Comm::check
    fn read_error(&self) -> Option<CommError> {
        None
    }

    /// Whether other processes import this rank's buffer (its teardown must then be
    /// collective).
    fn exports_ipc(&self) -> bool {
        false
    }

    /// Teardown, step 1 (before the barrier): wait for this rank's work and close every
    /// mapping of a peer's buffer.
    fn close_imports(&mut self) -> Result<()> {
        Ok(())
    }

    /// Teardown when the barrier failed: never free this rank's buffers (a live peer may
    /// still map them).
    fn leak_own(&mut self) {}

    /// Whether the backend has the NCCL fallback.
    fn has_nccl(&self) -> bool {
        false
    }

    /// Creates the NCCL communicator now (collective; its outcome is kept).
    fn start_nccl(&self) -> Result<()> {
        Err(no_nccl(self.rank()))
    }

    /// Whether the NCCL path can run (libnccl, a GPU per rank, a communicator).
    fn check_nccl(&self) -> Result<()> {
        Err(no_nccl(self.rank()))
    }

    /// One blocking allreduce of host bytes on `path`: `src` into `dst`, or `dst` in place
    /// when `src` is `None` (same lengths).
    #[allow(clippy::too_many_arguments)]
    fn allreduce_host(
        &self,
        st: &mut CallState,
        poison: &Poison,
        path: AlgoPath,
        dtype: DType,
        op: ReduceOp,
        src: Option<&[u8]>,
        dst: &mut [u8],
    ) -> Result<()>;

    /// The device's CUDA context.
    fn context(&self) -> Result<&Arc<CudaContext>> {
        Err(no_device(self.rank()))
    }

    /// The communicator's own stream.
    fn stream(&self) -> Result<&Arc<CudaStream>> {
        Err(no_device(self.rank()))
    }

    /// Enqueues one allreduce on device memory, after the communicator's previous call
    /// whatever its stream; the returned [`Work`] reports its outcome.
    ///
    /// # Safety
    /// `call.input`/`call.output` are device addresses of `call.count` elements of
    /// `call.dtype` on this rank's device, valid until the call completes on its stream;
    /// a symmetric part belongs to this backend.
    unsafe fn enqueue(
        &self,
        st: &mut CallState,
        poison: &Poison,
        call: &DeviceCall<'_>,
    ) -> Result<Work> {
        let _ = (st, poison, call);
        Err(no_device(self.rank()))
    }

    /// Device memory the communicator allocated, in bytes.
    fn device_bytes(&self) -> u64 {
        0
    }

    /// Ranks that share the busiest device of the group.
    fn ranks_on_device(&self) -> usize {
        1
    }

    /// Allocates this rank's part (`bytes`) of symmetric tensor number `seq`; returns it
    /// and the handle to publish.
    fn sym_alloc(&self, prefix: &str, seq: u64, bytes: u64) -> Result<(Arc<SymSlot>, String)> {
        let _ = (prefix, seq, bytes);
        Err(no_device(self.rank()))
    }

    /// Registers `bytes` of the caller's device memory at `ptr` as this rank's part of
    /// symmetric tensor number `seq`; returns it and the handle to publish.
    ///
    /// # Safety
    /// As [`Comm::register_symmetric`](crate::Comm::register_symmetric): the memory stays
    /// allocated until the communicator's teardown.
    unsafe fn sym_register(
        &self,
        prefix: &str,
        seq: u64,
        ptr: u64,
        bytes: u64,
    ) -> Result<(Arc<SymSlot>, String)> {
        let _ = (prefix, seq, ptr, bytes);
        Err(no_device(self.rank()))
    }

    /// Maps every peer's part of a symmetric tensor (`handles[q]` as rank q published it).
    fn sym_open(&self, slot: &Arc<SymSlot>, handles: &[String]) -> Result<()> {
        let _ = (slot, handles);
        Err(no_device(self.rank()))
    }

    /// Every rank mapped the symmetric part published as `handle`.
    fn sym_opened(&self, handle: &str) {
        let _ = handle;
    }
}

/// A duration in milliseconds with 0.1 ms resolution, for the init and kernel logs.
pub(crate) fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}
