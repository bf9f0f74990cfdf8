//! The `sim` backend: inc-sim's CPU data backend behind the same rendezvous as CUDA.
//!
//! A rank's symmetric buffer is an inc-sim [`Region`]. Its "IPC handle" is a name:
//! `shm:<name>` for a region in POSIX shared memory (`/dev/shm/<name>`, used across
//! processes), or `local:<pid>:<key>` for an in-process region found through a registry
//! (threads of one process, like CUDA peer access). Names carry the job id, the pid, a
//! per-process counter and the rank, so concurrent jobs never collide. The shm file is
//! unlinked once every rank has mapped it, so a crashed job leaves nothing behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use inc_sim::cpu::{CpuConfig, CpuRank, Region, RegionLayout};
use inc_sim::{Algo, DType, ReduceOp, SimError};
use inc_store::Handshake;
use inc_topo::{NvlMesh, TopologyClass};

use super::{Backend, CallState, Identity, Poison};
use crate::error::{CommError, Result};
use crate::options::{AlgoPath, BackendKind, CommOptions, SimTopology};
use crate::select::Capacity;

/// Default bytes of one parity half on the sim backend.
pub const DEFAULT_SIM_BUFFER_BYTES: u64 = 4 << 20;
/// Default blocks (threads per call) on the sim backend.
pub const DEFAULT_SIM_BLOCKS: u32 = 2;

fn registry() -> &'static Mutex<HashMap<String, Weak<Region>>> {
    static REG: OnceLock<Mutex<HashMap<String, Weak<Region>>>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(HashMap::new()))
}

fn next_serial() -> u64 {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(32)
        .collect()
}

/// Maps an inc-sim error to a [`CommError`] of rank `rank`.
pub fn sim_err(rank: usize, e: SimError) -> CommError {
    match e {
        SimError::Protocol(rec) => {
            let peer = rec.peer as usize;
            match rec.code {
                inc_sim::ERR_TIMEOUT => CommError::Timeout {
                    rank,
                    peer: Some(peer),
                    what: format!("in an allreduce ({rec})"),
                    timeout_ms: 0,
                },
                inc_sim::ERR_SEQ_MISMATCH => CommError::SeqMismatch {
                    rank,
                    peer,
                    expected: rec.expected,
                    seen: rec.seen,
                },
                inc_sim::ERR_CALL_MISMATCH => CommError::CallMismatch {
                    rank,
                    peer,
                    reason: format!(
                        "peer {peer} made a different call (size, dtype, op or algorithm) at the same sequence number: {rec}"
                    ),
                },
                _ => CommError::PeerAborted { rank, peer, reason: rec.to_string() },
            }
        }
        SimError::Config(reason) => CommError::InvalidArgument { rank, reason },
        other => CommError::Backend {
            rank,
            reason: other.to_string(),
        },
    }
}

/// One rank of the sim backend.
pub struct SimBackend {
    rank: usize,
    world: usize,
    device: usize,
    layout: RegionLayout,
    cfg: CpuConfig,
    shm: bool,
    job: String,
    own: Option<Arc<Region>>,
    own_handle: Vec<u8>,
    shm_name: Option<String>,
    cpu: Option<CpuRank>,
    timeout_ms: u64,
    topology: Option<SimTopology>,
}

impl std::fmt::Debug for SimBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBackend")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("shm", &self.shm)
            .finish()
    }
}

impl SimBackend {
    /// A rank that will use shared memory when `shm` is true, else in-process regions.
    pub fn new(
        rank: usize,
        world: usize,
        device: usize,
        opts: &CommOptions,
        shm: bool,
    ) -> Result<Self> {
        let half = opts.buffer_bytes.unwrap_or(DEFAULT_SIM_BUFFER_BYTES);
        let half = usize::try_from(half).map_err(|_| {
            CommError::option(
                "INC_BUFFER_BYTES",
                &half.to_string(),
                "too large for this machine",
            )
        })?;
        let blocks = opts.blocks.unwrap_or(DEFAULT_SIM_BLOCKS) as usize;
        if blocks > inc_sim::MAX_BLOCKS {
            return Err(CommError::option(
                "INC_BLOCKS",
                &blocks.to_string(),
                format!(
                    "the sim backend takes at most {} blocks",
                    inc_sim::MAX_BLOCKS
                ),
            ));
        }
        let cfg = CpuConfig {
            blocks,
            timeout: opts.timeout,
            ..CpuConfig::default()
        };
        let job = std::env::var("INC_JOB_ID")
            .map(|j| sanitize(&j))
            .unwrap_or_default();
        Ok(Self {
            rank,
            world,
            device,
            layout: RegionLayout::new(half),
            cfg,
            shm,
            job: if job.is_empty() { "nojob".into() } else { job },
            own: None,
            own_handle: Vec::new(),
            shm_name: None,
            cpu: None,
            timeout_ms: u64::try_from(opts.timeout.as_millis()).unwrap_or(u64::MAX),
            topology: opts.sim_topology,
        })
    }

    /// Creates this rank's region and returns its handle(s).
    fn create_region(&mut self, comm_prefix: &str) -> Result<Vec<Vec<u8>>> {
        let serial = next_serial();
        let pid = std::process::id();
        let tag = sanitize(&comm_prefix.replace('/', "-"));
        let (region, handle) = if self.shm {
            let name = format!("inc-{}-{pid}-{serial}-{tag}-r{}", self.job, self.rank);
            let region =
                Region::create_shm(&name, self.layout).map_err(|e| sim_err(self.rank, e))?;
            self.shm_name = Some(name.clone());
            (Arc::new(region), format!("shm:{name}"))
        } else {
            let key = format!("{pid}:{serial}-{tag}-r{}", self.rank);
            let region = Arc::new(Region::new_local(self.layout));
            if let Ok(mut reg) = registry().lock() {
                reg.retain(|_, w| w.strong_count() > 0);
                reg.insert(key.clone(), Arc::downgrade(&region));
            }
            (region, format!("local:{key}"))
        };
        self.own = Some(region);
        self.own_handle = handle.clone().into_bytes();
        Ok(vec![handle.into_bytes()])
    }

    fn open_one(&self, handle: &[u8]) -> std::result::Result<Arc<Region>, String> {
        let h = std::str::from_utf8(handle).map_err(|_| "handle is not UTF-8".to_string())?;
        if let Some(name) = h.strip_prefix("shm:") {
            Region::open_shm(name, self.layout)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        } else if let Some(key) = h.strip_prefix("local:") {
            let pid = key.split(':').next().unwrap_or("");
            if pid != std::process::id().to_string() {
                return Err(format!(
                    "in-process region {key} belongs to process {pid}; across processes use shared memory (INC_SIM_SHM=1)"
                ));
            }
            registry()
                .lock()
                .map_err(|_| "region registry poisoned".to_string())?
                .get(key)
                .and_then(Weak::upgrade)
                .ok_or_else(|| format!("in-process region {key} is gone"))
        } else {
            Err(format!("unknown sim handle {h:?}"))
        }
    }

    /// Maps every peer's region and builds the CPU rank.
    fn map_peers(&mut self, handles: &[Vec<Vec<u8>>], class: &TopologyClass) -> Result<()> {
        let mut regions = Vec::with_capacity(self.world);
        for (r, hs) in handles.iter().enumerate() {
            if r == self.rank {
                let own = self.own.clone().ok_or_else(|| CommError::Backend {
                    rank: self.rank,
                    reason: "own region missing".into(),
                })?;
                regions.push(own);
                continue;
            }
            let h = hs.first().ok_or_else(|| CommError::Backend {
                rank: self.rank,
                reason: format!("rank {r} published no handle"),
            })?;
            let region = self.open_one(h).map_err(|reason| CommError::Backend {
                rank: self.rank,
                reason: format!("opening rank {r}'s buffer: {reason}"),
            })?;
            regions.push(region);
        }
        // A hybrid cube mesh of 8 or a fully connected group of 8 gets an hcm table.
        let cpu = match crate::topo::hcm_table(class, self.world)? {
            Some(table) => CpuRank::with_hcm_table(self.rank, regions, self.cfg, &table),
            None => CpuRank::new(self.rank, self.world, regions, self.cfg, None),
        }
        .map_err(|e| sim_err(self.rank, e))?;
        self.cpu = Some(cpu);
        Ok(())
    }

    /// Unlinks the shm file once every rank mapped it (the mappings stay valid).
    fn unlink(&mut self) {
        if let Some(name) = self.shm_name.take() {
            let _ = std::fs::remove_file(std::path::Path::new("/dev/shm").join(name));
        }
    }

    fn cpu(&self) -> Result<&CpuRank> {
        self.cpu.as_ref().ok_or_else(|| CommError::Backend {
            rank: self.rank,
            reason: "sim backend used before rendezvous".into(),
        })
    }

    fn fix(&self, e: CommError) -> CommError {
        e.with_timeout_ms(self.timeout_ms)
    }

    /// Out-of-place allreduce of native-endian bytes.
    fn allreduce(
        &self,
        algo: Algo,
        dtype: DType,
        op: ReduceOp,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<()> {
        let cpu = self.cpu()?;
        cpu.allreduce(algo, dtype, op, self.cfg.blocks, input, output)
            .map_err(|e| self.fix(sim_err(self.rank, e)))
    }

    /// In-place allreduce of native-endian bytes.
    fn allreduce_in_place(
        &self,
        algo: Algo,
        dtype: DType,
        op: ReduceOp,
        data: &mut [u8],
    ) -> Result<()> {
        let cpu = self.cpu()?;
        cpu.allreduce_in_place(algo, dtype, op, self.cfg.blocks, data)
            .map_err(|e| self.fix(sim_err(self.rank, e)))
    }
}

impl Backend for SimBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Sim
    }

    fn rank(&self) -> usize {
        self.rank
    }

    fn identity(&self) -> Identity {
        Identity {
            device_id: format!("sim-device-{}", self.device),
            uuid: String::new(),
            buffer_bytes: self.layout.half_bytes as u64,
            signal_bytes: inc_sim::PadLayout::PAD_BYTES as u64,
            blocks: u32::try_from(self.cfg.blocks).unwrap_or(u32::MAX),
            handshake: inc_store::Backend::Sim,
        }
    }

    /// The simulated topology of the options (fully connected by default).
    fn mesh(&self, _peers: &[Handshake]) -> Result<NvlMesh> {
        crate::topo::sim_mesh(self.topology, self.world)
    }

    fn allocate(&mut self, prefix: &str, _ranks_on_device: usize) -> Result<Vec<Vec<u8>>> {
        self.create_region(prefix)
    }

    fn open_peers(&mut self, handles: &[Vec<Vec<u8>>], class: &TopologyClass) -> Result<()> {
        self.map_peers(handles, class)
    }

    fn all_opened(&mut self) {
        self.unlink();
    }

    fn capacity(&self) -> Capacity {
        match &self.cpu {
            Some(c) => Capacity {
                one_shot: c.max_bytes(Algo::OneShot) as u64,
                two_shot: c.max_bytes(Algo::TwoShot) as u64,
                hcm: c.max_bytes(Algo::Hcm) as u64,
                push_one_shot: c.max_bytes(Algo::PushOneShot) as u64,
                lines: c.lines_max_bytes().min(c.max_bytes(Algo::TwoShot) as u64),
            },
            None => Capacity::default(),
        }
    }

    /// Raises the abort word on every rank (peers' pending and later calls fail fast).
    fn abort(&self) {
        if let Some(c) = &self.cpu {
            c.abort();
        }
    }

    /// The CPU data path: the call has finished when it returns (no NCCL: the selector's
    /// NCCL choice never reaches here).
    fn allreduce_host(
        &self,
        _st: &mut CallState,
        _poison: &Poison,
        path: AlgoPath,
        dtype: DType,
        op: ReduceOp,
        src: Option<&[u8]>,
        dst: &mut [u8],
    ) -> Result<()> {
        let Some(algo) = path.algo() else {
            return Err(CommError::Unsupported {
                rank: self.rank,
                reason: "no path".into(),
            });
        };
        match src {
            Some(src) => self.allreduce(algo, dtype, op, src, dst),
            None => self.allreduce_in_place(algo, dtype, op, dst),
        }
    }
}

impl Drop for SimBackend {
    fn drop(&mut self) {
        self.unlink();
        if !self.own_handle.is_empty() && !self.shm {
            if let Ok(mut reg) = registry().lock() {
                let key = String::from_utf8_lossy(&self.own_handle);
                if let Some(k) = key.strip_prefix("local:") {
                    reg.remove(k);
                }
            }
        }
    }
}
