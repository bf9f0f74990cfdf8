//! [`Comm`]: one rank of an intra-node allreduce communicator.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use inc_store::{Handshake, MemStore, Store, TcpStore};
use inc_topo::{NvlMesh, TopologyClass};
use tracing::{debug, info, info_span, warn};

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr, DevicePtrMut};

use crate::backend::cuda::CudaBackend;
use crate::backend::sim::SimBackend;
use crate::counters::{CommStats, Counters};
use crate::element::Element;
use crate::error::{CommError, Result};
use crate::nccl::Nccl;
use crate::options::{AlgoPath, BackendKind, CommOptions};
use crate::order::StreamOrder;
use crate::rendezvous::{self, Meta, Opened, Rdv, FAILED_CLASS};
use crate::select::{bytes_of, Fallback, Selection, Selector, TuneTable};
use crate::work::{Checker, CudaWork, Work, WorkState};
use crate::{DType, ReduceOp};

// The sim backend is the larger one; boxing the cuda one keeps the enum lean, and a
// Comm holds exactly one backend, so the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend {
    Sim(SimBackend),
    Cuda(Box<CudaBackend>),
}

impl Backend {
    fn kind(&self) -> BackendKind {
        match self {
            Backend::Sim(_) => BackendKind::Sim,
            Backend::Cuda(_) => BackendKind::Cuda,
        }
    }
}

/// What the calls of one communicator share, under its call lock.
#[derive(Default)]
pub(crate) struct CallState {
    /// The previous call's stream and event (cuda backend).
    order: StreamOrder,
    /// Device staging buffers of the host calls (cuda backend), kept and grown as needed.
    staging: Staging,
}

/// Device buffers through which host calls run on the cuda backend.
#[derive(Default)]
struct Staging {
    input: Option<CudaSlice<u8>>,
    output: Option<CudaSlice<u8>>,
}

/// `slot`, reallocated on `stream` when it holds fewer than `len` bytes (to the next
/// power of two, so growing sizes reallocate rarely).
fn staging_buf<'a>(
    slot: &'a mut Option<CudaSlice<u8>>,
    len: usize,
    stream: &Arc<CudaStream>,
    rank: usize,
) -> Result<&'a mut CudaSlice<u8>> {
    if slot.as_ref().is_none_or(|s| s.len() < len) {
        *slot = None; // free the old one first
        let cap = len.checked_next_power_of_two().unwrap_or(len);
        let buf = stream
            .alloc_zeros::<u8>(cap)
            .map_err(|e| CommError::Backend {
                rank,
                reason: format!("cuMemAlloc of {cap} staging bytes: {e}"),
            })?;
        *slot = Some(buf);
    }
    slot.as_mut().ok_or_else(|| CommError::Backend {
        rank,
        reason: "staging buffer missing".into(),
    })
}

/// One rank of an allreduce communicator (a GPU, or a CPU-simulated device).
///
/// Created collectively by every rank ([`Comm::init`], [`Comm::from_env`],
/// [`Comm::init_threads`]); calls are collective too: every rank must make the same calls
/// (same sizes, dtypes and ops) in the same order. A mismatch, a dead peer or a timeout is
/// an error on every rank involved, and poisons the communicator: every later call returns
/// [`CommError::Poisoned`] at once.
pub struct Comm {
    rank: usize,
    world: usize,
    opts: CommOptions,
    prefix: String,
    mesh: NvlMesh,
    selector: Selector,
    backend: Backend,
    counters: Counters,
    poison: Arc<OnceLock<CommError>>,
    /// The NCCL communicator (cuda backend), created on first use; its outcome is kept.
    /// Every use of it (calls, error queries) holds its lock.
    nccl: OnceLock<std::result::Result<Arc<Mutex<Nccl>>, CommError>>,
    /// Serialises calls of one communicator (they must be ordered anyway), with the state
    /// they share.
    call: Mutex<CallState>,
    store: Arc<dyn Store>,
    /// The collective teardown ran (by [`Comm::shutdown`] or drop).
    shut_down: bool,
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Comm")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("backend", &self.backend.kind())
            .field("topology", &self.selector.class().name())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Drop for Comm {
    fn drop(&mut self) {
        // Only a buffer imported by other processes needs the collective order; within
        // one process the mappings hold references and a barrier here could stall a
        // thread that drops several communicators in turn.
        let ipc = matches!(&self.backend, Backend::Cuda(b) if b.exports_ipc());
        if ipc {
            if let Err(e) = self.teardown() {
                warn!(rank = self.rank, error = %e, "teardown at drop");
            }
        }
    }
}

/// torchrun's variables, read by [`Comm::from_env`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorchrunEnv {
    /// `RANK`.
    pub rank: usize,
    /// `WORLD_SIZE`.
    pub world: usize,
    /// `LOCAL_RANK` (default: `RANK`).
    pub local_rank: usize,
    /// `LOCAL_WORLD_SIZE` (default: `WORLD_SIZE`).
    pub local_world: usize,
    /// `MASTER_ADDR`.
    pub master_addr: String,
    /// `MASTER_PORT`.
    pub master_port: u16,
}

impl TorchrunEnv {
    /// Reads and checks the variables from any source.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        fn num<T: std::str::FromStr>(
            get: &dyn Fn(&str) -> Option<String>,
            k: &str,
            d: Option<T>,
        ) -> Result<T> {
            match get(k) {
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| CommError::option(k, &v, "expected a non-negative integer")),
                None => d.ok_or_else(|| {
                    CommError::option(k, "", "not set (run under inc launch or torchrun)")
                }),
            }
        }
        let rank: usize = num(&get, "RANK", None)?;
        let world: usize = num(&get, "WORLD_SIZE", None)?;
        let local_rank: usize = num(&get, "LOCAL_RANK", Some(rank))?;
        let local_world: usize = num(&get, "LOCAL_WORLD_SIZE", Some(world))?;
        let master_port: u16 = num(&get, "MASTER_PORT", None)?;
        let master_addr = get("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into());
        if world == 0 || rank >= world {
            return Err(CommError::option(
                "RANK",
                &rank.to_string(),
                format!("must be below WORLD_SIZE={world}"),
            ));
        }
        if local_world != world {
            return Err(CommError::option(
                "LOCAL_WORLD_SIZE",
                &local_world.to_string(),
                format!("inc is intra-node: every rank must be on this host (WORLD_SIZE={world})"),
            ));
        }
        if local_rank >= local_world {
            return Err(CommError::option(
                "LOCAL_RANK",
                &local_rank.to_string(),
                "must be below LOCAL_WORLD_SIZE",
            ));
        }
        Ok(Self {
            rank,
            world,
            local_rank,
            local_world,
            master_addr,
            master_port,
        })
    }
}

fn resolve_backend(kind: BackendKind) -> BackendKind {
    match kind {
        BackendKind::Auto => {
            if crate::backend::cuda_available() {
                BackendKind::Cuda
            } else {
                BackendKind::Sim
            }
        }
        k => k,
    }
}

impl Comm {
    /// Joins a communicator of `world` ranks as `rank`, meeting the others through `store`.
    /// Blocks until every rank joined (or `opts.timeout` passed). All ranks return a
    /// communicator, or all return the same error (except for timeouts, which name the
    /// missing ranks).
    pub fn init(
        store: Arc<dyn Store>,
        rank: usize,
        world: usize,
        opts: CommOptions,
    ) -> Result<Comm> {
        Self::init_inner(store, rank, world, opts, rank, false)
    }

    /// Joins the communicator described by torchrun's variables (`RANK`, `WORLD_SIZE`,
    /// `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`) through the TCP
    /// store at `MASTER_ADDR:MASTER_PORT`, with options from `INC_*` variables. The device
    /// is `LOCAL_RANK` (modulo the GPU count when `INC_ALLOW_SHARED_DEVICE=1`); the sim
    /// backend uses shared memory, the cuda backend CUDA IPC.
    pub fn from_env() -> Result<Comm> {
        Self::from_env_with(CommOptions::from_env()?)
    }

    /// Like [`Comm::from_env`] with explicit options (the torchrun variables still come
    /// from the environment).
    pub fn from_env_with(opts: CommOptions) -> Result<Comm> {
        let env = TorchrunEnv::from_lookup(|k| std::env::var(k).ok())?;
        let addr = format!("{}:{}", env.master_addr, env.master_port);
        let copts = inc_store::ClientOptions {
            connect_timeout: opts.timeout,
            ..inc_store::ClientOptions::from_env()
        };
        let store = TcpStore::connect(&addr, copts).map_err(|e| CommError::Store {
            rank: env.rank,
            reason: format!("connecting to {addr}: {e}"),
            source: crate::error::ErrorSource::new(e),
        })?;
        // Virtual ranks across processes: more local ranks than GPUs share them round-robin.
        let gpus = crate::backend::cuda_device_count();
        let device = if opts.allow_shared_device
            && resolve_backend(opts.backend) == BackendKind::Cuda
            && gpus > 0
        {
            env.local_rank % gpus
        } else {
            env.local_rank
        };
        Self::init_inner(Arc::new(store), env.rank, env.world, opts, device, true)
    }

    /// Creates one communicator per entry of `devices` in this process (rank i drives
    /// device `devices[i]`), meeting through an in-memory store. The sim backend shares
    /// in-process regions (or shared memory with `opts.sim_shm`); CUDA uses peer access.
    pub fn init_threads(devices: &[usize], opts: CommOptions) -> Result<Vec<Comm>> {
        let world = devices.len();
        if world == 0 {
            return Err(CommError::InvalidArgument {
                rank: 0,
                reason: "no devices given".into(),
            });
        }
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let results: Vec<Result<Comm>> = std::thread::scope(|s| {
            let handles: Vec<_> = devices
                .iter()
                .enumerate()
                .map(|(rank, &dev)| {
                    let store = store.clone();
                    let opts = opts.clone();
                    s.spawn(move || Self::init_inner(store, rank, world, opts, dev, false))
                })
                .collect();
            handles
                .into_iter()
                .enumerate()
                .map(|(rank, h)| {
                    h.join().unwrap_or_else(|_| {
                        Err(CommError::Backend {
                            rank,
                            reason: "init thread panicked".into(),
                        })
                    })
                })
                .collect()
        });
        results.into_iter().collect()
    }

    fn init_inner(
        store: Arc<dyn Store>,
        rank: usize,
        world: usize,
        opts: CommOptions,
        device: usize,
        multi_process: bool,
    ) -> Result<Comm> {
        let span = info_span!("inc.init", rank, world);
        let _g = span.enter();
        opts.validate()?;
        if world == 0 || world > inc_sim::MAX_RANKS || rank >= world {
            return Err(CommError::InvalidArgument {
                rank,
                reason: format!(
                    "rank {rank} of world {world}: need 1 <= world <= {} and rank < world",
                    inc_sim::MAX_RANKS
                ),
            });
        }
        let started = Instant::now();
        let prefix = rendezvous::comm_prefix(&*store, rank)?;
        let kind = resolve_backend(opts.backend);
        info!(backend = %kind, prefix = %prefix, "rendezvous starting");

        // Local setup; a failure is reported to the peers in step 1 instead of leaving them
        // waiting.
        let tune = match &opts.tune_file {
            Some(p) => TuneTable::load(p).map(Some),
            None => Ok(None),
        };
        let backend: Result<Backend> = match kind {
            BackendKind::Sim => {
                SimBackend::new(rank, world, device, &opts, multi_process || opts.sim_shm)
                    .map(Backend::Sim)
            }
            BackendKind::Cuda => CudaBackend::new(rank, world, device, &opts, multi_process)
                .map(|b| Backend::Cuda(Box::new(b))),
            BackendKind::Auto => Err(CommError::Backend {
                rank,
                reason: "backend not resolved".into(),
            }),
        };
        let local_error = match (&backend, &tune) {
            (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
            _ => None,
        };
        // The deadline starts after the local setup (device, NVRTC compile on a cold
        // cache): our own setup is not a wait, and must not eat the time we give peers.
        let deadline = Instant::now() + opts.timeout;
        let rdv = Rdv {
            store: &*store,
            prefix: prefix.clone(),
            rank,
            world,
            deadline,
            timeout: opts.timeout,
        };

        // Step 1: versions, options, backend, local failures.
        let meta = Meta {
            version: rendezvous::VERSION.into(),
            options: opts.agreement_digest(),
            backend: kind.name().into(),
            pid: std::process::id(),
            error: local_error,
        };
        let metas = rdv.gather_json("meta", &meta)?;
        if let Err(e) = rendezvous::check_meta(rank, &metas) {
            warn!(error = %e, "rendezvous rejected");
            // Our own local error is more precise than the group's summary.
            return Err(match (backend, tune) {
                (Err(own), _) | (_, Err(own)) => own,
                _ => e,
            });
        }
        let (mut backend, tune) = match (backend, tune) {
            (Ok(b), Ok(t)) => (b, t),
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };

        // Step 2: one host, distinct devices.
        let (bus_id, uuid, buffer_bytes, signal_bytes, blocks, hs_backend) = match &backend {
            Backend::Sim(b) => (
                b.device_id(),
                String::new(),
                b.buffer_bytes(),
                b.signal_bytes(),
                b.blocks(),
                inc_store::Backend::Sim,
            ),
            Backend::Cuda(b) => (
                b.bus_id().to_string(),
                b.uuid().to_string(),
                b.buffer_bytes(),
                b.signal_bytes(),
                b.blocks(),
                inc_store::Backend::Cuda,
            ),
        };
        let hs1 = Handshake {
            rank: u32::try_from(rank).unwrap_or(u32::MAX),
            world: u32::try_from(world).unwrap_or(u32::MAX),
            backend: hs_backend,
            topology_class: 0,
            hostname: rendezvous::hostname(),
            pci_bus_id: bus_id,
            device_uuid: uuid,
            mesh: Vec::new(),
            ipc_handles: Vec::new(),
            buffer_bytes,
            signal_bytes,
            blocks,
        };
        let all1 = rdv.exchange("hs1", &hs1)?;
        rendezvous::check_devices(rank, &all1, opts.allow_shared_device)?;
        let ranks_on_device = rendezvous::max_ranks_per_device(&all1);

        // Topology and buffers; a failure goes to the peers in step 3.
        let local = Self::local_topology(&backend, &opts, world, &all1).and_then(|mesh| {
            let class = crate::topo::classify(&mesh);
            let handles = match &mut backend {
                Backend::Sim(b) => b.allocate(&prefix)?,
                Backend::Cuda(b) => b.allocate(&prefix, ranks_on_device)?,
            };
            Ok((mesh, class, handles))
        });
        let mut hs2 = Handshake {
            hostname: hs1.hostname.clone(),
            ..hs1.clone()
        };
        match &local {
            Ok((mesh, class, handles)) => {
                hs2.mesh = mesh.rows();
                hs2.topology_class = crate::topo::class_code(class);
                hs2.ipc_handles = handles.clone();
                info!(class = class.name(), "topology");
            }
            Err(e) => {
                hs2.topology_class = FAILED_CLASS;
                let mut why = e.to_string();
                why.truncate(1024);
                hs2.ipc_handles = vec![why.into_bytes()];
            }
        }
        let all2 = rdv.exchange("hs2", &hs2)?;
        if let Err(own) = &local {
            return Err(own.clone());
        }
        let (mesh, class, handles) = rendezvous::check_buffers(rank, &all2)?;

        // Step 4: map the peers' buffers; all ranks must succeed.
        let opened = match &mut backend {
            Backend::Sim(b) => b.open_peers(&handles, &class),
            Backend::Cuda(b) => b.open_peers(&handles, &class).and_then(|()| b.verify()),
        };
        let msg = Opened {
            error: opened.as_ref().err().map(|e| e.to_string()),
        };
        let all4 = rdv.gather_json("opened", &msg)?;
        opened?;
        rendezvous::check_opened(rank, &all4)?;
        let capacity = match &mut backend {
            Backend::Sim(b) => {
                b.all_opened();
                b.capacity()
            }
            Backend::Cuda(b) => {
                b.all_opened();
                b.capacity()
            }
        };
        let selector = Selector::new(world, class, &opts, capacity, tune);
        info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "communicator ready"
        );
        let comm = Comm {
            rank,
            world,
            opts,
            prefix,
            mesh,
            selector,
            backend,
            counters: Counters::default(),
            poison: Arc::new(OnceLock::new()),
            nccl: OnceLock::new(),
            call: Mutex::new(CallState::default()),
            store,
            shut_down: false,
        };
        // INC_ALGO=nccl: create the NCCL communicator now (collective). A failure is kept
        // and returned by NCCL calls; the communicator itself is fine.
        if comm.opts.algo == crate::options::AlgoChoice::Force(AlgoPath::Nccl)
            && matches!(comm.backend, Backend::Cuda(_))
        {
            if let Err(e) = comm.nccl_comm() {
                warn!(error = %e, "INC_ALGO=nccl but NCCL is unusable");
            }
        }
        Ok(comm)
    }

    fn local_topology(
        backend: &Backend,
        opts: &CommOptions,
        world: usize,
        _peers: &[Handshake],
    ) -> Result<NvlMesh> {
        match backend {
            Backend::Sim(_) => crate::topo::sim_mesh(opts.sim_topology, world),
            Backend::Cuda(b) => b.mesh(_peers),
        }
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn world(&self) -> usize {
        self.world
    }

    /// The backend in use (`cuda` or `sim`).
    pub fn backend(&self) -> BackendKind {
        self.backend.kind()
    }

    /// The agreed NVLink mesh.
    pub fn mesh(&self) -> &NvlMesh {
        &self.mesh
    }

    /// The agreed topology class.
    pub fn topology(&self) -> &TopologyClass {
        self.selector.class()
    }

    /// The hcm table the hcm path runs with (`[n0, n1, n2, relay]` per rank), when hcm can
    /// run on this group: a hybrid cube mesh of 8 (the solver's table) or a fully
    /// connected group of 8 (the canonical DGX-1 table). The same on every rank.
    pub fn hcm_table(&self) -> Option<&[[usize; 4]; 8]> {
        self.selector.hcm_table()
    }

    /// The options the communicator was created with.
    pub fn options(&self) -> &CommOptions {
        &self.opts
    }

    /// Per-path call counters and the last fallback reason.
    pub fn stats(&self) -> CommStats {
        self.counters.snapshot()
    }

    /// The path a call of `bytes` bytes of `dtype` would take, and why it would fall back.
    pub fn select_algo(&self, bytes: u64, dtype: DType) -> Selection {
        self.selector.select(bytes, dtype)
    }

    /// The error that poisoned this communicator, if any.
    pub fn poisoned(&self) -> Option<&CommError> {
        self.poison.get()
    }

    /// Collective, bounded teardown: every rank waits for its own work and closes its
    /// mappings of the peers' buffers, the ranks meet in the store (a barrier bounded by
    /// the communicator's timeout), and only then does each rank free its own buffer. CUDA
    /// leaves freeing memory that another process still maps (CUDA IPC) undefined; this
    /// order makes every importer close before the owner frees.
    ///
    /// Never hangs: when a peer is dead or does not shut down within the timeout, this
    /// returns its [`CommError::Timeout`] and the rank's own device buffer is left
    /// allocated (leaked until the process exits) rather than freed under a peer that may
    /// still map it.
    ///
    /// Dropping a communicator without `shutdown` does the same when its buffer is shared
    /// with other processes (cuda backend across processes, errors logged); within one
    /// process the buffers are reference-counted, and drop frees them without a barrier.
    pub fn shutdown(mut self) -> Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        if self.shut_down {
            return Ok(());
        }
        self.shut_down = true;
        let rank = self.rank;
        let closed = match &mut self.backend {
            Backend::Cuda(b) => b.close_imports(),
            Backend::Sim(_) => Ok(()),
        };
        let msg = match &closed {
            Ok(()) => b"closed".to_vec(),
            Err(e) => format!("rank {rank}: {e}").into_bytes(),
        };
        let met = inc_store::store_all_gather(
            &*self.store,
            &format!("{}/shutdown", self.prefix),
            rank,
            self.world,
            &msg,
            self.opts.timeout,
        )
        .map_err(|e| crate::rendezvous::store_err(rank, "shutdown", e));
        if met.is_err() {
            if let Backend::Cuda(b) = &mut self.backend {
                if b.exports_ipc() {
                    warn!(rank, "shutdown barrier failed: leaking this rank's buffer");
                    b.leak_own();
                }
            }
        }
        met?;
        closed
    }

    /// Raises the abort flag on every rank: this and every peer's pending and later calls
    /// fail fast (use when this rank gives up, e.g. on its own error).
    pub fn abort(&self, reason: &str) {
        warn!(rank = self.rank, reason, "aborting communicator");
        match &self.backend {
            Backend::Sim(b) => b.abort(),
            Backend::Cuda(b) => b.abort(),
        }
        let _ = self.poison.set(CommError::PeerAborted {
            rank: self.rank,
            peer: self.rank,
            reason: reason.to_string(),
        });
    }

    /// At the entry of every call: an error a kernel (or NCCL) recorded since the last
    /// check, even one of a call whose [`Work`] was dropped without `wait`, is returned
    /// (and poisons the communicator) instead of letting this call run on aborted buffers.
    fn check_entry(&self) -> Result<()> {
        self.check_poison()?;
        if let Backend::Cuda(b) = &self.backend {
            if b.error_recorded() {
                if let Some(e) = b.read_error() {
                    return Err(self.fail(e));
                }
            }
            if let Some(Ok(n)) = self.nccl.get() {
                let err = match n.lock() {
                    Ok(n) => n.async_error(),
                    Err(_) => Some(CommError::Nccl {
                        rank: self.rank,
                        reason: "nccl lock poisoned".into(),
                    }),
                };
                if let Some(e) = err {
                    return Err(self.fail(e));
                }
            }
        }
        Ok(())
    }

    fn check_poison(&self) -> Result<()> {
        match self.poison.get() {
            Some(e) => {
                self.counters.record_error();
                Err(CommError::Poisoned {
                    rank: self.rank,
                    cause: Box::new(e.clone()),
                })
            }
            None => Ok(()),
        }
    }

    /// Books a finished call: counted on `path` when it succeeded, else through
    /// [`Comm::fail`].
    fn settle<W>(&self, path: AlgoPath, bytes: u64, res: Result<W>) -> Result<W> {
        match res {
            Ok(w) => {
                self.counters.record(path, bytes);
                Ok(w)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    pub(crate) fn fail(&self, e: CommError) -> CommError {
        self.counters.record_error();
        if e.poisons() && !matches!(e, CommError::Poisoned { .. }) {
            let _ = self.poison.set(e.clone());
        }
        tracing::error!(rank = self.rank, error = %e, "allreduce failed");
        e
    }

    /// Chooses the path of a call; errors when it would need NCCL and NCCL cannot run.
    fn choose(&self, bytes: u64, dtype: DType) -> Result<Selection> {
        let sel = self.selector.select(bytes, dtype);
        debug!(bytes, dtype = dtype.name(), path = %sel.path, "algorithm");
        if sel.path == AlgoPath::Nccl && matches!(self.backend, Backend::Sim(_)) {
            return Err(match &sel.fallback {
                Some(Fallback::TooLarge { max, .. }) => CommError::TooLarge {
                    rank: self.rank,
                    bytes,
                    max: *max,
                },
                Some(f) => CommError::Unsupported {
                    rank: self.rank,
                    reason: format!("{f}; the sim backend has no NCCL fallback"),
                },
                None => CommError::Unsupported {
                    rank: self.rank,
                    reason: "INC_ALGO=nccl needs the cuda backend".into(),
                },
            });
        }
        if let Some(f) = &sel.fallback {
            let why = f.to_string();
            debug!(reason = %why, "falling back to nccl");
            self.counters.record_fallback(&why);
        }
        Ok(sel)
    }

    /// The selection of a call: the selector's, or `path` after checking it can run.
    fn selection(&self, path: Option<AlgoPath>, bytes: u64, dtype: DType) -> Result<Selection> {
        match path {
            None => self.choose(bytes, dtype).map_err(|e| self.fail(e)),
            Some(p) => {
                self.check_path(p, bytes, dtype)?;
                Ok(Selection {
                    path: p,
                    fallback: None,
                })
            }
        }
    }

    fn lock_call(&self) -> Result<std::sync::MutexGuard<'_, CallState>> {
        self.call.lock().map_err(|_| CommError::Backend {
            rank: self.rank,
            reason: "call lock poisoned".into(),
        })
    }

    fn bytes(&self, len: usize, dtype: DType) -> Result<u64> {
        bytes_of(len, dtype).ok_or(CommError::TooLarge {
            rank: self.rank,
            bytes: u64::MAX,
            max: u64::MAX,
        })
    }

    /// In-place allreduce of a host buffer: every rank's `buf` becomes the reduction of all
    /// ranks' `buf`s.
    ///
    /// **Blocking**: the call has finished when this returns, so the returned [`Work`] is
    /// already complete (`wait` returns `Ok` at once); it is returned so that host and
    /// device calls read alike. On the sim backend this is the data path; on the cuda
    /// backend the data goes through device staging buffers that the communicator keeps
    /// (allocated by the first host call, reallocated only when a larger call comes), on
    /// [`Comm::stream`], ordered after this communicator's previous call on any stream. A
    /// convenience, not the fast path: use [`Comm::allreduce`] on device buffers.
    pub fn allreduce_host<T: Element>(&self, buf: &mut [T], op: ReduceOp) -> Result<Work> {
        let dtype = T::DTYPE;
        let mut st = self.lock_call()?;
        self.check_entry()?;
        let bytes = self.bytes(buf.len(), dtype)?;
        let sel = self.choose(bytes, dtype).map_err(|e| self.fail(e))?;
        let data: &mut [u8] = bytemuck::cast_slice_mut(buf);
        let res = match (&self.backend, sel.path.algo()) {
            (Backend::Sim(b), Some(algo)) => b.allreduce_in_place(algo, dtype, op, data),
            (Backend::Cuda(b), _) => {
                let n = data.len() / dtype.size().max(1);
                self.stage(&mut st, b, sel.path, dtype, op, None, data, n)
            }
            (_, None) => Err(CommError::Unsupported {
                rank: self.rank,
                reason: "no path".into(),
            }),
        };
        self.settle(sel.path, bytes, res.map(|()| Work::done()))
    }

    /// Out-of-place allreduce of host buffers: `output` = reduction of every rank's `input`.
    /// Blocking, like [`Comm::allreduce_host`] (the returned [`Work`] is complete).
    pub fn allreduce_host_out<T: Element>(
        &self,
        input: &[T],
        output: &mut [T],
        op: ReduceOp,
    ) -> Result<Work> {
        self.host_out(None, input, output, op)
    }

    /// Like [`Comm::allreduce_host_out`] on a given path, whatever the selector would
    /// choose (benchmarks, `inc demo`); an error when the path cannot take the call.
    pub fn allreduce_host_using<T: Element>(
        &self,
        path: AlgoPath,
        input: &[T],
        output: &mut [T],
        op: ReduceOp,
    ) -> Result<Work> {
        self.host_out(Some(path), input, output, op)
    }

    fn host_out<T: Element>(
        &self,
        path: Option<AlgoPath>,
        input: &[T],
        output: &mut [T],
        op: ReduceOp,
    ) -> Result<Work> {
        let dtype = T::DTYPE;
        let mut st = self.lock_call()?;
        self.check_entry()?;
        if input.len() != output.len() {
            return Err(self.len_mismatch(input.len(), output.len()));
        }
        let bytes = self.bytes(input.len(), dtype)?;
        let sel = self.selection(path, bytes, dtype)?;
        let src: &[u8] = bytemuck::cast_slice(input);
        let dst: &mut [u8] = bytemuck::cast_slice_mut(output);
        let res = match (&self.backend, sel.path.algo()) {
            (Backend::Sim(b), Some(algo)) => b.allreduce(algo, dtype, op, src, dst),
            (Backend::Cuda(b), _) => {
                self.stage(&mut st, b, sel.path, dtype, op, Some(src), dst, input.len())
            }
            (_, None) => Err(CommError::Unsupported {
                rank: self.rank,
                reason: "no path".into(),
            }),
        };
        self.settle(sel.path, bytes, res.map(|()| Work::done()))
    }

    fn len_mismatch(&self, a: usize, b: usize) -> CommError {
        CommError::InvalidArgument {
            rank: self.rank,
            reason: format!("input has {a} elements, output {b}"),
        }
    }

    /// Host staging on the cuda backend: copy in (`src`, else `dst` for in place) to the
    /// kept staging buffers, reduce on the communicator's stream, wait, copy out into `dst`.
    #[allow(clippy::too_many_arguments)]
    fn stage(
        &self,
        st: &mut CallState,
        b: &CudaBackend,
        path: AlgoPath,
        dtype: DType,
        op: ReduceOp,
        src: Option<&[u8]>,
        dst: &mut [u8],
        count: usize,
    ) -> Result<()> {
        let rank = self.rank;
        let stream = b.stream();
        let drv = |what: &'static str| {
            move |e: cudarc::driver::DriverError| CommError::Backend {
                rank,
                reason: format!("{what}: {e}"),
            }
        };
        if count == 0 {
            return Ok(());
        }
        let len = dst.len();
        let CallState { order, staging } = st;
        let dev_in = staging_buf(&mut staging.input, len, stream, rank)?;
        let mut dev_in = dev_in.slice_mut(0..len);
        stream
            .memcpy_htod(src.unwrap_or(dst), &mut dev_in)
            .map_err(drv("copy to device"))?;
        let mut dev_out = match src {
            Some(_) => Some(staging_buf(&mut staging.output, len, stream, rank)?.slice_mut(0..len)),
            None => None,
        };
        let work = {
            let (ip, _gi) = dev_in.device_ptr_mut(stream);
            let op_ = match &mut dev_out {
                Some(o) => o.device_ptr_mut(stream),
                None => (ip, cudarc::driver::SyncOnDrop::Sync(None)),
            };
            // SAFETY: both device buffers hold at least `count` elements of `dtype`
            // (len bytes) and live until the wait below.
            unsafe { self.enqueue(order, b, path, dtype, op, ip, op_.0, count, stream) }?
        };
        work.wait()?;
        match &dev_out {
            Some(o) => stream.memcpy_dtoh(o, dst),
            None => stream.memcpy_dtoh(&dev_in, dst),
        }
        .map_err(drv("copy to host"))?;
        stream.synchronize().map_err(drv("cuStreamSynchronize"))?;
        Ok(())
    }

    /// The NCCL communicator, created collectively on first use (every rank must reach
    /// its first NCCL call); the outcome, communicator or error, is kept.
    fn nccl_comm(&self) -> Result<Arc<Mutex<Nccl>>> {
        let Backend::Cuda(b) = &self.backend else {
            return Err(CommError::Unsupported {
                rank: self.rank,
                reason: "the nccl path needs the cuda backend".into(),
            });
        };
        self.nccl
            .get_or_init(|| {
                Nccl::create(
                    &*self.store,
                    &self.prefix,
                    self.rank,
                    self.world,
                    b.context(),
                    b.ranks_on_device() > 1,
                    self.opts.timeout,
                )
                .map(|n| Arc::new(Mutex::new(n)))
            })
            .clone()
    }

    /// Enqueues one call on the cuda backend and records its event (not while `stream`
    /// is being captured into a graph).
    ///
    /// # Safety
    /// `input`/`output` are device addresses of `count` elements of `dtype` on this
    /// communicator's device, valid until the call completes on `stream`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn enqueue(
        &self,
        order: &mut StreamOrder,
        b: &CudaBackend,
        path: AlgoPath,
        dtype: DType,
        op: ReduceOp,
        input: u64,
        output: u64,
        count: usize,
        stream: &Arc<CudaStream>,
    ) -> Result<Work> {
        // Calls run in call order whatever their streams (see crate::order).
        let capture = StreamOrder::capture_of(self.rank, stream)?;
        order.before(self.rank, stream, capture)?;
        let check = match path.algo() {
            Some(algo) => {
                // SAFETY: forwarded from this function's contract.
                unsafe { b.launch(stream, algo, dtype, op, input, output, count as u64) }?;
                Checker::Kernel(b.kernel_check()?)
            }
            None => {
                let n = self.nccl_comm()?;
                {
                    let g = crate::nccl::lock(&n, self.rank)?;
                    // SAFETY: forwarded from this function's contract.
                    unsafe { g.all_reduce_raw(input, output, count, dtype, op, stream) }?;
                }
                Checker::Nccl(n)
            }
        };
        order.after(stream, capture);
        if capture.is_some() {
            return Ok(Work {
                state: WorkState::Captured,
            });
        }
        let ev = b
            .events()
            .take(b.context())
            .map_err(|e| CommError::Backend {
                rank: self.rank,
                reason: format!("cuEventCreate: {e}"),
            })?;
        if let Err(e) = ev.record(stream) {
            b.events().give(ev);
            return Err(CommError::Backend {
                rank: self.rank,
                reason: format!("cuEventRecord: {e}"),
            });
        }
        Ok(Work {
            state: WorkState::Cuda(CudaWork {
                event: Some(ev),
                pool: b.events().clone(),
                check,
                poison: self.poison.clone(),
                rank: self.rank,
                timeout: self.opts.timeout,
            }),
        })
    }

    fn cuda(&self) -> Result<&CudaBackend> {
        match &self.backend {
            Backend::Cuda(b) => Ok(b),
            Backend::Sim(_) => Err(CommError::Unsupported {
                rank: self.rank,
                reason: "device buffers need the cuda backend (use allreduce_host on sim)".into(),
            }),
        }
    }

    fn check_stream(
        &self,
        b: &CudaBackend,
        stream: &CudaStream,
        dev: &[&Arc<CudaContext>],
    ) -> Result<()> {
        let mine = b.context().cu_device();
        if stream.context().cu_device() != mine || dev.iter().any(|c| c.cu_device() != mine) {
            return Err(CommError::InvalidArgument {
                rank: self.rank,
                reason: format!(
                    "the stream and buffers must be on this rank's device (ordinal {})",
                    b.context().ordinal()
                ),
            });
        }
        Ok(())
    }

    /// In-place allreduce of device memory, enqueued on `stream` (any stream of this
    /// rank's device, e.g. [`Comm::stream`]): every rank's `buf` becomes the reduction of
    /// all ranks' `buf`s. `buf` is anything cudarc can hand out a device pointer of: a
    /// `CudaSlice<T>` or a `CudaViewMut<T>` of one (`slice.slice_mut(a..b)`).
    ///
    /// Returns at once; [`Work::wait`] waits and reports protocol errors. Calls of one
    /// communicator run on the device in call order whatever their streams (a call on
    /// another stream than the previous one waits for it, `cuStreamWaitEvent`). Under CUDA
    /// graph capture this holds between calls of the same capture (two streams of one
    /// capture included); between a captured call and a live one there is no wait, since
    /// the graph runs when it is launched: launch it on the previous call's stream, or
    /// order it with [`Work::event`]. In steady state the host side makes no allocation
    /// (the first call, and a call entering or leaving a capture, creates the ordering
    /// event), takes no contended lock, and is CUDA-graph capturable (nothing
    /// synchronises while `stream` is capturing; disable cudarc's event tracking on the
    /// context for capture, as for any cudarc capture).
    pub fn allreduce<T: Element, B: DevicePtrMut<T>>(
        &self,
        buf: &mut B,
        op: ReduceOp,
        stream: &Arc<CudaStream>,
    ) -> Result<Work> {
        self.device_call(None, None, buf, op, stream)
    }

    /// Out-of-place allreduce of device memory: `output` = reduction of every rank's
    /// `input` (same lengths; slices or views), enqueued on `stream`.
    pub fn allreduce_out<T: Element, I: DevicePtr<T>, O: DevicePtrMut<T>>(
        &self,
        input: &I,
        output: &mut O,
        op: ReduceOp,
        stream: &Arc<CudaStream>,
    ) -> Result<Work> {
        self.device_call(None, Some(input), output, op, stream)
    }

    /// [`Comm::allreduce_out`] (or in place when `input` is `None`) on a given path,
    /// whatever the selector would choose (benchmarks, `inc demo`); an error when the path
    /// cannot take the call.
    pub fn allreduce_using<T: Element, O: DevicePtrMut<T>>(
        &self,
        path: AlgoPath,
        input: Option<&dyn DevicePtr<T>>,
        output: &mut O,
        op: ReduceOp,
        stream: &Arc<CudaStream>,
    ) -> Result<Work> {
        self.device_call(Some(path), input, output, op, stream)
    }

    fn device_call<T: Element, O: DevicePtrMut<T>>(
        &self,
        path: Option<AlgoPath>,
        input: Option<&dyn DevicePtr<T>>,
        output: &mut O,
        op: ReduceOp,
        stream: &Arc<CudaStream>,
    ) -> Result<Work> {
        let dtype = T::DTYPE;
        let mut st = self.lock_call()?;
        self.check_entry()?;
        let b = self.cuda()?;
        let n = output.len();
        match input {
            Some(i) => {
                if i.len() != n {
                    return Err(self.len_mismatch(i.len(), n));
                }
                self.check_stream(
                    b,
                    stream,
                    &[i.stream().context(), output.stream().context()],
                )?;
            }
            None => self.check_stream(b, stream, &[output.stream().context()])?,
        }
        let bytes = self.bytes(n, dtype)?;
        let sel = self.selection(path, bytes, dtype)?;
        let (op_ptr, _go) = output.device_ptr_mut(stream);
        let res = match input {
            Some(i) => {
                let (ip, _gi) = i.device_ptr(stream);
                // SAFETY: both buffers hold n elements of T (dtype) on this device (their
                // DeviceSlice lengths) and stay borrowed for the call; cudarc's guards
                // order later uses after it.
                unsafe {
                    self.enqueue(&mut st.order, b, sel.path, dtype, op, ip, op_ptr, n, stream)
                }
            }
            // SAFETY: as above, in place.
            None => unsafe {
                self.enqueue(
                    &mut st.order,
                    b,
                    sel.path,
                    dtype,
                    op,
                    op_ptr,
                    op_ptr,
                    n,
                    stream,
                )
            },
        };
        self.settle(sel.path, bytes, res)
    }

    /// The device's CUDA context (cuda backend; `None` on sim). Allocate buffers for
    /// [`Comm::allreduce`] through it or through [`Comm::stream`].
    pub fn cuda_context(&self) -> Option<&Arc<CudaContext>> {
        match &self.backend {
            Backend::Cuda(b) => Some(b.context()),
            Backend::Sim(_) => None,
        }
    }

    /// The communicator's own stream on its device (cuda backend; `None` on sim).
    pub fn stream(&self) -> Option<&Arc<CudaStream>> {
        match &self.backend {
            Backend::Cuda(b) => Some(b.stream()),
            Backend::Sim(_) => None,
        }
    }

    /// Device memory this communicator allocated on its GPU (signal pad, two parity halves
    /// of the symmetric buffer, push region), in bytes; 0 on the sim backend.
    pub fn device_bytes(&self) -> u64 {
        match &self.backend {
            Backend::Cuda(b) => b.device_bytes(),
            Backend::Sim(_) => 0,
        }
    }

    /// Ranks that share the busiest device of this group (1: a GPU per rank; more:
    /// virtual ranks, see [`CommOptions::allow_shared_device`]).
    pub fn ranks_on_device(&self) -> usize {
        match &self.backend {
            Backend::Cuda(b) => b.ranks_on_device(),
            Backend::Sim(_) => 1,
        }
    }

    /// Reads the device error record after work (e.g. a replayed CUDA graph) completed:
    /// the kernels' typed error (which poisons the communicator), or the poison already
    /// set. `Ok` on the sim backend, whose calls report their errors directly.
    pub fn check(&self) -> Result<()> {
        if let Backend::Cuda(b) = &self.backend {
            if let Some(e) = b.read_error() {
                return Err(self.fail(e));
            }
        }
        self.check_poison()
    }

    /// Whether `path` can take a call of `bytes` bytes of `dtype` on this communicator.
    /// NCCL needs the cuda backend, libnccl, and a GPU per rank.
    pub fn check_path(&self, path: AlgoPath, bytes: u64, dtype: DType) -> Result<()> {
        if path == AlgoPath::Nccl {
            return match &self.backend {
                Backend::Sim(_) => Err(CommError::Unsupported {
                    rank: self.rank,
                    reason: "the nccl path needs the cuda backend".into(),
                }),
                Backend::Cuda(b) => {
                    if let Some(Err(e)) = self.nccl.get() {
                        return Err(e.clone());
                    }
                    if b.ranks_on_device() > 1 {
                        return Err(CommError::Unsupported {
                            rank: self.rank,
                            reason: "NCCL needs a GPU per rank; this group has virtual ranks"
                                .into(),
                        });
                    }
                    crate::nccl::probe()
                        .map(|_| ())
                        .map_err(|reason| CommError::Nccl {
                            rank: self.rank,
                            reason,
                        })
                }
            };
        }
        let _ = dtype;
        self.selector.can_run(path, bytes).map_err(|reason| {
            let cap = self.selector.capacity_of(path);
            if bytes > cap {
                CommError::TooLarge {
                    rank: self.rank,
                    bytes,
                    max: cap,
                }
            } else {
                CommError::Unsupported {
                    rank: self.rank,
                    reason,
                }
            }
        })
    }
    /// The timeout of every wait of this communicator.
    pub fn timeout(&self) -> Duration {
        self.opts.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<TorchrunEnv> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TorchrunEnv::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn torchrun_env() {
        let e = env(&[("RANK", "1"), ("WORLD_SIZE", "4"), ("MASTER_PORT", "29500")]).unwrap();
        assert_eq!((e.rank, e.world, e.local_rank, e.local_world), (1, 4, 1, 4));
        assert_eq!(e.master_addr, "127.0.0.1");
        assert!(env(&[("WORLD_SIZE", "4"), ("MASTER_PORT", "1")]).is_err());
        assert!(env(&[("RANK", "4"), ("WORLD_SIZE", "4"), ("MASTER_PORT", "1")]).is_err());
        assert!(env(&[("RANK", "x"), ("WORLD_SIZE", "4"), ("MASTER_PORT", "1")]).is_err());
        assert!(env(&[("RANK", "0"), ("WORLD_SIZE", "4"), ("MASTER_PORT", "99999")]).is_err());
        assert!(env(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("MASTER_PORT", "1")
        ])
        .is_err());
    }

    fn sim_opts() -> CommOptions {
        CommOptions {
            backend: BackendKind::Sim,
            timeout: Duration::from_secs(5),
            buffer_bytes: Some(1 << 16),
            ..CommOptions::default()
        }
    }

    #[test]
    fn threads_allreduce_sum() {
        let comms = Comm::init_threads(&[0, 1, 2], sim_opts()).unwrap();
        std::thread::scope(|s| {
            for c in &comms {
                s.spawn(move || {
                    let mut v: Vec<f32> = (0..100).map(|i| (i + c.rank()) as f32).collect();
                    c.allreduce_host(&mut v, ReduceOp::Sum)
                        .unwrap()
                        .wait()
                        .unwrap();
                    for (i, x) in v.iter().enumerate() {
                        assert_eq!(*x, (3 * i + 3) as f32);
                    }
                });
            }
        });
        assert_eq!(comms[0].stats().push_one_shot, 1);
    }

    #[test]
    fn duplicate_devices_fail_on_every_rank() {
        let e = Comm::init_threads(&[0, 0], sim_opts()).unwrap_err();
        assert!(e.to_string().contains("same device"), "{e}");
    }
}
