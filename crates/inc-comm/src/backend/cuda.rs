//! The `cuda` backend: inc-cuda's [`PeerBuffers`] and [`Kernels`] behind the same
//! rendezvous as the sim backend.
//!
//! * One process per GPU (`inc launch`, torchrun): a rank's buffer handle in the `hs2`
//!   handshake is `ipc:` + the hex of its 64-byte CUDA IPC handle; peers map it with
//!   `cuIpcOpenMemHandle`.
//! * One process driving every rank ([`Comm::init_threads`](crate::Comm::init_threads)):
//!   the handle is `local:<pid>:<key>`, found through an in-process registry and mapped
//!   with [`PeerBuffers::map_local`] (peer access between devices, plain pointers on one).
//! * Several ranks on one device ("virtual ranks", only with
//!   [`CommOptions::allow_shared_device`](crate::CommOptions::allow_shared_device)): every rank declares how many ranks share a
//!   device ([`PeerBuffers::set_ranks_on_device`], the largest count in the group, so the
//!   launch plan is the same on every rank) so that all their blocks are co-resident.
//!
//! The topology mesh: ranks on one device, and device pairs for which
//! `cuDeviceCanAccessPeer` says yes, count as linked (P2P over PCIe included; NVLink
//! counts through NVML are not read here). Every rank computes the whole mesh from the
//! gathered PCI bus ids, so all ranks send the same one.
//!
//! Modules: [`device`] (discovery, shared kernels, error mapping; PCI bus ids come from
//! `inc_cuda::sys`), [`slots`] (the in-process buffer registry, the event pool, the kernel
//! check), [`calls`] (the calls: stream order, the kernel launch — two-shot in pieces
//! above the buffer — or NCCL, its event, host staging, the NCCL communicator); this file
//! holds the backend itself (device, buffers, peers, capacity) and its [`Backend`]
//! implementation.

mod calls;
mod device;
mod slots;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use cudarc::driver::{CudaContext, CudaStream};
use inc_cuda::{CudaError, IpcHandle, Kernels, PeerBuffers};
use inc_sim::{Algo, DType, ReduceOp};
use inc_store::{Handshake, Store};
use inc_topo::{NvlMesh, TopologyClass};
use tracing::info;

pub(crate) use self::calls::Staging;
pub use self::device::{cuda_err, device_count};
use self::device::{drv, hex, shared_kernels};
pub(super) use self::slots::lock;
pub use self::slots::EventPool;
pub(crate) use self::slots::KernelCheck;
use self::slots::{registry, Slot};
use super::symmetric::SymSlot;
use super::{ms, Backend, CallState, DeviceCall, Identity, Poison, Setup};
use crate::error::{CommError, Result};
use crate::nccl::Nccl;
use crate::options::{AlgoPath, BackendKind};
use crate::select::Capacity;
use crate::work::Work;

/// Default bytes of one parity half on the cuda backend.
pub const DEFAULT_CUDA_BUFFER_BYTES: u64 = 64 << 20;
/// One rank of the cuda backend.
pub struct CudaBackend {
    rank: usize,
    world: usize,
    ordinal: usize,
    ctx: Arc<CudaContext>,
    kernels: Arc<Kernels>,
    stream: Arc<CudaStream>,
    half_bytes: u64,
    blocks: Option<u32>,
    call_timeout: Duration,
    bus_id: String,
    uuid: String,
    own: Option<Arc<Slot>>,
    own_key: Option<String>,
    peers: Vec<Arc<Slot>>,
    ranks_on_device: usize,
    multi_process: bool,
    events: Arc<EventPool>,
    /// Symmetric tensors' memory (own and same-process peers'), kept until teardown.
    pub(super) sym: super::symmetric::SymState,
    /// The communicator's store and key prefix (the NCCL communicator meets there).
    store: Arc<dyn Store>,
    prefix: String,
    /// The NCCL communicator, created on first use; its outcome is kept. Every use of it
    /// (calls, error queries) holds its lock.
    nccl: OnceLock<std::result::Result<Arc<Mutex<Nccl>>, CommError>>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("device", &self.ordinal)
            .field("ranks_on_device", &self.ranks_on_device)
            .finish()
    }
}
impl CudaBackend {
    /// Opens device `setup.device`, compiles (or loads from cache) the kernels, creates
    /// the communicator's stream. Errors are clear when there is no driver, no such device
    /// or no NVRTC.
    pub(crate) fn new(setup: &Setup<'_>) -> Result<Self> {
        let Setup {
            rank,
            world,
            device: ordinal,
            opts,
            multi_process,
            ..
        } = *setup;
        if !inc_cuda::sys::driver_present() {
            return Err(cuda_err(rank, CudaError::NoDriver));
        }
        let n = device_count();
        if ordinal >= n {
            return Err(CommError::BackendUnavailable {
                backend: "cuda".into(),
                reason: format!(
                    "rank {rank} wants CUDA device {ordinal} but this machine has {n} (check LOCAL_RANK / CUDA_VISIBLE_DEVICES, or use virtual ranks: INC_ALLOW_SHARED_DEVICE=1)"
                ),
            });
        }
        let t = Instant::now();
        let ctx = inc_cuda::open_device(ordinal).map_err(|e| cuda_err(rank, e))?;
        let t_ctx = t.elapsed();
        let kernels = shared_kernels(ordinal, &ctx).map_err(|e| cuda_err(rank, e))?;
        let t_kernels = t.elapsed();
        let stream = ctx.new_stream().map_err(drv(rank, "cuStreamCreate"))?;
        let bus_id =
            inc_cuda::sys::pci_bus_id(ctx.cu_device()).map_err(drv(rank, "cuDeviceGetPCIBusId"))?;
        let uuid = ctx
            .uuid()
            .map(|u| hex(&u.bytes.map(|c| c as u8)))
            .map_err(drv(rank, "cuDeviceGetUuid"))?;
        info!(
            rank,
            device = ordinal,
            context_ms = ms(t_ctx),
            kernels_ms = ms(t_kernels - t_ctx),
            stream_ids_ms = ms(t.elapsed() - t_kernels),
            kernels = %kernels.describe_sources(),
            "cuda backend created (primary context, Kernels::load, stream + bus id + uuid)"
        );
        let half_bytes = opts.buffer_bytes.unwrap_or(DEFAULT_CUDA_BUFFER_BYTES);
        Ok(Self {
            rank,
            world,
            ordinal,
            ctx,
            kernels,
            stream,
            half_bytes,
            blocks: opts.blocks,
            call_timeout: opts.timeout,
            bus_id,
            uuid,
            own: None,
            own_key: None,
            peers: Vec::new(),
            ranks_on_device: 1,
            multi_process,
            events: Arc::new(EventPool::default()),
            sym: Default::default(),
            store: setup.store.clone(),
            prefix: setup.prefix.to_string(),
            nccl: OnceLock::new(),
        })
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }
    /// Ranks of the communicator.
    pub fn world(&self) -> usize {
        self.world
    }
    /// Whether the peers are other processes (CUDA IPC) rather than threads.
    pub fn is_multi_process(&self) -> bool {
        self.multi_process
    }
    /// The device's kernels.
    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }
    /// The forced block count (`CommOptions::blocks`), if any.
    pub fn blocks_option(&self) -> Option<u32> {
        self.blocks
    }
    /// The kernels' per-wait timeout.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// Bytes of one parity half.
    pub fn buffer_bytes(&self) -> u64 {
        self.half_bytes.div_ceil(16) * 16
    }
    /// The device's context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The mesh all ranks agree on, from the gathered handshakes (see the module docs).
    fn peer_mesh(&self, all: &[Handshake]) -> Result<NvlMesh> {
        let devs: Vec<Option<_>> = all
            .iter()
            .map(|h| inc_cuda::sys::device_by_pci_bus_id(&h.pci_bus_id))
            .collect();
        let keys: Vec<&str> = all.iter().map(crate::rendezvous::device_key).collect();
        NvlMesh::from_fn(all.len(), |i, j| {
            if i == j {
                return 0;
            }
            if keys.get(i) == keys.get(j) {
                return 1;
            }
            match (
                devs.get(i).copied().flatten(),
                devs.get(j).copied().flatten(),
            ) {
                (Some(a), Some(b)) => {
                    // SAFETY: both handles come from the loaded driver.
                    let ok = unsafe { inc_cuda::sys::can_access_peer(a, b) };
                    u32::from(ok.unwrap_or(false))
                }
                _ => 0,
            }
        })
        .map_err(|e| CommError::Backend {
            rank: self.rank,
            reason: format!("building the topology mesh: {e}"),
        })
    }

    /// Allocates this rank's symmetric buffer and returns its handle: `ipc:<hex>` across
    /// processes, `local:<pid>:<key>` within one.
    fn alloc_buffers(&mut self, comm_prefix: &str, ranks_on_device: usize) -> Result<Vec<Vec<u8>>> {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let mut bufs = PeerBuffers::new(&self.ctx, self.rank, self.world, self.half_bytes)
            .map_err(|e| cuda_err(self.rank, e))?;
        self.ranks_on_device = ranks_on_device.max(1);
        bufs.set_ranks_on_device(u32::try_from(self.ranks_on_device).unwrap_or(u32::MAX))
            .map_err(|e| cuda_err(self.rank, e))?;
        let handle = if self.multi_process {
            let h = bufs.export_handle().map_err(|e| cuda_err(self.rank, e))?;
            format!("ipc:{}", h.to_hex())
        } else {
            let key = format!(
                "{}:{}-{}-r{}",
                std::process::id(),
                SERIAL.fetch_add(1, Ordering::Relaxed),
                comm_prefix.replace('/', "-"),
                self.rank
            );
            self.own_key = Some(key.clone());
            format!("local:{key}")
        };
        let slot = Arc::new(Mutex::new(bufs));
        if let Some(key) = &self.own_key {
            if let Ok(mut reg) = registry().lock() {
                reg.retain(|_, w| w.strong_count() > 0);
                reg.insert(key.clone(), Arc::downgrade(&slot));
            }
        }
        self.own = Some(slot);
        Ok(vec![handle.into_bytes()])
    }

    pub(super) fn own(&self) -> Result<&Arc<Slot>> {
        self.own.as_ref().ok_or_else(|| CommError::Backend {
            rank: self.rank,
            reason: "cuda backend used before its buffers were allocated".into(),
        })
    }

    /// Maps every peer's buffer, sets the hcm row when the group has an hcm table (a hybrid
    /// cube mesh of 8, or a fully connected 8 with the canonical table),
    /// (the check of every mapping with a real read/write follows: `verify_peers`).
    fn map_peers(&mut self, handles: &[Vec<Vec<u8>>], class: &TopologyClass) -> Result<()> {
        let own = self.own()?.clone();
        let rank = self.rank;
        for (q, hs) in handles.iter().enumerate() {
            if q == rank {
                continue;
            }
            let h = hs.first().ok_or_else(|| CommError::Backend {
                rank,
                reason: format!("rank {q} published no buffer handle"),
            })?;
            let text = std::str::from_utf8(h).map_err(|_| CommError::Backend {
                rank,
                reason: format!("rank {q}'s buffer handle is not UTF-8"),
            })?;
            let opened = |reason: String| CommError::Backend {
                rank,
                reason: format!("mapping rank {q}'s buffer: {reason}"),
            };
            if let Some(hexs) = text.strip_prefix("ipc:") {
                let handle = IpcHandle::from_hex(hexs).map_err(|e| opened(e.to_string()))?;
                lock(&own)
                    .open_ipc(q, &handle)
                    .map_err(|e| opened(e.to_string()))?;
            } else if let Some(key) = text.strip_prefix("local:") {
                let pid = key.split(':').next().unwrap_or("");
                if pid != std::process::id().to_string() {
                    return Err(opened(format!(
                        "in-process buffer {key} belongs to process {pid}"
                    )));
                }
                let peer = registry()
                    .lock()
                    .map_err(|_| opened("buffer registry poisoned".into()))?
                    .get(key)
                    .and_then(Weak::upgrade)
                    .ok_or_else(|| opened(format!("in-process buffer {key} is gone")))?;
                // Lock the pair in rank order: every thread does, so no two deadlock.
                if rank < q {
                    let mut me = lock(&own);
                    let other = lock(&peer);
                    me.map_local(q, &other).map_err(|e| opened(e.to_string()))?;
                } else {
                    let other = lock(&peer);
                    let mut me = lock(&own);
                    me.map_local(q, &other).map_err(|e| opened(e.to_string()))?;
                }
                self.peers.push(peer);
            } else {
                return Err(opened(format!("unknown handle {text:?}")));
            }
        }
        let mut me = lock(&own);
        if let Some(table) = crate::topo::hcm_table(class, self.world)? {
            let row = table.get(rank).copied().ok_or_else(|| CommError::Backend {
                rank,
                reason: "hcm table has no row for this rank".into(),
            })?;
            let row = row.map(|x| u32::try_from(x).unwrap_or(u32::MAX));
            me.set_hcm(row).map_err(|e| cuda_err(rank, e))?;
        }
        Ok(())
    }

    /// Every rank has mapped every buffer: drop this rank's registry entry.
    fn unregister(&mut self) {
        if let Some(key) = self.own_key.take() {
            if let Ok(mut reg) = registry().lock() {
                reg.remove(&key);
            }
        }
    }

    /// What each algorithm's buffers hold, in bytes (the smallest over the dtypes).
    fn buffer_capacity(&self) -> Capacity {
        let half = self.buffer_bytes();
        let cap = |a: Algo| {
            DType::ALL
                .iter()
                .map(|d| {
                    inc_cuda::launch::max_count(a, *d, half, self.world)
                        .saturating_mul(d.size() as u64)
                })
                .min()
                .unwrap_or(0)
        };
        Capacity {
            one_shot: cap(Algo::OneShot),
            // a two-shot call larger than the buffer runs in pieces ([`CudaBackend::launch`])
            two_shot: if cap(Algo::TwoShot) > 0 { u64::MAX } else { 0 },
            hcm: if self.world == 8 { cap(Algo::Hcm) } else { 0 },
            push_one_shot: cap(Algo::PushOneShot),
            lines: inc_proto::lines::LinesLayout::max_bytes(
                self.world,
                inc_cuda::DEFAULT_PUSH_SLOT_BYTES as usize,
            ),
        }
    }
}

impl Backend for CudaBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Cuda
    }

    fn rank(&self) -> usize {
        self.rank
    }

    /// The PCI bus id and uuid of the device (distinct devices are checked on them).
    fn identity(&self) -> Identity {
        Identity {
            device_id: self.bus_id.clone(),
            uuid: self.uuid.clone(),
            buffer_bytes: self.buffer_bytes(),
            signal_bytes: inc_sim::PadLayout::PAD_BYTES as u64,
            blocks: self.blocks.unwrap_or(0),
            handshake: inc_store::Backend::Cuda,
        }
    }

    fn mesh(&self, peers: &[Handshake]) -> Result<NvlMesh> {
        self.peer_mesh(peers)
    }

    fn allocate(&mut self, prefix: &str, ranks_on_device: usize) -> Result<Vec<Vec<u8>>> {
        self.alloc_buffers(prefix, ranks_on_device)
    }

    /// Maps every peer's buffer, then confirms every mapping with a real read and write.
    fn open_peers(&mut self, handles: &[Vec<Vec<u8>>], class: &TopologyClass) -> Result<()> {
        self.map_peers(handles, class)?;
        lock(self.own()?)
            .verify_peers()
            .map_err(|e| cuda_err(self.rank, e))
    }

    fn all_opened(&mut self) {
        self.unregister();
    }

    fn capacity(&self) -> Capacity {
        self.buffer_capacity()
    }

    fn abort(&self) {
        if let Some(o) = &self.own {
            lock(o).abort();
        }
    }

    /// A kernel's error in the host mirror (one atomic load when there is none), then
    /// NCCL's asynchronous error.
    fn pending_error(&self) -> Option<CommError> {
        if self.own.as_ref().is_some_and(|o| lock(o).error_recorded()) {
            if let Some(e) = self.read_error() {
                return Some(e);
            }
        }
        self.nccl_error()
    }

    fn read_error(&self) -> Option<CommError> {
        self.kernel_check().ok().and_then(|k| k.error())
    }

    /// Peers of other processes import this rank's buffer through CUDA IPC.
    fn exports_ipc(&self) -> bool {
        self.multi_process && self.own.is_some()
    }

    /// Waits for this rank's work, closes every mapping of a peer's buffer (IPC handles
    /// closed; same-process references dropped).
    fn close_imports(&mut self) -> Result<()> {
        let _ = self.stream.synchronize();
        self.peers.clear();
        self.sym.close_imports(self.rank)?;
        match &self.own {
            Some(o) => lock(o).close_peers().map_err(|e| cuda_err(self.rank, e)),
            None => Ok(()),
        }
    }

    /// Never frees this rank's buffer (freeing memory another process maps is undefined
    /// in CUDA): leaks one allocation; bounded and safe.
    fn leak_own(&mut self) {
        self.sym.leak_own();
        if let Some(o) = self.own.take() {
            std::mem::forget(o);
        }
    }

    fn has_nccl(&self) -> bool {
        true
    }

    fn start_nccl(&self) -> Result<()> {
        self.nccl().map(|_| ())
    }

    fn check_nccl(&self) -> Result<()> {
        if let Some(Err(e)) = self.nccl.get() {
            return Err(e.clone());
        }
        if self.ranks_on_device > 1 {
            return Err(CommError::Unsupported {
                rank: self.rank,
                reason: "NCCL needs a GPU per rank; this group has virtual ranks".into(),
            });
        }
        crate::nccl::probe()
            .map(|_| ())
            .map_err(|reason| CommError::Nccl {
                rank: self.rank,
                reason,
            })
    }

    /// Through the device staging buffers (see [`CudaBackend::stage`]).
    fn allreduce_host(
        &self,
        st: &mut CallState,
        poison: &Poison,
        path: AlgoPath,
        dtype: DType,
        op: ReduceOp,
        src: Option<&[u8]>,
        dst: &mut [u8],
    ) -> Result<()> {
        self.stage(st, poison, path, dtype, op, src, dst)
    }

    fn context(&self) -> Result<&Arc<CudaContext>> {
        Ok(&self.ctx)
    }

    fn stream(&self) -> Result<&Arc<CudaStream>> {
        Ok(&self.stream)
    }

    unsafe fn enqueue(
        &self,
        st: &mut CallState,
        poison: &Poison,
        call: &DeviceCall<'_>,
    ) -> Result<Work> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.enqueue_call(&mut st.order, poison, call) }
    }

    /// Signal pad, two parity halves, the push one-shot (LL) region and the lines region.
    fn device_bytes(&self) -> u64 {
        let slot = inc_cuda::DEFAULT_PUSH_SLOT_BYTES as usize;
        let push = (inc_sim::push::PushLayout::region_bytes(slot)
            + inc_proto::lines::LinesLayout::region_bytes(slot)) as u64;
        inc_sim::PadLayout::PAD_BYTES as u64 + 2 * self.buffer_bytes() + push
    }

    fn ranks_on_device(&self) -> usize {
        self.ranks_on_device
    }

    fn sym_alloc(&self, prefix: &str, seq: u64, bytes: u64) -> Result<(Arc<SymSlot>, String)> {
        self.alloc_part(prefix, seq, bytes)
    }

    unsafe fn sym_register(
        &self,
        prefix: &str,
        seq: u64,
        ptr: u64,
        bytes: u64,
    ) -> Result<(Arc<SymSlot>, String)> {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.register_part(prefix, seq, ptr, bytes) }
    }

    fn sym_open(&self, slot: &Arc<SymSlot>, handles: &[String]) -> Result<()> {
        self.open_parts(slot, handles)
    }

    fn sym_opened(&self, handle: &str) {
        self.part_opened(handle);
    }
}

impl Drop for CudaBackend {
    fn drop(&mut self) {
        self.unregister();
        let _ = self.stream.synchronize();
    }
}
