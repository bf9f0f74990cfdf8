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
//!   [`CommOptions::allow_shared_device`]): every rank declares how many ranks share a
//!   device ([`PeerBuffers::set_ranks_on_device`], the largest count in the group, so the
//!   launch plan is the same on every rank) so that all their blocks are co-resident.
//!
//! The topology mesh: ranks on one device, and device pairs for which
//! `cuDeviceCanAccessPeer` says yes, count as linked (P2P over PCIe included; NVLink
//! counts through NVML are not read here). Every rank computes the whole mesh from the
//! gathered PCI bus ids, so all ranks send the same one.
//!
//! Modules: [`device`] (discovery, bus ids, shared kernels, error mapping), [`slots`]
//! (the in-process buffer registry, the event pool, the kernel check); this file holds the
//! backend itself: buffers, peers, capacity and launch.

mod device;
mod slots;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use cudarc::driver::{CudaContext, CudaStream};
use inc_cuda::{CallOptions, CudaError, IpcHandle, Kernels, PeerBuffers, RawCall};
use inc_sim::{Algo, DType, ReduceOp};
use inc_store::Handshake;
use inc_topo::{NvlMesh, TopologyClass};
use tracing::info;

pub use self::device::{cuda_err, device_count};
use self::device::{device_by_bus_id, drv, hex, pci_bus_id, shared_kernels};
pub(super) use self::slots::lock;
pub use self::slots::EventPool;
pub(crate) use self::slots::KernelCheck;
use self::slots::{registry, Slot};
use super::ms;
use crate::error::{CommError, Result};
use crate::options::CommOptions;
use crate::select::Capacity;

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
    /// Opens device `ordinal`, compiles (or loads from cache) the kernels, creates the
    /// communicator's stream. Errors are clear when there is no driver, no such device or
    /// no NVRTC.
    pub fn new(
        rank: usize,
        world: usize,
        ordinal: usize,
        opts: &CommOptions,
        multi_process: bool,
    ) -> Result<Self> {
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
        let bus_id = pci_bus_id(rank, ctx.cu_device())?;
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

    /// PCI bus id of the device (published in the handshake).
    pub fn bus_id(&self) -> &str {
        &self.bus_id
    }
    /// Device uuid in hex (distinct devices are checked on it).
    pub fn uuid(&self) -> &str {
        &self.uuid
    }
    /// Bytes of one parity half.
    pub fn buffer_bytes(&self) -> u64 {
        self.half_bytes.div_ceil(16) * 16
    }
    /// Bytes of the signal pad.
    pub fn signal_bytes(&self) -> u64 {
        inc_sim::PadLayout::PAD_BYTES as u64
    }
    /// Device memory of this rank's symmetric allocation: signal pad, two parity halves
    /// and the push one-shot (LL) region.
    pub fn device_bytes(&self) -> u64 {
        let push =
            inc_sim::push::PushLayout::region_bytes(inc_cuda::DEFAULT_PUSH_SLOT_BYTES as usize)
                as u64;
        self.signal_bytes() + 2 * self.buffer_bytes() + push
    }
    /// Blocks requested per call (0 = chosen per call).
    pub fn blocks(&self) -> u32 {
        self.blocks.unwrap_or(0)
    }
    /// The device's context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }
    /// The communicator's own stream.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
    /// Ranks sharing the busiest device of the group (1 = a GPU per rank).
    pub fn ranks_on_device(&self) -> usize {
        self.ranks_on_device
    }
    /// The event pool.
    pub fn events(&self) -> &Arc<EventPool> {
        &self.events
    }

    /// The mesh all ranks agree on, from the gathered handshakes (see the module docs).
    pub fn mesh(&self, all: &[Handshake]) -> Result<NvlMesh> {
        let devs: Vec<Option<cudarc::driver::sys::CUdevice>> = all
            .iter()
            .map(|h| device_by_bus_id(&h.pci_bus_id))
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
    pub fn allocate(&mut self, comm_prefix: &str, ranks_on_device: usize) -> Result<Vec<Vec<u8>>> {
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
    /// and checks every mapping with a real read/write (`verify_peers`).
    pub fn open_peers(&mut self, handles: &[Vec<Vec<u8>>], class: &TopologyClass) -> Result<()> {
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

    /// Confirms every mapping with a real read and write (after every rank mapped).
    pub fn verify(&self) -> Result<()> {
        lock(self.own()?)
            .verify_peers()
            .map_err(|e| cuda_err(self.rank, e))
    }

    /// Every rank has mapped every buffer: drop this rank's registry entry.
    pub fn all_opened(&mut self) {
        if let Some(key) = self.own_key.take() {
            if let Ok(mut reg) = registry().lock() {
                reg.remove(&key);
            }
        }
    }

    /// What each algorithm's buffers hold, in bytes (the smallest over the dtypes).
    pub fn capacity(&self) -> Capacity {
        let half = self.buffer_bytes();
        let cap = |a: Algo| {
            DType::ALL
                .iter()
                .map(|d| inc_cuda::launch::max_count(a, *d, half).saturating_mul(d.size() as u64))
                .min()
                .unwrap_or(0)
        };
        Capacity {
            one_shot: cap(Algo::OneShot),
            // a two-shot call larger than the buffer runs in pieces ([`CudaBackend::launch`])
            two_shot: if cap(Algo::TwoShot) > 0 { u64::MAX } else { 0 },
            hcm: if self.world == 8 { cap(Algo::Hcm) } else { 0 },
            push_one_shot: cap(Algo::PushOneShot),
        }
    }

    /// Enqueues one kernel allreduce on `stream`. A two-shot call larger than the
    /// symmetric buffer holds runs as consecutive calls on pieces of at most the buffer's
    /// capacity (whole 16-byte chunks, so every piece keeps the tensor's alignment); every
    /// rank cuts the same pieces.
    ///
    /// # Safety
    /// `input`/`output` are device addresses of `count` elements of `dtype` on this
    /// device, valid until the call completes on `stream`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn launch(
        &self,
        stream: &CudaStream,
        algo: Algo,
        dtype: DType,
        op: ReduceOp,
        input: u64,
        output: u64,
        count: u64,
    ) -> Result<()> {
        let piece = match algo {
            Algo::TwoShot => {
                let lanes = inc_cuda::launch::lanes(dtype);
                let max = inc_cuda::launch::max_count(algo, dtype, self.buffer_bytes());
                (max / lanes * lanes).max(lanes)
            }
            _ => count.max(1),
        };
        let own = lock(self.own()?);
        let es = dtype.size() as u64;
        let mut done = 0u64;
        loop {
            let n = (count - done).min(piece);
            let call = RawCall {
                algo,
                dtype,
                op,
                input: input + done * es,
                output: output + done * es,
                count: n,
                options: CallOptions {
                    blocks: self.blocks,
                    timeout: self.call_timeout,
                },
            };
            // SAFETY: forwarded from this function's contract; the piece lies inside the
            // caller's `count` elements.
            let r = unsafe { self.kernels.allreduce_raw(&own, stream, &call) };
            self.log_kernel_loads();
            r.map_err(|e| cuda_err(self.rank, e))?;
            done += n;
            if done >= count {
                break;
            }
        }
        Ok(())
    }

    /// Logs (info) where each kernel instance loaded since the last call came from:
    /// `embedded` (the CUBIN in the binary), `disk` (kernel cache), `compiled` (NVRTC) or
    /// `shared` (another thread's compile); once per instance and process, by whichever
    /// rank of the device loaded it. Cheap when nothing was loaded.
    pub(crate) fn log_kernel_loads(&self) {
        for r in self.kernels.take_load_reports() {
            let (algo, dtype, op) = r.instance;
            info!(
                rank = self.rank,
                kernel = %inc_cuda::source::entry_name(algo, dtype, op),
                origin = r.origin.name(),
                load_ms = ms(r.elapsed),
                note = r.note.as_deref().unwrap_or(""),
                "kernel loaded (first use of this instance)"
            );
        }
    }

    /// The check a [`Work`](crate::Work) runs after its event.
    pub(crate) fn kernel_check(&self) -> Result<KernelCheck> {
        Ok(KernelCheck {
            rank: self.rank,
            bufs: self.own()?.clone(),
            timeout_ms: u64::try_from(self.call_timeout.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// Whether a kernel recorded an error in the host mirror (one atomic load; checked at
    /// the entry of every call, so a failure of a call whose `Work` was dropped is seen).
    pub fn error_recorded(&self) -> bool {
        self.own.as_ref().is_some_and(|o| lock(o).error_recorded())
    }

    /// The error the kernels recorded (after the stream completed), typed.
    pub fn read_error(&self) -> Option<CommError> {
        self.kernel_check().ok().and_then(|k| k.error())
    }

    /// Whether peers of other processes import this rank's buffer through CUDA IPC (its
    /// teardown must then be collective: see [`Comm::shutdown`](crate::Comm::shutdown)).
    pub fn exports_ipc(&self) -> bool {
        self.multi_process && self.own.is_some()
    }

    /// Teardown, step 1 (before the barrier): waits for this rank's work and closes every
    /// mapping of a peer's buffer (IPC handles closed; same-process references dropped).
    pub fn close_imports(&mut self) -> Result<()> {
        let _ = self.stream.synchronize();
        self.peers.clear();
        self.sym.close_imports(self.rank)?;
        match &self.own {
            Some(o) => lock(o).close_peers().map_err(|e| cuda_err(self.rank, e)),
            None => Ok(()),
        }
    }

    /// Teardown when the barrier failed (a peer is dead or late): this rank's buffer is
    /// never freed, since a live peer may still map it (freeing memory another process
    /// maps is undefined in CUDA). Leaks one allocation; bounded and safe.
    pub fn leak_own(&mut self) {
        self.sym.leak_own();
        if let Some(o) = self.own.take() {
            std::mem::forget(o);
        }
    }

    /// Raises the abort word: this and every peer's pending and later kernels stop.
    pub fn abort(&self) {
        if let Some(o) = &self.own {
            lock(o).abort();
        }
    }
}

impl Drop for CudaBackend {
    fn drop(&mut self) {
        self.all_opened();
        let _ = self.stream.synchronize();
    }
}
