//! `SymmetricMemory`: one device allocation per rank, mapped into every rank (CUDA IPC
//! across processes, plain pointers within one), so that a kernel can read and write every
//! rank's copy at the same offset. Symmetric tensors live here: the zero-copy two-shot
//! (PROTOCOL.md "two-shot, zero-copy") reduces them in place with no copy-in or copy-out.
//!
//! Lifetime rule (as for [`crate::PeerBuffers`]): importers close their mappings
//! ([`SymmetricMemory::close_peers`]) before the owner frees its allocation (drop); the
//! owner of the set (inc-comm's collective shutdown) puts a barrier between the two.

use std::sync::Arc;

use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::CudaContext;

use crate::buffers::IpcHandle;
use crate::error::{drv, CudaError, Result};
use crate::proto::MAX_RANKS;
use crate::sys;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ipc,
    Local,
}

/// One rank's symmetric allocation and its view of every peer's.
pub struct SymmetricMemory {
    ctx: Arc<CudaContext>,
    rank: usize,
    world: usize,
    bytes: u64,
    base: CUdeviceptr,
    peers: [Option<(CUdeviceptr, Kind)>; MAX_RANKS],
    leaked: bool,
}

// SAFETY: `base` and the peer addresses are device addresses owned (or mapped) by this
// value; every use goes through the CUDA driver, which is thread-safe.
unsafe impl Send for SymmetricMemory {}
// SAFETY: see Send; &self methods only read addresses.
unsafe impl Sync for SymmetricMemory {}

impl SymmetricMemory {
    /// Allocate `bytes` (rounded up to a multiple of 16, at least 16) on `ctx`'s device
    /// with `cuMemAlloc` (IPC-exportable, unlike stream-ordered pool memory), zeroed.
    pub fn alloc(ctx: &Arc<CudaContext>, rank: usize, world: usize, bytes: u64) -> Result<Self> {
        if world == 0 || world > MAX_RANKS || rank >= world {
            return Err(CudaError::InvalidArgument(format!(
                "rank {rank} of world {world} (need rank < world <= {MAX_RANKS})"
            )));
        }
        let bytes = bytes.max(1).div_ceil(16).saturating_mul(16);
        let len = usize::try_from(bytes).map_err(|_| {
            CudaError::InvalidArgument(format!("{bytes} bytes do not fit this host's usize"))
        })?;
        ctx.bind_to_thread().map_err(drv("cuCtxSetCurrent"))?;
        // SAFETY: the context is current (bound above).
        let base = unsafe { sys::mem_alloc(len) }.map_err(drv("cuMemAlloc"))?;
        let mut peers = [None; MAX_RANKS];
        if let Some(p) = peers.get_mut(rank) {
            *p = Some((base, Kind::Local));
        }
        let me = SymmetricMemory {
            ctx: ctx.clone(),
            rank,
            world,
            bytes,
            base,
            peers,
            leaked: false,
        };
        // SAFETY: [base, base + len) is our allocation.
        unsafe { sys::memset_d8(base, 0, len) }.map_err(drv("cuMemsetD8"))?;
        ctx.synchronize().map_err(drv("cuCtxSynchronize"))?;
        Ok(me)
    }

    /// Bytes of each rank's allocation (a multiple of 16).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Device address of this rank's allocation.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The context the allocation belongs to.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The IPC handle of this rank's allocation, for the peers of other processes.
    pub fn export_handle(&self) -> Result<IpcHandle> {
        self.ctx.bind_to_thread().map_err(drv("cuCtxSetCurrent"))?;
        // SAFETY: base is our live cuMemAlloc allocation; context current.
        let h = unsafe { sys::ipc_get_mem_handle(self.base) }.map_err(drv("cuIpcGetMemHandle"))?;
        Ok(IpcHandle(h))
    }

    fn check_slot(&self, peer: usize) -> Result<()> {
        if peer >= self.world || peer == self.rank {
            return Err(CudaError::InvalidArgument(format!(
                "peer {peer} invalid for rank {} of {}",
                self.rank, self.world
            )));
        }
        if self.peers.get(peer).copied().flatten().is_some() {
            return Err(CudaError::InvalidArgument(format!(
                "peer {peer} already mapped"
            )));
        }
        Ok(())
    }

    /// Map peer `peer`'s allocation (another process) through its IPC handle.
    pub fn open_ipc(&mut self, peer: usize, handle: &IpcHandle) -> Result<()> {
        self.check_slot(peer)?;
        self.ctx.bind_to_thread().map_err(drv("cuCtxSetCurrent"))?;
        // SAFETY: context current; the driver validates the handle.
        let p =
            unsafe { sys::ipc_open_mem_handle(&handle.0) }.map_err(|e| CudaError::PeerAccess {
                rank: self.rank,
                peer,
                reason: format!("cuIpcOpenMemHandle (symmetric memory): {e}"),
            })?;
        if let Some(slot) = self.peers.get_mut(peer) {
            *slot = Some((p, Kind::Ipc));
        }
        Ok(())
    }

    /// Map a peer's allocation of this process (peer access between the two devices must
    /// already be enabled, as [`crate::PeerBuffers::map_local`] does). The caller keeps
    /// `other` alive as long as this mapping is used.
    pub fn map_local(&mut self, peer: usize, other: &SymmetricMemory) -> Result<()> {
        self.check_slot(peer)?;
        if other.rank != peer || other.world != self.world || other.bytes != self.bytes {
            return Err(CudaError::InvalidArgument(format!(
                "symmetric allocations disagree: rank {}/{peer}, world {}/{}, bytes {}/{}",
                other.rank, other.world, self.world, other.bytes, self.bytes
            )));
        }
        if let Some(slot) = self.peers.get_mut(peer) {
            *slot = Some((other.base, Kind::Local));
        }
        Ok(())
    }

    /// Every rank's allocation address (kernel arguments); an error until all are mapped.
    pub fn peer_bases(&self) -> Result<[u64; MAX_RANKS]> {
        let mut out = [0u64; MAX_RANKS];
        for (q, o) in out.iter_mut().enumerate().take(self.world) {
            let (p, _) =
                self.peers
                    .get(q)
                    .copied()
                    .flatten()
                    .ok_or_else(|| CudaError::PeerAccess {
                        rank: self.rank,
                        peer: q,
                        reason: "symmetric memory of this peer not mapped".into(),
                    })?;
            *o = p;
        }
        Ok(out)
    }

    /// Teardown step 1: wait for this context's work, close every IPC mapping of a peer's
    /// allocation (same-process mappings are forgotten). Idempotent.
    pub fn close_peers(&mut self) -> Result<()> {
        self.ctx.bind_to_thread().map_err(drv("cuCtxSetCurrent"))?;
        self.ctx.synchronize().map_err(drv("cuCtxSynchronize"))?;
        let mut first_err = None;
        for (q, slot) in self.peers.iter_mut().enumerate() {
            if q == self.rank {
                continue;
            }
            if let Some((p, Kind::Ipc)) = slot.take() {
                // SAFETY: opened by open_ipc and closed once (slot emptied); our kernels
                // completed (synchronised above).
                if let Err(e) = unsafe { sys::ipc_close_mem_handle(p) } {
                    first_err.get_or_insert(drv("cuIpcCloseMemHandle")(e));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Never free this allocation (a peer may still map it after a failed teardown).
    pub fn leak(&mut self) {
        self.leaked = true;
    }
}

impl Drop for SymmetricMemory {
    fn drop(&mut self) {
        let _ = self.close_peers();
        if !self.leaked {
            // SAFETY: allocated in alloc(), freed once; our kernels completed (close_peers
            // synchronised the context).
            let _ = unsafe { sys::mem_free(self.base) };
        }
    }
}
