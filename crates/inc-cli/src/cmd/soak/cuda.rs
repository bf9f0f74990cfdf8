//! The soak on GPUs, with no allocation or upload per call.
//!
//! At start: this rank's input pattern per dtype is uploaded once; two output arenas
//! (pipeline slots) are allocated on the device and two pinned host buffers beside them.
//! Per batch: the used part of the arena is poisoned (0xff, NaN in every dtype) on the
//! call stream, the calls are enqueued (eager) or captured and launched as one CUDA graph,
//! each call reading its input straight from the pattern (out of place) or from a copy of
//! it in its output region (in place, a device-to-device copy); then an event, and on a
//! second stream one download of the batch's arena into pinned memory. Per call the host
//! does what a user's call does (the allreduce enqueue, plus a device copy when in place)
//! and nothing else. A zero-copy call copies its input into this rank's symmetric tensor
//! of its dtype (allocated once, collectively), reduces it there in place and copies the
//! result out into its output region, all on the call stream; the check of batch k runs on the host while batch k+1 runs on the GPU.

use std::sync::Arc;

use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{
    result, CudaContext, CudaEvent, CudaGraph, CudaSlice, CudaStream, DevicePtr, DevicePtrMut,
    PinnedHostSlice,
};
use half::{bf16, f16};
use inc_comm::{BackendKind, Comm, DType, Element, SymmetricTensor, Work};

use super::check::pattern;
use super::plan::{Batch, Call, Geometry};
use super::Exec;

fn cu<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

/// One pipeline slot: the arena a batch writes, the pinned buffer it is downloaded into,
/// and what the batch left to finish.
struct Slot {
    arena: CudaSlice<u8>,
    host: PinnedHostSlice<u8>,
    /// Recorded on the call stream after the batch.
    done: CudaEvent,
    /// Recorded on the copy stream after the download.
    copied: CudaEvent,
    works: Vec<Work>,
    graph: Option<CudaGraph>,
}

/// One rank's soak state on the cuda backend.
pub struct CudaExec<'a> {
    comm: &'a Comm,
    ctx: Arc<CudaContext>,
    /// The stream of every call (and of the poisoning and in-place copies).
    calls: Arc<CudaStream>,
    /// The stream of the downloads.
    copies: Arc<CudaStream>,
    /// This rank's pattern per dtype (in `DType::ALL` order).
    patterns: Vec<CudaSlice<u8>>,
    /// The symmetric tensors of the zero-copy calls, one per dtype.
    sym: Sym,
    slots: Vec<Slot>,
}

/// One symmetric tensor per dtype, each large enough for the largest call at any start
/// shift (a call's input is copied in, reduced in place, and copied out to the arena).
struct Sym {
    bf16: SymmetricTensor<bf16>,
    f16: SymmetricTensor<f16>,
    f32: SymmetricTensor<f32>,
}

impl Sym {
    /// Collective: every rank allocates the same three tensors in the same order.
    fn new(comm: &Comm, geo: &Geometry) -> Result<Self, String> {
        let len = |d: DType| geo.max_count(d) + 16;
        let e = |e: inc_comm::CommError| format!("symmetric tensor: {e}");
        Ok(Self {
            bf16: comm.alloc_symmetric(len(DType::Bf16)).map_err(e)?,
            f16: comm.alloc_symmetric(len(DType::F16)).map_err(e)?,
            f32: comm.alloc_symmetric(len(DType::F32)).map_err(e)?,
        })
    }
}

impl<'a> CudaExec<'a> {
    /// Uploads the patterns and allocates the arenas and pinned buffers.
    pub fn new(comm: &'a Comm, seed: u64, geo: &Geometry) -> Result<Self, String> {
        if comm.backend() != BackendKind::Cuda {
            return Err("the cuda soak needs the cuda backend".into());
        }
        let ctx = comm
            .cuda_context()
            .ok_or("the cuda backend has no CUDA context")?
            .clone();
        // SAFETY: every buffer of the soak is ordered explicitly (one call stream; the
        // copy stream waits on an event; the host waits on events before reading or
        // reusing); graph capture needs tracking off, as for any cudarc capture.
        unsafe { ctx.disable_event_tracking() };
        let calls = ctx.new_stream().map_err(cu("cuStreamCreate"))?;
        let copies = ctx.new_stream().map_err(cu("cuStreamCreate"))?;
        let patterns = DType::ALL
            .iter()
            .map(|d| {
                calls
                    .clone_htod(&pattern(seed, comm.rank(), *d, geo))
                    .map_err(cu("pattern upload"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut slots = Vec::with_capacity(2);
        for _ in 0..2 {
            let arena = calls
                .alloc_zeros::<u8>(geo.arena_bytes)
                .map_err(cu("arena cuMemAlloc"))?;
            // Not write-combined (cudarc's alloc_pinned): the host reads this memory.
            // SAFETY: the buffer is zeroed below before any read.
            let mut host = unsafe { ctx.alloc_pinned_with_flags::<u8>(geo.arena_bytes, 0) }
                .map_err(cu("cuMemHostAlloc"))?;
            let p = host.as_mut_ptr().map_err(cu("pinned buffer"))?;
            // SAFETY: `p` points to `arena_bytes` bytes of page-locked memory owned by
            // `host`, not in use by any copy yet.
            unsafe { std::ptr::write_bytes(p, 0, geo.arena_bytes) };
            slots.push(Slot {
                arena,
                host,
                done: ctx.new_event(None).map_err(cu("cuEventCreate"))?,
                copied: ctx.new_event(None).map_err(cu("cuEventCreate"))?,
                works: Vec::new(),
                graph: None,
            });
        }
        let sym = Sym::new(comm, geo)?;
        calls.synchronize().map_err(cu("synchronize"))?;
        Ok(Self {
            comm,
            ctx,
            calls,
            copies,
            patterns,
            sym,
            slots,
        })
    }
}

/// Enqueues one call on `stream`: its input is `pattern`'s elements from `c.in_off`, its
/// output `arena`'s bytes from `c.out_off`.
fn enqueue<T: Element>(
    comm: &Comm,
    stream: &Arc<CudaStream>,
    pattern: &CudaSlice<u8>,
    arena: &mut CudaSlice<u8>,
    sym: &mut SymmetricTensor<T>,
    c: &Call,
) -> Result<Work, String> {
    let es = c.dtype.size();
    let input = pattern
        .try_slice(c.in_off * es..(c.in_off + c.n) * es)
        .ok_or("input outside the pattern")?;
    // SAFETY: the pattern holds valid elements of T (bf16/f16/f32: any bits are valid)
    // and the view starts at a multiple of the element size from an aligned allocation.
    let input = unsafe { input.transmute::<T>(c.n) }.ok_or("input view")?;
    let mut out_bytes = arena
        .try_slice_mut(c.out_off..c.out_off + c.bytes())
        .ok_or("output outside the arena")?;
    // SAFETY: as above (`out_off` is a multiple of the element size).
    let mut output = unsafe { out_bytes.transmute_mut::<T>(c.n) }.ok_or("output view")?;
    let work = if c.zero_copy {
        let range = c.out_shift..c.out_shift + c.n;
        {
            let mut v = sym.view_mut();
            let mut dst = v
                .try_slice_mut(range.clone())
                .ok_or("call outside the symmetric tensor")?;
            stream
                .memcpy_dtod(&input, &mut dst)
                .map_err(cu("symmetric input copy"))?;
        }
        let w = match c.path {
            Some(p) => comm.allreduce_symmetric_using(p, sym, range.clone(), c.op, stream),
            None => comm.allreduce_symmetric(sym, range.clone(), c.op, stream),
        }
        .map_err(|e| format!("{}: {e}", c.describe()))?;
        let v = sym.view();
        let src = v
            .try_slice(range)
            .ok_or("call outside the symmetric tensor")?;
        stream
            .memcpy_dtod(&src, &mut output)
            .map_err(cu("symmetric output copy"))?;
        Ok(w)
    } else if c.in_place {
        stream
            .memcpy_dtod(&input, &mut output)
            .map_err(cu("in-place input copy"))?;
        match c.path {
            Some(p) => comm.allreduce_using(p, None, &mut output, c.op, stream),
            None => comm.allreduce(&mut output, c.op, stream),
        }
    } else {
        match c.path {
            Some(p) => comm.allreduce_using(p, Some(&input), &mut output, c.op, stream),
            None => comm.allreduce_out(&input, &mut output, c.op, stream),
        }
    };
    work.map_err(|e| format!("{}: {e}", c.describe()))
}

impl CudaExec<'_> {
    fn enqueue_all(&mut self, slot: usize, batch: &Batch) -> Result<(), String> {
        let s = self.slots.get_mut(slot).ok_or("no such slot")?;
        for c in &batch.calls {
            let d = DType::ALL.iter().position(|d| *d == c.dtype).unwrap_or(0);
            let pattern = self.patterns.get(d).ok_or("no pattern")?;
            let (comm, st, a, sym) = (self.comm, &self.calls, &mut s.arena, &mut self.sym);
            let w = match c.dtype {
                DType::Bf16 => enqueue(comm, st, pattern, a, &mut sym.bf16, c),
                DType::F16 => enqueue(comm, st, pattern, a, &mut sym.f16, c),
                DType::F32 => enqueue(comm, st, pattern, a, &mut sym.f32, c),
            }?;
            s.works.push(w);
        }
        Ok(())
    }
}

impl Exec for CudaExec<'_> {
    fn launch(&mut self, slot: usize, batch: &Batch) -> Result<(), String> {
        if batch.calls.is_empty() || batch.bytes == 0 {
            return Ok(());
        }
        self.ctx.bind_to_thread().map_err(cu("cuCtxSetCurrent"))?;
        {
            let s = self.slots.get_mut(slot).ok_or("no such slot")?;
            if batch.bytes > s.arena.len() {
                return Err("batch larger than the arena".into());
            }
            // The slot's previous batch was finished (its download synchronised), so the
            // arena and the pinned buffer are free.
            let (ptr, _g) = s.arena.device_ptr_mut(&self.calls);
            // SAFETY: `ptr` is the arena's device address, `batch.bytes` within it; the
            // context is current; ordered on the call stream before the batch's calls.
            unsafe { result::memset_d8_async(ptr, 0xff, batch.bytes, self.calls.cu_stream()) }
                .map_err(cu("cuMemsetD8Async"))?;
        }
        if batch.graph {
            self.calls
                .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                .map_err(cu("cuStreamBeginCapture"))?;
            let res = self.enqueue_all(slot, batch);
            let g = self.calls.end_capture(CUgraphInstantiate_flags(0));
            res?;
            let g = g
                .map_err(cu("cuStreamEndCapture"))?
                .ok_or("the captured graph is empty")?;
            g.launch().map_err(cu("cuGraphLaunch"))?;
            if let Some(s) = self.slots.get_mut(slot) {
                s.graph = Some(g);
            }
        } else {
            self.enqueue_all(slot, batch)?;
        }
        let s = self.slots.get_mut(slot).ok_or("no such slot")?;
        s.done.record(&self.calls).map_err(cu("cuEventRecord"))?;
        self.copies.wait(&s.done).map_err(cu("cuStreamWaitEvent"))?;
        let (src, _g) = s.arena.device_ptr(&self.copies);
        let host = s.host.as_mut_slice().map_err(cu("pinned buffer"))?;
        let dst = host
            .get_mut(..batch.bytes)
            .ok_or("batch larger than the pinned buffer")?;
        // SAFETY: `dst` is page-locked memory owned by the slot, which stays alive and is
        // not read until `finish` has synchronised `copied` (recorded right after this
        // copy); `src` holds `batch.bytes` bytes; the copy stream waits for the batch.
        unsafe { result::memcpy_dtoh_async(dst, src, self.copies.cu_stream()) }
            .map_err(cu("cuMemcpyDtoHAsync"))?;
        s.copied.record(&self.copies).map_err(cu("cuEventRecord"))?;
        Ok(())
    }

    fn finish(&mut self, slot: usize, batch: &Batch) -> Result<&[u8], String> {
        let s = self.slots.get_mut(slot).ok_or("no such slot")?;
        if batch.calls.is_empty() || batch.bytes == 0 {
            return Ok(&[]);
        }
        // The download follows the batch, so this also waits for every call.
        s.copied.synchronize().map_err(cu("cuEventSynchronize"))?;
        for w in s.works.drain(..) {
            w.wait()
                .map_err(|e| format!("batch {}: {e}", batch.number))?;
        }
        s.graph = None;
        self.comm
            .check()
            .map_err(|e| format!("batch {}: {e}", batch.number))?;
        let host = s.host.as_slice().map_err(cu("pinned buffer"))?;
        host.get(..batch.bytes)
            .ok_or_else(|| "batch larger than the pinned buffer".to_string())
    }
}

impl Drop for CudaExec<'_> {
    fn drop(&mut self) {
        // Nothing may still write the pinned buffers or read the arenas when they are
        // freed (after an error, a batch can be in flight); the calls are bounded by the
        // communicator's timeout.
        let _ = self.copies.synchronize();
        let _ = self.calls.synchronize();
        for s in &mut self.slots {
            s.works.clear();
            s.graph = None;
        }
    }
}
