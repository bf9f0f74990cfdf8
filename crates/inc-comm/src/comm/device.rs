//! Calls on device buffers: validation, then [`Backend::enqueue`] (stream order, the
//! kernel or NCCL path, the event).
//!
//! [`Backend::enqueue`]: crate::backend::Backend::enqueue

use super::*;

impl Comm {
    /// Checks that `stream` and the buffers' contexts (`dev`) are on this rank's device
    /// (`ctx`).
    pub(super) fn check_stream(
        &self,
        ctx: &CudaContext,
        stream: &CudaStream,
        dev: &[&Arc<CudaContext>],
    ) -> Result<()> {
        let mine = ctx.cu_device();
        if stream.context().cu_device() != mine || dev.iter().any(|c| c.cu_device() != mine) {
            return Err(CommError::InvalidArgument {
                rank: self.rank,
                reason: format!(
                    "the stream and buffers must be on this rank's device (ordinal {})",
                    ctx.ordinal()
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
        let ctx = self.backend.context()?;
        let n = output.len();
        match input {
            Some(i) => {
                if i.len() != n {
                    return Err(self.len_mismatch(i.len(), n));
                }
                self.check_stream(
                    ctx,
                    stream,
                    &[i.stream().context(), output.stream().context()],
                )?;
            }
            None => self.check_stream(ctx, stream, &[output.stream().context()])?,
        }
        let bytes = self.bytes(n, dtype)?;
        let sel = self.selection(path, bytes, dtype, false)?;
        let (op_ptr, _go) = output.device_ptr_mut(stream);
        let (ip, _gi) = match input {
            Some(i) => {
                let (p, g) = i.device_ptr(stream);
                (p, Some(g))
            }
            None => (op_ptr, None),
        };
        let call = DeviceCall {
            path: sel.path,
            dtype,
            op,
            input: ip,
            output: op_ptr,
            count: n,
            stream,
            symmetric: None,
        };
        // SAFETY: both buffers (one, in place) hold n elements of T (dtype) on this device
        // (their DeviceSlice lengths) and stay borrowed for the call; cudarc's guards
        // order later uses after it.
        let res = unsafe { self.backend.enqueue(&mut st, &self.poison, &call) };
        self.settle(sel.path, bytes, res)
    }

    /// The device's CUDA context (cuda backend; `None` on sim). Allocate buffers for
    /// [`Comm::allreduce`] through it or through [`Comm::stream`].
    pub fn cuda_context(&self) -> Option<&Arc<CudaContext>> {
        self.backend.context().ok()
    }

    /// The communicator's own stream on its device (cuda backend; `None` on sim).
    pub fn stream(&self) -> Option<&Arc<CudaStream>> {
        self.backend.stream().ok()
    }

    /// Device memory this communicator allocated on its GPU (signal pad, two parity halves
    /// of the symmetric buffer, push region), in bytes; 0 on the sim backend.
    pub fn device_bytes(&self) -> u64 {
        self.backend.device_bytes()
    }

    /// Ranks that share the busiest device of this group (1: a GPU per rank; more:
    /// virtual ranks, see [`CommOptions::allow_shared_device`]).
    pub fn ranks_on_device(&self) -> usize {
        self.backend.ranks_on_device()
    }
}
