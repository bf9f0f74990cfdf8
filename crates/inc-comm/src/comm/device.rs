//! Calls on device buffers: validation, stream order, the kernel and NCCL paths, events.

use super::*;
use crate::backend::symmetric::SymSlot;
use inc_sim::Algo;

impl Comm {
    /// The NCCL communicator, created collectively on first use (every rank must reach
    /// its first NCCL call); the outcome, communicator or error, is kept.
    pub(super) fn nccl_comm(&self) -> Result<Arc<Mutex<Nccl>>> {
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
    pub(super) unsafe fn enqueue(
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
        symmetric: Option<(&SymSlot, u64)>,
    ) -> Result<Work> {
        // Calls run in call order whatever their streams (see crate::order).
        let capture = StreamOrder::capture_of(self.rank, stream)?;
        order.before(self.rank, stream, capture)?;
        let check = match (path.algo(), symmetric) {
            (Some(Algo::TwoShot), Some((slot, offset))) => {
                // SAFETY: forwarded from this function's contract; the slot is this
                // backend's (kept until teardown).
                unsafe { b.launch_symmetric(stream, slot, dtype, op, offset, count as u64) }?;
                Checker::Kernel(b.kernel_check()?)
            }
            (Some(algo), _) => {
                // SAFETY: forwarded from this function's contract.
                unsafe { b.launch(stream, algo, dtype, op, input, output, count as u64) }?;
                Checker::Kernel(b.kernel_check()?)
            }
            (None, _) => {
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

    pub(super) fn cuda(&self) -> Result<&CudaBackend> {
        match &self.backend {
            Backend::Cuda(b) => Ok(b),
            Backend::Sim(_) => Err(CommError::Unsupported {
                rank: self.rank,
                reason: "device buffers need the cuda backend (use allreduce_host on sim)".into(),
            }),
        }
    }

    pub(super) fn check_stream(
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

    pub(super) fn device_call<T: Element, O: DevicePtrMut<T>>(
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
                    self.enqueue(
                        &mut st.order,
                        b,
                        sel.path,
                        dtype,
                        op,
                        ip,
                        op_ptr,
                        n,
                        stream,
                        None,
                    )
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
                    None,
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
}
