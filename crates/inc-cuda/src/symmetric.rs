//! `SymmetricMemory`: one device allocation per rank, mapped into every rank (CUDA IPC
//! across processes, plain pointers within one), so that a kernel can read and write every
//! rank's copy at the same offset. Symmetric tensors live here: the zero-copy two-shot
//! (PROTOCOL.md "two-shot, zero-copy") reduces them in place with no copy-in or copy-out.
//!
//! Two origins: [`SymmetricMemory::alloc`] (inc allocates and frees the memory) and
//! [`SymmetricMemory::register`] (the caller's own `cuMemAlloc` memory, e.g. a PyTorch
//! tensor: exported as the IPC handle of its allocation plus the offset, as vLLM registers
//! its graph buffers; never freed by inc).
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

/// A peer's mapping: the address the kernels use, and what to close.
#[derive(Clone, Copy, Debug)]
struct PeerMap {
    addr: CUdeviceptr,
    /// What `cuIpcOpenMemHandle` returned (IPC), to close.
    opened: CUdeviceptr,
    kind: Kind,
}

/// One rank's symmetric allocation and its view of every peer's.
pub struct SymmetricMemory {
    ctx: Arc<CudaContext>,
    rank: usize,
    world: usize,
    bytes: u64,
    base: CUdeviceptr,
    /// Registered memory: the containing allocation's base (exported) and our offset in it.
    alloc_base: CUdeviceptr,
    /// inc allocated `base` and frees it on drop (false for registered memory).
    owned: bool,
    peers: [Option<PeerMap>; MAX_RANKS],
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
        let me = SymmetricMemory {
            ctx: ctx.clone(),
            rank,
            world,
            bytes,
            base,
            alloc_base: base,
            owned: true,
            peers: own_slot(rank, base),
            leaked: false,
        };
        // SAFETY: [base, base + len) is our allocation.
        unsafe { sys::memset_d8(base, 0, len) }.map_err(drv("cuMemsetD8"))?;
        ctx.synchronize().map_err(drv("cuCtxSynchronize"))?;
        Ok(me)
    }

    /// Register `bytes` of the caller's device memory at `ptr` (16-byte aligned, inside one
    /// `cuMemAlloc` allocation of `ctx`'s device; for other processes it is exported as its
    /// allocation's IPC handle plus the offset). inc never frees it.
    ///
    /// # Safety
    /// `[ptr, ptr + bytes)` stays allocated and is not freed until this value (and every
    /// peer's mapping of it) is gone: in inc-comm, until the communicator's shutdown.
    pub unsafe fn register(
        ctx: &Arc<CudaContext>,
        rank: usize,
        world: usize,
        ptr: u64,
        bytes: u64,
    ) -> Result<Self> {
        if world == 0 || world > MAX_RANKS || rank >= world {
            return Err(CudaError::InvalidArgument(format!(
                "rank {rank} of world {world} (need rank < world <= {MAX_RANKS})"
            )));
        }
        if ptr == 0 || ptr % 16 != 0 || bytes == 0 {
            return Err(CudaError::InvalidArgument(format!(
                "registered memory must be a non-empty, 16-byte aligned device range (got {ptr:#x}, {bytes} bytes)"
            )));
        }
        ctx.bind_to_thread().map_err(drv("cuCtxSetCurrent"))?;
        // SAFETY: the context is current; the driver validates ptr.
        let (alloc_base, alloc_size) = unsafe { sys::mem_address_range(ptr) }.map_err(|e| {
            CudaError::InvalidArgument(format!(
                "{ptr:#x} is not device memory of this context (cuMemGetAddressRange: {e})"
            ))
        })?;
        let end = ptr.checked_add(bytes.div_ceil(16) * 16);
        if end.is_none_or(|e| e > alloc_base + alloc_size as u64) {
            return Err(CudaError::InvalidArgument(format!(
                "{bytes} bytes at {ptr:#x} (rounded up to 16) do not fit in its allocation ({alloc_size} bytes at {alloc_base:#x})"
            )));
        }
        Ok(SymmetricMemory {
            ctx: ctx.clone(),
            rank,
            world,
            bytes: bytes.div_ceil(16) * 16,
            base: ptr,
            alloc_base,
            owned: false,
            peers: own_slot(rank, ptr),
            leaked: false,
        })
    }

    /// Byte offset of this rank's memory in its allocation (0 for [`SymmetricMemory::alloc`];
    /// peers add it to the address they map).
    pub fn offset(&self) -> u64 {
        self.base - self.alloc_base
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

    /// The IPC handle of this rank's allocation, for the peers of other processes (they
    /// add [`SymmetricMemory::offset`]).
    pub fn export_handle(&self) -> Result<IpcHandle> {
        self.ctx.bind_to_thread().map_err(drv("cuCtxSetCurrent"))?;
        // SAFETY: alloc_base is the base of a live allocation (ours, or the registered
        // caller's); context current.
        let h = unsafe { sys::ipc_get_mem_handle(self.alloc_base) }.map_err(|e| {
            CudaError::InvalidArgument(format!(
                "this memory cannot be shared with other processes (cuIpcGetMemHandle: {e}); \
                 memory from a stream-ordered pool (cuMemAllocAsync, cudarc's default on recent \
                 GPUs) has no IPC handle: use Comm::alloc_symmetric or memory from cuMemAlloc"
            ))
        })?;
        Ok(IpcHandle(h))
    }

    fn check_slot(&self, peer: usize) -> Result<()> {
        let mapped = self.peers.get(peer).copied().flatten().is_some();
        crate::ipc::check_peer(self.rank, self.world, peer, mapped)
    }

    /// Map peer `peer`'s allocation (another process) through its IPC handle; the peer's
    /// memory starts `offset` bytes into it.
    pub fn open_ipc(&mut self, peer: usize, handle: &IpcHandle, offset: u64) -> Result<()> {
        self.check_slot(peer)?;
        let p = crate::ipc::open(&self.ctx, self.rank, peer, handle, " (symmetric memory)")?;
        if let Some(slot) = self.peers.get_mut(peer) {
            *slot = Some(PeerMap {
                addr: p + offset,
                opened: p,
                kind: Kind::Ipc,
            });
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
            *slot = Some(PeerMap {
                addr: other.base,
                opened: other.base,
                kind: Kind::Local,
            });
        }
        Ok(())
    }

    /// Every rank's allocation address (kernel arguments); an error until all are mapped.
    pub fn peer_bases(&self) -> Result<[u64; MAX_RANKS]> {
        let mut out = [0u64; MAX_RANKS];
        for (q, o) in out.iter_mut().enumerate().take(self.world) {
            let m = self
                .peers
                .get(q)
                .copied()
                .flatten()
                .ok_or_else(|| CudaError::PeerAccess {
                    rank: self.rank,
                    peer: q,
                    reason: "symmetric memory of this peer not mapped".into(),
                })?;
            *o = m.addr;
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
            let Some(m) = slot.take() else { continue };
            if m.kind == Kind::Ipc {
                // SAFETY: opened by open_ipc and closed once (slot emptied); our kernels
                // completed (synchronised above).
                if let Err(e) = unsafe { sys::ipc_close_mem_handle(m.opened) } {
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

fn own_slot(rank: usize, base: CUdeviceptr) -> [Option<PeerMap>; MAX_RANKS] {
    let mut peers = [None; MAX_RANKS];
    if let Some(p) = peers.get_mut(rank) {
        *p = Some(PeerMap {
            addr: base,
            opened: base,
            kind: Kind::Local,
        });
    }
    peers
}

impl Drop for SymmetricMemory {
    fn drop(&mut self) {
        let _ = self.close_peers();
        if self.owned && !self.leaked {
            // SAFETY: allocated in alloc(), freed once; our kernels completed (close_peers
            // synchronised the context).
            let _ = unsafe { sys::mem_free(self.base) };
        }
    }
}
