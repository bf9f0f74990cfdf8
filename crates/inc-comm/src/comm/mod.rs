//! [`Comm`]: one rank of an intra-node allreduce communicator.
//!
//! Split by concern: `init` (torchrun environment, rendezvous, the three ways in), `host`
//! (calls on host slices), `device` (calls on device buffers), `symmetric` (symmetric
//! tensors); this module holds the communicator, its health (poison, abort, shutdown, the
//! per-call checks) and selection. What differs between the sim and cuda backends is
//! behind [`Backend`](crate::backend::Backend): nothing here asks which one it holds.

mod device;
mod host;
mod init;
mod symmetric;

pub use init::TorchrunEnv;
pub use symmetric::SymmetricTensor;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use inc_store::{Handshake, MemStore, Store, TcpStore};
use inc_topo::{NvlMesh, TopologyClass};
use tracing::{debug, info, info_span, warn};

use cudarc::driver::{CudaContext, CudaStream, DevicePtr, DevicePtrMut};

use crate::backend::{Backend, CallState, DeviceCall};
use crate::counters::{CommStats, Counters};
use crate::element::Element;
use crate::error::{CommError, Result};
use crate::options::{AlgoPath, BackendKind, CommOptions};
use crate::rendezvous::{self, Meta, Opened, Rdv, FAILED_CLASS};
use crate::select::{bytes_of, Fallback, Selection, Selector, TuneTable};
use crate::work::Work;
use crate::{DType, ReduceOp};

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
    backend: Box<dyn Backend>,
    counters: Counters,
    poison: Arc<OnceLock<CommError>>,
    /// Serialises calls of one communicator (they must be ordered anyway), with the state
    /// they share.
    call: Mutex<CallState>,
    store: Arc<dyn Store>,
    /// The collective teardown ran (by [`Comm::shutdown`] or drop).
    shut_down: bool,
    /// Symmetric tensors allocated so far (names their rendezvous steps).
    sym_seq: std::sync::atomic::AtomicU64,
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
        if self.backend.exports_ipc() {
            if let Err(e) = self.teardown() {
                warn!(rank = self.rank, error = %e, "teardown at drop");
            }
        }
    }
}

impl Comm {
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

    /// The path a call of `bytes` bytes of `dtype` would take, and why it would fall back
    /// (a copy-in call; a zero-copy call on a symmetric tensor takes the two-shot where this
    /// says one-shot above 5 MiB at world 2).
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
        let closed = self.backend.close_imports();
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
        if met.is_err() && self.backend.exports_ipc() {
            warn!(rank, "shutdown barrier failed: leaking this rank's buffer");
            self.backend.leak_own();
        }
        met?;
        closed
    }

    /// Raises the abort flag on every rank: this and every peer's pending and later calls
    /// fail fast (use when this rank gives up, e.g. on its own error).
    pub fn abort(&self, reason: &str) {
        warn!(rank = self.rank, reason, "aborting communicator");
        self.backend.abort();
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
        match self.backend.pending_error() {
            Some(e) => Err(self.fail(e)),
            None => Ok(()),
        }
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
    fn choose(&self, bytes: u64, dtype: DType, zero_copy: bool) -> Result<Selection> {
        let sel = if zero_copy {
            self.selector.select_zero_copy(bytes, dtype)
        } else {
            self.selector.select(bytes, dtype)
        };
        debug!(bytes, dtype = dtype.name(), path = %sel.path, "algorithm");
        if sel.path == AlgoPath::Nccl && !self.backend.has_nccl() {
            return Err(match &sel.fallback {
                Some(Fallback::TooLarge { max, .. }) => CommError::TooLarge {
                    rank: self.rank,
                    bytes,
                    max: *max,
                },
                Some(f) => CommError::Unsupported {
                    rank: self.rank,
                    reason: format!(
                        "{f}; the {} backend has no NCCL fallback",
                        self.backend.kind().name()
                    ),
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

    /// The selection of a call: the selector's (for a zero-copy call on a symmetric tensor
    /// when `zero_copy`), or `path` after checking it can run.
    fn selection(
        &self,
        path: Option<AlgoPath>,
        bytes: u64,
        dtype: DType,
        zero_copy: bool,
    ) -> Result<Selection> {
        match path {
            None => self
                .choose(bytes, dtype, zero_copy)
                .map_err(|e| self.fail(e)),
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
    /// Reads the device error record after work (e.g. a replayed CUDA graph) completed:
    /// the kernels' typed error (which poisons the communicator), or the poison already
    /// set. `Ok` on the sim backend, whose calls report their errors directly.
    pub fn check(&self) -> Result<()> {
        if let Some(e) = self.backend.read_error() {
            return Err(self.fail(e));
        }
        self.check_poison()
    }

    /// Whether `path` can take a call of `bytes` bytes of `dtype` on this communicator.
    /// NCCL needs the cuda backend, libnccl, and a GPU per rank.
    pub fn check_path(&self, path: AlgoPath, bytes: u64, dtype: DType) -> Result<()> {
        if path == AlgoPath::Nccl {
            return self.backend.check_nccl();
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

    /// The capabilities only the cuda backend has answer on sim through the trait's
    /// defaults, with the messages the sim backend has always given.
    #[test]
    fn cuda_only_capabilities_on_sim() {
        let comms = Comm::init_threads(&[0], sim_opts()).unwrap();
        let c = &comms[0];
        assert_eq!(c.backend(), BackendKind::Sim);
        assert!(c.stream().is_none() && c.cuda_context().is_none());
        assert_eq!((c.device_bytes(), c.ranks_on_device()), (0, 1));
        assert!(c.check().is_ok());
        let reason = |e: CommError| match e {
            CommError::Unsupported { rank: 0, reason } => reason,
            other => panic!("{other}"),
        };
        let e = c.check_path(AlgoPath::Nccl, 16, DType::F32).unwrap_err();
        assert_eq!(reason(e), "the nccl path needs the cuda backend");
        let e = c.alloc_symmetric::<f32>(4).unwrap_err();
        assert_eq!(
            reason(e),
            "device buffers need the cuda backend (use allreduce_host on sim)"
        );
        let forced = CommOptions {
            algo: crate::options::AlgoChoice::Force(AlgoPath::Nccl),
            ..sim_opts()
        };
        let comms = Comm::init_threads(&[0], forced).unwrap();
        let e = comms[0]
            .allreduce_host(&mut [1.0f32; 4], ReduceOp::Sum)
            .unwrap_err();
        assert_eq!(reason(e), "INC_ALGO=nccl needs the cuda backend");
    }

    #[test]
    fn duplicate_devices_fail_on_every_rank() {
        let e = Comm::init_threads(&[0, 0], sim_opts()).unwrap_err();
        assert!(e.to_string().contains("same device"), "{e}");
    }
}
