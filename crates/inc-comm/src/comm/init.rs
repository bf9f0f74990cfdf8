//! How a communicator comes to be: torchrun variables, rendezvous through a store, threads.

use super::*;
use crate::backend::ms;
use crate::backend::Setup;

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

pub(super) fn resolve_backend(kind: BackendKind) -> BackendKind {
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
        let t = Instant::now();
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
        let t_store = t.elapsed();
        // Virtual ranks across processes: more local ranks than GPUs share them round-robin.
        // The first device count loads libcuda and runs cuInit.
        let gpus = crate::backend::cuda_device_count();
        info!(
            rank = env.rank,
            world = env.world,
            store_connect_ms = ms(t_store),
            cuda_init_ms = ms(t.elapsed() - t_store),
            gpus,
            "before rendezvous: TCP store connected, CUDA driver loaded and initialised (cuInit, device count)"
        );
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

    pub(super) fn init_inner(
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
        let t_prefix = started.elapsed();
        let kind = resolve_backend(opts.backend);
        info!(
            backend = %kind,
            prefix = %prefix,
            prefix_ms = ms(t_prefix),
            resolve_ms = ms(started.elapsed() - t_prefix),
            "rendezvous starting (times: the store's comm prefix, backend resolution incl. a first cuInit)"
        );

        // Local setup; a failure is reported to the peers in step 1 instead of leaving them
        // waiting.
        let tune = match &opts.tune_file {
            Some(p) => TuneTable::load(p).map(Some),
            None => Ok(None),
        };
        let backend = crate::backend::create(
            kind,
            Setup {
                rank,
                world,
                device,
                opts: &opts,
                multi_process,
                store: &store,
                prefix: &prefix,
            },
        );
        let t_backend = started.elapsed();
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
        let id = backend.identity();
        let hs1 = Handshake {
            rank: u32::try_from(rank).unwrap_or(u32::MAX),
            world: u32::try_from(world).unwrap_or(u32::MAX),
            backend: id.handshake,
            topology_class: 0,
            hostname: rendezvous::hostname(),
            pci_bus_id: id.device_id,
            device_uuid: id.uuid,
            mesh: Vec::new(),
            ipc_handles: Vec::new(),
            buffer_bytes: id.buffer_bytes,
            signal_bytes: id.signal_bytes,
            blocks: id.blocks,
        };
        let all1 = rdv.exchange("hs1", &hs1)?;
        rendezvous::check_devices(rank, &all1, opts.allow_shared_device)?;
        let ranks_on_device = rendezvous::max_ranks_per_device(&all1);

        // Topology and buffers; a failure goes to the peers in step 3.
        let local = backend.mesh(&all1).and_then(|mesh| {
            let class = crate::topo::classify(&mesh);
            let handles = backend.allocate(&prefix, ranks_on_device)?;
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
        let t_alloc = started.elapsed();
        let all2 = rdv.exchange("hs2", &hs2)?;
        if let Err(own) = &local {
            return Err(own.clone());
        }
        let (mesh, class, handles) = rendezvous::check_buffers(rank, &all2)?;

        // Step 4: map the peers' buffers; all ranks must succeed.
        let opened = backend.open_peers(&handles, &class);
        let msg = Opened {
            error: opened.as_ref().err().map(|e| e.to_string()),
        };
        let t_open = started.elapsed();
        let all4 = rdv.gather_json("opened", &msg)?;
        opened?;
        rendezvous::check_opened(rank, &all4)?;
        backend.all_opened();
        let capacity = backend.capacity();
        let selector = Selector::new(world, class, &opts, capacity, tune);
        info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            backend_ms = t_backend.as_millis() as u64,
            allocated_ms = t_alloc.as_millis() as u64,
            opened_ms = t_open.as_millis() as u64,
            "communicator ready (times since init began: backend created, buffers allocated, peers mapped)"
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
            call: Mutex::new(CallState::default()),
            store,
            shut_down: false,
            sym_seq: Default::default(),
        };
        // INC_ALGO=nccl: create the NCCL communicator now (collective). A failure is kept
        // and returned by NCCL calls; the communicator itself is fine.
        if comm.opts.algo == crate::options::AlgoChoice::Force(AlgoPath::Nccl)
            && comm.backend.has_nccl()
        {
            if let Err(e) = comm.backend.start_nccl() {
                warn!(error = %e, "INC_ALGO=nccl but NCCL is unusable");
            }
        }
        Ok(comm)
    }
}
