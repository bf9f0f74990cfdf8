//! Symmetric tensors: device memory every rank of a communicator can read and write, so an
//! allreduce on it needs no copy-in or copy-out (the zero-copy two-shot of PROTOCOL.md).

use std::mem::ManuallyDrop;
use std::ops::{Bound, RangeBounds};

use cudarc::driver::{CudaSlice, CudaView, CudaViewMut, DevicePtrMut};
use serde::{Deserialize, Serialize};

use super::*;
use crate::backend::symmetric::{sym_lock, SymSlot};

/// A tensor of `len` elements in symmetric memory: each rank holds its own copy, mapped
/// into every peer (CUDA IPC across processes), allocated collectively by
/// [`Comm::alloc_symmetric`]. Write it with your own kernels or copies through
/// [`SymmetricTensor::view_mut`]; [`Comm::allreduce_symmetric`] then reduces it in place
/// with no copy-in and no copy-out, at any size.
///
/// Lifetime: the memory belongs to the communicator (or, registered with
/// [`Comm::register_symmetric`], to the caller, who keeps it allocated until the
/// communicator's shutdown). Dropping the tensor ends this rank's use of it; the memory of
/// every rank is returned at the collective teardown ([`Comm::shutdown`], or drop), after
/// every peer closed its mapping. Allocate symmetric
/// tensors once and reuse them (as with torch's symmetric memory or NCCL windows).
pub struct SymmetricTensor<T> {
    /// Never freed by cudarc: taken and leaked in `Drop`.
    slice: ManuallyDrop<CudaSlice<T>>,
    slot: Arc<SymSlot>,
    comm: String,
    len: usize,
}

impl<T> std::fmt::Debug for SymmetricTensor<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SymmetricTensor")
            .field("comm", &self.comm)
            .field("len", &self.len)
            .finish()
    }
}

impl<T> Drop for SymmetricTensor<T> {
    fn drop(&mut self) {
        // The memory is the communicator's (freed at teardown): never let cudarc free it.
        // SAFETY: the slice is taken once, here, and never used again.
        let s = unsafe { ManuallyDrop::take(&mut self.slice) };
        let _ = s.leak();
    }
}

impl<T: Element> SymmetricTensor<T> {
    /// Elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tensor has no elements (never: allocations have at least one).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tensor as a cudarc view (read it, copy it out, pass it to your kernels).
    pub fn view(&self) -> CudaView<'_, T> {
        self.slice.slice(..)
    }

    /// The tensor as a mutable cudarc view (write it: copies, your kernels).
    pub fn view_mut(&mut self) -> CudaViewMut<'_, T> {
        self.slice.slice_mut(..)
    }
}

/// What each rank publishes when it allocates its part of a symmetric tensor.
#[derive(Serialize, Deserialize)]
struct SymMeta {
    bytes: u64,
    dtype: String,
    handle: Option<String>,
    error: Option<String>,
}

impl Comm {
    /// Allocates a symmetric tensor of `len` elements of `T` (zeroed), collectively: every
    /// rank must call it, in the same order relative to its other symmetric allocations and
    /// registrations, with the same `len` and `T` (a mismatch is an error on every rank).
    /// Bounded by the communicator's timeout. cuda backend only.
    pub fn alloc_symmetric<T: Element>(&self, len: usize) -> Result<SymmetricTensor<T>> {
        self.symmetric_collective::<T>(len, |b, seq, bytes| b.sym_alloc(&self.prefix, seq, bytes))
    }

    /// Registers `len` elements of the caller's device memory at `ptr` as a symmetric tensor
    /// (zero-copy allreduce on memory inc did not allocate, e.g. a PyTorch tensor or a
    /// CUDA-graph buffer), collectively like [`Comm::alloc_symmetric`]: every rank registers
    /// its own buffer of the same length and type. Across processes the buffer is shared as
    /// its allocation's CUDA IPC handle plus the offset, so it must come from `cuMemAlloc`
    /// (PyTorch's caching allocator, `cudaMalloc`); memory from a stream-ordered pool
    /// (`cuMemAllocAsync`, cudarc's default allocation on recent GPUs) has no IPC handle and
    /// is refused with a clear error on every rank. `ptr` must be 16-byte aligned. A rank
    /// that never registers makes the others fail within the timeout. The returned tensor
    /// aliases the caller's memory (its views read and write it); inc never frees it.
    ///
    /// # Safety
    /// `[ptr, ptr + len * size_of::<T>())` is device memory of this rank's GPU that stays
    /// allocated until this communicator's shutdown (peers map it until then), and nothing
    /// else writes it while an allreduce on the tensor runs.
    pub unsafe fn register_symmetric<T: Element>(
        &self,
        ptr: u64,
        len: usize,
    ) -> Result<SymmetricTensor<T>> {
        self.symmetric_collective::<T>(len, |b, seq, bytes| {
            // SAFETY: forwarded from this function's contract.
            unsafe { b.sym_register(&self.prefix, seq, ptr, bytes) }
        })
    }

    /// The collective part of a symmetric allocation or registration: the local step
    /// (`local`), an all-gather of (bytes, dtype, handle or error), mapping every peer, and
    /// an all-gather of the mapping outcome.
    fn symmetric_collective<T: Element>(
        &self,
        len: usize,
        local: impl FnOnce(&dyn Backend, u64, u64) -> Result<(Arc<SymSlot>, String)>,
    ) -> Result<SymmetricTensor<T>> {
        self.check_poison()?;
        // Device memory: an Unsupported error on a backend without it, before any
        // rendezvous step.
        let stream = self.backend.stream()?;
        let b = &*self.backend;
        let rank = self.rank;
        let bytes = self.bytes(len, T::DTYPE)?;
        let seq = self
            .sym_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let step = format!("sym{seq}");
        let local = if len == 0 {
            Err(CommError::InvalidArgument {
                rank,
                reason: "a symmetric tensor needs at least one element".into(),
            })
        } else {
            local(b, seq, bytes)
        };
        let meta = SymMeta {
            bytes,
            dtype: T::DTYPE.name().into(),
            handle: local.as_ref().ok().map(|(_, h)| h.clone()),
            error: local.as_ref().err().map(|e| e.to_string()),
        };
        let rdv = Rdv {
            store: &*self.store,
            prefix: self.prefix.clone(),
            rank,
            world: self.world,
            deadline: Instant::now() + self.opts.timeout,
            timeout: self.opts.timeout,
        };
        let all = rdv.gather_json(&step, &meta)?;
        let (slot, handle) = local?;
        let mut handles = Vec::with_capacity(self.world);
        for (q, m) in all.iter().enumerate() {
            if let Some(e) = &m.error {
                return Err(CommError::Rendezvous {
                    rank,
                    reason: format!("symmetric tensor {seq}: rank {q} failed: {e}"),
                });
            }
            if m.bytes != bytes || m.dtype != T::DTYPE.name() {
                return Err(CommError::Rendezvous {
                    rank,
                    reason: format!(
                        "symmetric tensor {seq}: rank {q} has {} bytes of {}, rank {rank} {bytes} bytes of {} (every rank must allocate or register the same tensors in the same order)",
                        m.bytes,
                        m.dtype,
                        T::DTYPE.name()
                    ),
                });
            }
            handles.push(m.handle.clone().unwrap_or_default());
        }
        let opened = b.sym_open(&slot, &handles);
        let msg = Opened {
            error: opened.as_ref().err().map(|e| e.to_string()),
        };
        let all = rdv.gather_json(&format!("{step}/opened"), &msg);
        b.sym_opened(&handle);
        opened?;
        rendezvous::check_opened(rank, &all?)?;
        let base = sym_lock(&slot).base();
        // SAFETY: base is live device memory of at least len * size_of::<T>() bytes on this
        // rank's device (ours, zeroed; or the caller's registered memory, valid per
        // register_symmetric's contract); the tensor never frees it (Drop leaks the slice).
        let slice = unsafe { stream.upgrade_device_ptr::<T>(base, len) };
        Ok(SymmetricTensor {
            slice: ManuallyDrop::new(slice),
            slot,
            comm: self.prefix.clone(),
            len,
        })
    }

    /// In-place allreduce of `range` of a symmetric tensor (every rank passes the same
    /// range), enqueued on `stream`. Sizes the selector gives to two-shot run the zero-copy
    /// two-shot (no copy-in, no copy-out, no size limit; the owners of the slices store the
    /// result into every rank's tensor), and so do those under the one-shot limit above 5
    /// MiB at world 2 (`select::default_zero_copy_two_shot_min_bytes`); smaller ones run
    /// the push one-shot or one-shot on the tensor's memory (measured: the zero-copy
    /// two-shot does not beat them there). The range must start at a 16-byte boundary for
    /// the zero-copy path (otherwise the copy-in path runs). Ordering, capture and errors
    /// as [`Comm::allreduce`].
    pub fn allreduce_symmetric<T: Element>(
        &self,
        tensor: &mut SymmetricTensor<T>,
        range: impl RangeBounds<usize>,
        op: ReduceOp,
        stream: &Arc<CudaStream>,
    ) -> Result<Work> {
        self.symmetric_call(None, tensor, range, op, stream)
    }

    /// [`Comm::allreduce_symmetric`] on a given path (benchmarks): `AlgoPath::TwoShot`
    /// forces the zero-copy two-shot.
    pub fn allreduce_symmetric_using<T: Element>(
        &self,
        path: AlgoPath,
        tensor: &mut SymmetricTensor<T>,
        range: impl RangeBounds<usize>,
        op: ReduceOp,
        stream: &Arc<CudaStream>,
    ) -> Result<Work> {
        self.symmetric_call(Some(path), tensor, range, op, stream)
    }

    fn symmetric_call<T: Element>(
        &self,
        path: Option<AlgoPath>,
        tensor: &mut SymmetricTensor<T>,
        range: impl RangeBounds<usize>,
        op: ReduceOp,
        stream: &Arc<CudaStream>,
    ) -> Result<Work> {
        let dtype = T::DTYPE;
        let mut st = self.lock_call()?;
        self.check_entry()?;
        let ctx = self.backend.context()?;
        if tensor.comm != self.prefix {
            return Err(CommError::InvalidArgument {
                rank: self.rank,
                reason: format!(
                    "symmetric tensor of communicator {} used with {}",
                    tensor.comm, self.prefix
                ),
            });
        }
        let len = tensor.len;
        let lo = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let hi = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => len,
        };
        if lo > hi || hi > len {
            return Err(CommError::InvalidArgument {
                rank: self.rank,
                reason: format!("range {lo}..{hi} outside the {len}-element symmetric tensor"),
            });
        }
        let n = hi - lo;
        let slice = &mut *tensor.slice;
        self.check_stream(ctx, stream, &[slice.stream().context()])?;
        let bytes = self.bytes(n, dtype)?;
        let es = dtype.size() as u64;
        let offset = lo as u64 * es;
        let zero_copy = offset % 16 == 0;
        let sel = self.selection(path, bytes, dtype, zero_copy)?;
        let (base, _g) = slice.device_ptr_mut(stream);
        let ptr = base + offset;
        let call = DeviceCall {
            path: sel.path,
            dtype,
            op,
            input: ptr,
            output: ptr,
            count: n,
            stream,
            symmetric: zero_copy.then_some((&*tensor.slot, offset)),
        };
        // SAFETY: [ptr, ptr + n elements) lies in the tensor (range checked), which stays
        // borrowed for the call; the symmetric memory (this backend's) lives until teardown.
        let res = unsafe { self.backend.enqueue(&mut st, &self.poison, &call) };
        self.settle(sel.path, bytes, res)
    }
}
