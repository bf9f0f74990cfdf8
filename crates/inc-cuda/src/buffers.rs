//! `PeerBuffers`: one rank's symmetric allocation (signal pad + two parity halves of data)
//! and the mappings of every peer's allocation, through CUDA IPC (one process per GPU) or
//! same-process pointers (multi-thread mode, or virtual ranks sharing one GPU).

use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::{CudaContext, CudaStream};

use crate::error::{drv, CudaError, Result};
pub use crate::ipc::IpcHandle;
use crate::proto::{ErrorRecord, PadLayout, MAX_RANKS};
use crate::sys;
use inc_proto::push::PushLayout;

mod state;

/// Default bytes of one parity half (2 x 10 MiB in all, like the seed's buffer).
pub const DEFAULT_HALF_BYTES: u64 = 10 << 20;

/// Default bytes of one push one-shot (LL) slot: twice the largest push call
/// ([`inc_proto::push::PUSH_CAPACITY_BYTES`], 256 KiB), since every 16-byte line carries 8
/// payload bytes; the push region takes 256 B + 2 x 8 x 512 KiB = 8 MiB per rank.
pub const DEFAULT_PUSH_SLOT_BYTES: u64 = inc_proto::push::DEFAULT_PUSH_SLOT_BYTES as u64;

/// Bytes of the pinned host block: abort word (u32) + padding + error record mirror.
const HOST_BLOCK_BYTES: usize = inc_proto::HOST_BLOCK_BYTES;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MapKind {
    Own,
    Ipc,
    Local,
}

#[derive(Clone, Copy, Debug)]
struct Mapping {
    base: CUdeviceptr,
    kind: MapKind,
}

/// The probe word rank `rank` writes into its own pad at init, so a peer can confirm its
/// mapping (and the agreed world size and buffer size) with a real read.
pub fn probe_word(rank: usize, world: usize, half_bytes: u64, push_slot_bytes: u64) -> u64 {
    let mut b = Vec::with_capacity(32);
    b.extend_from_slice(&(rank as u64).to_le_bytes());
    b.extend_from_slice(&(world as u64).to_le_bytes());
    b.extend_from_slice(&half_bytes.to_le_bytes());
    b.extend_from_slice(&push_slot_bytes.to_le_bytes());
    crate::source::fnv64(&b) | 1
}

/// One rank's symmetric buffer and its view of every peer's.
pub struct PeerBuffers {
    ctx: Arc<CudaContext>,
    rank: usize,
    world: usize,
    half_bytes: u64,
    push_slot_bytes: u64,
    base: CUdeviceptr,
    host_ptr: *mut c_void,
    host_dev: CUdeviceptr,
    peers: [Option<Mapping>; MAX_RANKS],
    ranks_on_device: u32,
    hcm: Option<[u32; 4]>,
    poisoned: Mutex<Option<ErrorRecord>>,
    /// Non-blocking stream that carries the host's abort to the device abort word while
    /// this rank's kernels may be spinning on the compute stream.
    abort_stream: Arc<CudaStream>,
}

// SAFETY: the raw pointers are a device address and a pinned host block owned by this
// value; all access goes through &self/&mut self methods and the CUDA driver, which is
// thread-safe. The host block is only read/written through atomics (`host_word`).
unsafe impl Send for PeerBuffers {}
// SAFETY: see Send; shared methods only read the host block or write its abort word.
unsafe impl Sync for PeerBuffers {}

impl PeerBuffers {
    /// Allocate this rank's pad + `2 * half_bytes` of data + the push one-shot region
    /// ([`DEFAULT_PUSH_SLOT_BYTES`] per slot) on `ctx`'s device, zero it, arm the push
    /// slots with the sentinel and synchronise (so it is ready before any handle is
    /// exported). `half_bytes` is rounded up to a multiple of 16.
    pub fn new(ctx: &Arc<CudaContext>, rank: usize, world: usize, half_bytes: u64) -> Result<Self> {
        Self::with_push(ctx, rank, world, half_bytes, DEFAULT_PUSH_SLOT_BYTES)
    }

    /// [`PeerBuffers::new`] with an explicit push slot size (bytes of one LL slot, twice the
    /// largest push one-shot call, rounded up to 32; 32..=16 MiB; equal on every rank).
    pub fn with_push(
        ctx: &Arc<CudaContext>,
        rank: usize,
        world: usize,
        half_bytes: u64,
        push_slot_bytes: u64,
    ) -> Result<Self> {
        if push_slot_bytes == 0 || push_slot_bytes > 16 << 20 {
            return Err(CudaError::InvalidArgument(format!(
                "push slot of {push_slot_bytes} bytes not in 1..=16 MiB"
            )));
        }
        let push_slot_bytes = PushLayout::round_slot(push_slot_bytes as usize) as u64;
        // the push (LL) region, then the lines region sized from the same slot
        let push_region = PushLayout::region_bytes(push_slot_bytes as usize) as u64
            + inc_proto::lines::LinesLayout::region_bytes(push_slot_bytes as usize) as u64;
        if world == 0 || world > MAX_RANKS {
            return Err(CudaError::InvalidArgument(format!(
                "world size {world} not in 1..={MAX_RANKS}"
            )));
        }
        if rank >= world {
            return Err(CudaError::InvalidArgument(format!(
                "rank {rank} not below world size {world}"
            )));
        }
        if half_bytes == 0 {
            return Err(CudaError::InvalidArgument("buffer half of 0 bytes".into()));
        }
        let half_bytes = half_bytes.div_ceil(16) * 16;
        let total = half_bytes
            .checked_mul(2)
            .and_then(|d| d.checked_add(PadLayout::PAD_BYTES as u64))
            .and_then(|d| d.checked_add(push_region))
            .and_then(|t| usize::try_from(t).ok())
            .ok_or_else(|| {
                CudaError::InvalidArgument(format!("buffer half of {half_bytes} bytes too large"))
            })?;
        ctx.bind_to_thread().map_err(drv("cuCtxSetCurrent"))?;
        // SAFETY: the context is current (bound above).
        let base = unsafe { sys::mem_alloc(total) }.map_err(drv("cuMemAlloc"))?;
        // SAFETY: the context is current.
        let host = unsafe { sys::host_alloc_mapped(HOST_BLOCK_BYTES) };
        let (host_ptr, host_dev) = match host {
            Ok(h) => h,
            Err(e) => {
                // SAFETY: base was just allocated and is unused.
                let _ = unsafe { sys::mem_free(base) };
                return Err(drv("cuMemHostAlloc")(e));
            }
        };
        let abort_stream = match ctx.new_stream() {
            Ok(s) => s,
            Err(e) => {
                // SAFETY: base and host were just allocated and are unused.
                let _ = unsafe { sys::mem_free(base) };
                // SAFETY: as above.
                let _ = unsafe { sys::host_free(host_ptr) };
                return Err(drv("cuStreamCreate")(e));
            }
        };
        let mut peers = [None; MAX_RANKS];
        if let Some(slot) = peers.get_mut(rank) {
            *slot = Some(Mapping {
                base,
                kind: MapKind::Own,
            });
        }
        let me = PeerBuffers {
            ctx: ctx.clone(),
            rank,
            world,
            half_bytes,
            push_slot_bytes,
            base,
            host_ptr,
            host_dev,
            peers,
            ranks_on_device: 1,
            hcm: None,
            poisoned: Mutex::new(None),
            abort_stream,
        };
        // Zero the whole allocation (LL lines start with tag 0, which no call uses), write
        // our probe word, and wait for both.
        // SAFETY: [base, base+total) is our allocation.
        unsafe { sys::memset_d8(base, 0, total) }.map_err(drv("cuMemsetD8"))?;
        let probe = probe_word(rank, world, half_bytes, push_slot_bytes).to_le_bytes();
        // SAFETY: the probe slot lies inside the pad of our allocation.
        unsafe { sys::copy_htod(me.probe_addr(base, rank), &probe) }
            .map_err(drv("cuMemcpyHtoD"))?;
        ctx.synchronize().map_err(drv("cuCtxSynchronize"))?;
        Ok(me)
    }

    fn probe_addr(&self, pad: CUdeviceptr, writer: usize) -> CUdeviceptr {
        pad + crate::proto::PAD_PROBE as u64 + 8 * writer as u64
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }
    /// World size.
    pub fn world(&self) -> usize {
        self.world
    }
    /// Bytes of one parity half.
    pub fn half_bytes(&self) -> u64 {
        self.half_bytes
    }
    /// The context the buffer lives in.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }
    /// Device address of this rank's signal pad.
    pub fn pad_ptr(&self) -> u64 {
        self.base
    }
    /// Device address of this rank's data area (2 parity halves; zero-copy inputs live here).
    pub fn data_ptr(&self) -> u64 {
        self.base + PadLayout::PAD_BYTES as u64
    }
    /// Bytes of one push one-shot slot (the largest push call).
    pub fn push_slot_bytes(&self) -> u64 {
        self.push_slot_bytes
    }
    /// Device address of this rank's push one-shot region (after the data halves).
    pub fn push_ptr(&self) -> u64 {
        self.data_ptr() + 2 * self.half_bytes
    }
    /// Ranks whose kernels share this device (co-residency budget); 1 unless set.
    pub fn ranks_on_device(&self) -> u32 {
        self.ranks_on_device
    }
    /// Declare how many ranks run kernels on this same device at once (virtual ranks).
    pub fn set_ranks_on_device(&mut self, n: u32) -> Result<()> {
        if n == 0 || n as usize > self.world {
            return Err(CudaError::InvalidArgument(format!(
                "ranks on device {n} not in 1..={}",
                self.world
            )));
        }
        self.ranks_on_device = n;
        Ok(())
    }

    /// Set this rank's hybrid-cube-mesh row `[n0, n1, n2, relay]` (from inc-topo's
    /// solver). Checked: world 8, distinct ranks other than me, relay not in my quad.
    pub fn set_hcm(&mut self, row: [u32; 4]) -> Result<()> {
        if self.world != 8 {
            return Err(CudaError::InvalidArgument(format!(
                "hcm needs world 8, have {}",
                self.world
            )));
        }
        let me = self.rank as u32;
        for (i, &x) in row.iter().enumerate() {
            if x >= 8 || x == me || row.iter().take(i).any(|&y| y == x) {
                return Err(CudaError::InvalidArgument(format!(
                    "bad hcm row {row:?} for rank {me}"
                )));
            }
        }
        self.hcm = Some(row);
        Ok(())
    }

    /// The hcm row, if set.
    pub fn hcm(&self) -> Option<[u32; 4]> {
        self.hcm
    }

    /// Export this allocation's CUDA IPC handle (the buffer is already zeroed).
    pub fn export_handle(&self) -> Result<IpcHandle> {
        self.ctx.bind_to_thread().map_err(drv("cuCtxSetCurrent"))?;
        // SAFETY: base is the base of our live cuMemAlloc allocation; context current.
        let h = unsafe { sys::ipc_get_mem_handle(self.base) }.map_err(drv("cuIpcGetMemHandle"))?;
        Ok(IpcHandle(h))
    }

    fn check_peer_slot(&self, peer: usize) -> Result<()> {
        let mapped = self.peers.get(peer).copied().flatten().is_some();
        crate::ipc::check_peer(self.rank, self.world, peer, mapped)
    }

    /// Map peer `peer`'s allocation from another process through its IPC handle.
    pub fn open_ipc(&mut self, peer: usize, handle: &IpcHandle) -> Result<()> {
        self.check_peer_slot(peer)?;
        let p = crate::ipc::open(&self.ctx, self.rank, peer, handle, "")?;
        if let Some(slot) = self.peers.get_mut(peer) {
            *slot = Some(Mapping {
                base: p,
                kind: MapKind::Ipc,
            });
        }
        Ok(())
    }

    /// Map a peer that lives in this process (multi-thread mode or virtual ranks). On another
    /// device, peer access is checked (cuDeviceCanAccessPeer) and enabled.
    pub fn map_local(&mut self, peer: usize, other: &PeerBuffers) -> Result<()> {
        self.check_peer_slot(peer)?;
        if other.rank != peer
            || other.world != self.world
            || other.half_bytes != self.half_bytes
            || other.push_slot_bytes != self.push_slot_bytes
        {
            return Err(CudaError::InvalidArgument(format!(
                "peer buffers disagree: rank {}/{} world {}/{} half {}/{} push slot {}/{}",
                other.rank,
                peer,
                other.world,
                self.world,
                other.half_bytes,
                self.half_bytes,
                other.push_slot_bytes,
                self.push_slot_bytes
            )));
        }
        if other.ctx.cu_device() != self.ctx.cu_device() {
            // SAFETY: both device handles come from cudarc contexts.
            let ok = unsafe { sys::can_access_peer(self.ctx.cu_device(), other.ctx.cu_device()) }
                .map_err(drv("cuDeviceCanAccessPeer"))?;
            if !ok {
                return Err(CudaError::PeerAccess {
                    rank: self.rank,
                    peer,
                    reason: "cuDeviceCanAccessPeer says no (no NVLink/P2P path)".into(),
                });
            }
            self.ctx.bind_to_thread().map_err(drv("cuCtxSetCurrent"))?;
            // SAFETY: our context is current; the peer's context is alive (other borrowed).
            unsafe { sys::enable_peer_access(other.ctx.cu_ctx()) }
                .map_err(drv("cuCtxEnablePeerAccess"))?;
        }
        if let Some(slot) = self.peers.get_mut(peer) {
            *slot = Some(Mapping {
                base: other.base,
                kind: MapKind::Local,
            });
        }
        Ok(())
    }

    /// True when every peer is mapped.
    pub fn is_connected(&self) -> bool {
        self.peers.iter().take(self.world).all(Option::is_some)
    }

    /// Confirm every mapping with a real transfer: read the probe word each peer wrote at
    /// init (checks rank, world and buffer size agree), then write ours into the peer's pad
    /// and read it back. Drivers can claim peer access that does not work; this catches it.
    pub fn verify_peers(&self) -> Result<()> {
        self.ctx.bind_to_thread().map_err(drv("cuCtxSetCurrent"))?;
        for q in 0..self.world {
            if q == self.rank {
                continue;
            }
            let m = self.peer_mapping(q)?;
            let expect = probe_word(q, self.world, self.half_bytes, self.push_slot_bytes);
            let mut got = [0u8; 8];
            // SAFETY: the peer mapping covers its whole pad; context current.
            unsafe { sys::copy_dtoh(&mut got, self.probe_addr(m.base, q)) }.map_err(|e| {
                CudaError::PeerAccess {
                    rank: self.rank,
                    peer: q,
                    reason: format!("read through the mapping failed: {e}"),
                }
            })?;
            if u64::from_le_bytes(got) != expect {
                return Err(CudaError::PeerAccess {
                    rank: self.rank,
                    peer: q,
                    reason: format!(
                        "probe word {:#018x} != expected {expect:#018x} (mapping broken, or world size / buffer size differ between ranks)",
                        u64::from_le_bytes(got)
                    ),
                });
            }
            let mine = probe_word(self.rank, self.world, self.half_bytes, self.push_slot_bytes)
                .to_le_bytes();
            let slot = self.probe_addr(m.base, self.rank);
            // SAFETY: slot lies in the peer's pad (probe slot reserved for writer = me).
            unsafe { sys::copy_htod(slot, &mine) }.map_err(drv("cuMemcpyHtoD(peer)"))?;
            let mut back = [0u8; 8];
            // SAFETY: as above.
            unsafe { sys::copy_dtoh(&mut back, slot) }.map_err(drv("cuMemcpyDtoH(peer)"))?;
            if back != mine {
                return Err(CudaError::PeerAccess {
                    rank: self.rank,
                    peer: q,
                    reason: "write through the mapping did not read back".into(),
                });
            }
        }
        Ok(())
    }

    fn peer_mapping(&self, q: usize) -> Result<Mapping> {
        self.peers
            .get(q)
            .copied()
            .flatten()
            .ok_or_else(|| CudaError::PeerAccess {
                rank: self.rank,
                peer: q,
                reason: "peer not mapped yet".into(),
            })
    }

    /// Pads and data areas of every rank, for the kernel arguments.
    pub(crate) fn addresses(&self) -> Result<([u64; MAX_RANKS], [u64; MAX_RANKS])> {
        let mut pads = [0u64; MAX_RANKS];
        let mut data = [0u64; MAX_RANKS];
        for q in 0..self.world {
            let m = self.peer_mapping(q)?;
            if let (Some(p), Some(d)) = (pads.get_mut(q), data.get_mut(q)) {
                *p = m.base;
                *d = m.base + PadLayout::PAD_BYTES as u64;
            }
        }
        Ok((pads, data))
    }

    /// Device address of the mapped host block (abort word + error mirror).
    pub(crate) fn host_block(&self) -> u64 {
        self.host_dev
    }

    /// The `i`-th 32-bit word of the pinned host block (0: abort word, 2..: the error
    /// mirror, `INC_HOST_ERROR` = byte 8 in kernels/proto.cuh), as an atomic shared with
    /// the GPU and the other threads of this process.
    fn host_word(&self, i: usize) -> &AtomicU32 {
        const WORDS: usize = HOST_BLOCK_BYTES / 4;
        let i = i.min(WORDS - 1);
        // SAFETY: host_ptr is our live pinned block of HOST_BLOCK_BYTES bytes (page
        // aligned), so word i < WORDS is in bounds and 4-byte aligned; it lives as long as
        // &self; every host access to it goes through atomics.
        unsafe { AtomicU32::from_ptr(self.host_ptr.cast::<u32>().add(i)) }
    }

    /// The error mirror of the host block as a kernel last wrote it, if its code is set. A
    /// kernel writes the fields, fences (system scope), then the code: the code is read
    /// first with acquire, then the fields.
    fn mirror(&self) -> Option<ErrorRecord> {
        const BASE: usize = inc_proto::HOST_ERROR / 4; // INC_HOST_ERROR
        let code = self.host_word(BASE).load(Ordering::Acquire);
        if code == 0 {
            return None;
        }
        let mut raw = [0u8; crate::proto::ERROR_RECORD_BYTES];
        for (i, c) in raw.chunks_exact_mut(4).enumerate() {
            c.copy_from_slice(
                &self
                    .host_word(BASE + i)
                    .load(Ordering::Acquire)
                    .to_le_bytes(),
            );
        }
        let mut rec = crate::proto::error_record_from_le_bytes(&raw);
        rec.code = code;
        Some(rec)
    }

    /// Whether a kernel has recorded an error in the host mirror (one atomic load; no
    /// device access, no lock): cheap enough for the entry of every call. The mirror is never cleared, so this stays true once set.
    pub fn error_recorded(&self) -> bool {
        self.host_word(2).load(Ordering::Acquire) != 0
    }

    /// Ask every running and future kernel of these buffers to stop: writes the device
    /// abort word through a memset on a side stream (kernels read it every few hundred
    /// spins and in their prologue) and the mapped host word (read by a kernel only after
    /// it has waited 100 us, in case the memset cannot run). Kernels record PEER_ABORT,
    /// raise the abort word of every peer, and exit. The buffers are poisoned afterwards.
    pub fn abort(&self) {
        let w =
            0x8000_0000u32 | ((self.rank as u32 & 0x7f_ffff) << 8) | crate::proto::ERR_PEER_ABORT;
        // Release: a kernel (or thread) that sees the word also sees what this thread
        // wrote before raising it.
        self.host_word(0).store(w, Ordering::Release);
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: the abort word lies in our pad, allocated until drop (which first
            // synchronises the context, so this memset completes before the free).
            let _ = unsafe {
                sys::memset_d32_async(
                    self.base + PadLayout::ABORT as u64,
                    w,
                    1,
                    self.abort_stream.cu_stream(),
                )
            };
        }
    }

    /// The first error a kernel recorded for this rank, if any. Call after the stream has
    /// completed (e.g. after `stream.synchronize()`); once an error is seen the buffers are
    /// poisoned and every later allreduce fails fast.
    pub fn read_error(&self) -> Option<ErrorRecord> {
        let mut guard = self.poisoned.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = *guard {
            return Some(r);
        }
        let rec = self.mirror()?;
        *guard = Some(rec);
        Some(rec)
    }

    /// `Err(Kernel(record))` if a kernel recorded an error (see [`PeerBuffers::read_error`]).
    pub fn check(&self) -> Result<()> {
        match self.read_error() {
            Some(r) => Err(CudaError::Kernel(r)),
            None => Ok(()),
        }
    }

    /// The recorded error that poisons these buffers, if any (no device access).
    pub fn poisoned(&self) -> Option<ErrorRecord> {
        *self.poisoned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// First step of a collective teardown: waits for this context's work, then closes
    /// every peer mapping (`cuIpcCloseMemHandle` for peers of other processes; same-process
    /// mappings are just forgotten). Our own allocation stays until drop. The owner of a
    /// set of buffers frees them (drops) only after every importer has closed its mapping
    /// (a barrier between the two, as `inc_comm::Comm::shutdown` does): CUDA leaves
    /// freeing memory that another process still maps undefined. Idempotent.
    pub fn close_peers(&mut self) -> Result<()> {
        self.ctx.bind_to_thread().map_err(drv("cuCtxSetCurrent"))?;
        self.ctx.synchronize().map_err(drv("cuCtxSynchronize"))?;
        let mut first_err = None;
        for (q, slot) in self.peers.iter_mut().enumerate() {
            if q == self.rank {
                continue;
            }
            if let Some(m) = slot.take() {
                if m.kind == MapKind::Ipc {
                    // SAFETY: opened by open_ipc, closed once (the slot is emptied); our
                    // kernels have completed (synchronised above).
                    if let Err(e) = unsafe { sys::ipc_close_mem_handle(m.base) } {
                        first_err.get_or_insert(drv("cuIpcCloseMemHandle")(e));
                    }
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for PeerBuffers {
    fn drop(&mut self) {
        // Order: wait for our kernels, unmap peers (IPC), then free our memory and host block.
        let _ = self.ctx.bind_to_thread();
        let _ = self.ctx.synchronize();
        for m in self.peers.iter().flatten() {
            if m.kind == MapKind::Ipc {
                // SAFETY: opened by open_ipc, closed once here; our kernels have completed.
                let _ = unsafe { sys::ipc_close_mem_handle(m.base) };
            }
        }
        // SAFETY: allocated in new(), freed once; our kernels have completed. Peers that
        // still map it keep the memory alive until they close their handle (IPC) or must
        // be dropped first (same-process), which the owner of the set of buffers ensures.
        let _ = unsafe { sys::mem_free(self.base) };
        // SAFETY: allocated in new(), freed once.
        let _ = unsafe { sys::host_free(self.host_ptr) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_words_differ_by_rank_world_and_size() {
        let a = probe_word(1, 8, 10 << 20, 1 << 18);
        assert_ne!(a, probe_word(2, 8, 10 << 20, 1 << 18));
        assert_ne!(a, probe_word(1, 4, 10 << 20, 1 << 18));
        assert_ne!(a, probe_word(1, 8, 20 << 20, 1 << 18));
        assert_ne!(a, probe_word(1, 8, 10 << 20, 1 << 16));
        assert_ne!(a, 0);
    }
}
