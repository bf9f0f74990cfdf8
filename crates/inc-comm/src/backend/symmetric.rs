//! Symmetric memory on the cuda backend: every rank allocates its part of a symmetric
//! tensor ([`inc_cuda::SymmetricMemory`]), publishes a handle (`ipc:<hex>` across
//! processes, `local:<pid>:<key>` within one) and maps every peer's part. The memory stays
//! with the backend until the collective teardown (importers close, barrier, owners
//! free), whatever happens to the tensors: a peer's kernel may still read a part whose
//! tensor this rank dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use cudarc::driver::CudaStream;
use inc_cuda::{CallOptions, IpcHandle, SymmetricMemory};
use inc_sim::{DType, ReduceOp};

use super::cuda::{cuda_err, lock, CudaBackend};
use crate::error::{CommError, Result};

/// One rank's part of a symmetric tensor, shared with the tensor and with same-process
/// peers that map it.
pub type SymSlot = Mutex<SymmetricMemory>;

/// Symmetric memory a backend keeps until teardown.
#[derive(Default)]
pub struct SymState {
    own: Mutex<Vec<Arc<SymSlot>>>,
    peers: Mutex<Vec<Arc<SymSlot>>>,
}

fn registry() -> &'static Mutex<HashMap<String, Weak<SymSlot>>> {
    static REG: OnceLock<Mutex<HashMap<String, Weak<SymSlot>>>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(HashMap::new()))
}

pub(crate) fn sym_lock(s: &SymSlot) -> MutexGuard<'_, SymmetricMemory> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SymState {
    /// Teardown step 1: close every IPC mapping of peers' parts, forget same-process ones.
    pub fn close_imports(&self, rank: usize) -> Result<()> {
        guard(&self.peers).clear();
        let mut first = None;
        for s in guard(&self.own).iter() {
            if let Err(e) = sym_lock(s).close_peers() {
                first.get_or_insert(cuda_err(rank, e));
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The teardown barrier failed: never free this rank's parts (a peer may map them).
    pub fn leak_own(&self) {
        for s in guard(&self.own).iter() {
            sym_lock(s).leak();
        }
    }
}

impl CudaBackend {
    /// Allocates this rank's part (`bytes`, rounded up to 16) of symmetric tensor number
    /// `seq` of the communicator `prefix`; returns it and the handle to publish.
    pub(crate) fn alloc_part(
        &self,
        prefix: &str,
        seq: u64,
        bytes: u64,
    ) -> Result<(Arc<SymSlot>, String)> {
        let mem = SymmetricMemory::alloc(self.context(), self.rank(), self.world(), bytes)
            .map_err(|e| cuda_err(self.rank(), e))?;
        self.publish_part(mem, prefix, seq)
    }

    /// Registers `bytes` of the caller's memory at `ptr` as this rank's part of symmetric
    /// tensor number `seq`; returns it and the handle to publish.
    ///
    /// # Safety
    /// As [`SymmetricMemory::register`]: the memory outlives this backend's use of it.
    pub(crate) unsafe fn register_part(
        &self,
        prefix: &str,
        seq: u64,
        ptr: u64,
        bytes: u64,
    ) -> Result<(Arc<SymSlot>, String)> {
        // SAFETY: forwarded.
        let mem = unsafe {
            SymmetricMemory::register(self.context(), self.rank(), self.world(), ptr, bytes)
        }
        .map_err(|e| cuda_err(self.rank(), e))?;
        self.publish_part(mem, prefix, seq)
    }

    /// The handle of a part: `ipc:<hex>:<offset>` across processes, `local:<key>` within one
    /// (found through the registry).
    fn publish_part(
        &self,
        mem: SymmetricMemory,
        prefix: &str,
        seq: u64,
    ) -> Result<(Arc<SymSlot>, String)> {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let rank = self.rank();
        let handle = if self.is_multi_process() {
            format!(
                "ipc:{}:{}",
                mem.export_handle().map_err(|e| cuda_err(rank, e))?.to_hex(),
                mem.offset()
            )
        } else {
            let key = format!(
                "{}:sym{}-{}-{seq}-r{rank}",
                std::process::id(),
                SERIAL.fetch_add(1, Ordering::Relaxed),
                prefix.replace('/', "-"),
            );
            format!("local:{key}")
        };
        let slot = Arc::new(Mutex::new(mem));
        if let Some(key) = handle.strip_prefix("local:") {
            let mut reg = guard(registry());
            reg.retain(|_, w| w.strong_count() > 0);
            reg.insert(key.to_string(), Arc::downgrade(&slot));
        }
        guard(&self.sym.own).push(slot.clone());
        Ok((slot, handle))
    }

    /// Maps every peer's part (`handles[q]` as [`CudaBackend::alloc_part`] returned it on
    /// rank q); same-process parts are kept alive by this backend until teardown.
    pub(crate) fn open_parts(&self, slot: &Arc<SymSlot>, handles: &[String]) -> Result<()> {
        let rank = self.rank();
        for (q, text) in handles.iter().enumerate() {
            if q == rank {
                continue;
            }
            let opened = |reason: String| CommError::Backend {
                rank,
                reason: format!("mapping rank {q}'s symmetric memory: {reason}"),
            };
            if let Some(rest) = text.strip_prefix("ipc:") {
                let (hexs, offset) = rest.split_once(':').unwrap_or((rest, "0"));
                let offset: u64 = offset
                    .parse()
                    .map_err(|_| opened(format!("bad offset {offset:?}")))?;
                let h = IpcHandle::from_hex(hexs).map_err(|e| opened(e.to_string()))?;
                sym_lock(slot)
                    .open_ipc(q, &h, offset)
                    .map_err(|e| opened(e.to_string()))?;
            } else if let Some(key) = text.strip_prefix("local:") {
                let peer = guard(registry())
                    .get(key)
                    .and_then(Weak::upgrade)
                    .ok_or_else(|| opened(format!("in-process part {key} is gone")))?;
                // Lock the pair in rank order: every thread does, so no two deadlock.
                let res = if rank < q {
                    let mut me = sym_lock(slot);
                    let other = sym_lock(&peer);
                    me.map_local(q, &other)
                } else {
                    let other = sym_lock(&peer);
                    let mut me = sym_lock(slot);
                    me.map_local(q, &other)
                };
                res.map_err(|e| opened(e.to_string()))?;
                guard(&self.sym.peers).push(peer);
            } else {
                return Err(opened(format!("unknown handle {text:?}")));
            }
        }
        Ok(())
    }

    /// Every rank mapped symmetric tensor `handle`: drop its registry entry.
    pub(crate) fn part_opened(&self, handle: &str) {
        if let Some(key) = handle.strip_prefix("local:") {
            guard(registry()).remove(key);
        }
    }

    /// Enqueues a zero-copy two-shot on `count` elements at byte `offset` of `slot`.
    ///
    /// # Safety
    /// Every rank makes the same call in the same order; `slot` belongs to this backend
    /// (it keeps the memory until teardown).
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn launch_symmetric(
        &self,
        stream: &CudaStream,
        slot: &SymSlot,
        dtype: DType,
        op: ReduceOp,
        offset: u64,
        count: u64,
    ) -> Result<()> {
        let own = lock(self.own()?);
        let sym = sym_lock(slot);
        let options = CallOptions {
            blocks: self.blocks_option(),
            timeout: self.call_timeout(),
        };
        // SAFETY: forwarded; the memory lives until teardown (SymState).
        let r = unsafe {
            self.kernels()
                .allreduce_symmetric_raw(&own, &sym, stream, dtype, op, offset, count, options)
        };
        self.log_kernel_loads();
        r.map_err(|e| cuda_err(self.rank(), e))
    }
}
