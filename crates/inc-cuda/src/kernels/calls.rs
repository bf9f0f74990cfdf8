//! Enqueueing calls: the launch (with programmatic dependent launch) and the raw and
//! typed allreduce entry points.

use super::*;

impl Kernels {
    /// Binds the context to this thread and enqueues `f` on `stream` per `plan`.
    ///
    /// # Safety
    /// `f` takes one IncArgs parameter (KernelArgs mirrors it, layout tested) and the
    /// addresses in `args` stay valid until the kernel completes.
    unsafe fn launch(
        &self,
        f: &CudaFunction,
        plan: &LaunchPlan,
        stream: &CudaStream,
        args: &KernelArgs,
        pdl: bool,
    ) -> Result<()> {
        self.ctx.bind_to_thread().map_err(drv("cuCtxSetCurrent"))?;
        // SAFETY: per this function's contract.
        unsafe {
            sys::launch(
                f.cu_function(),
                plan.blocks,
                plan.threads,
                stream.cu_stream(),
                args,
                pdl,
            )
        }
        .map_err(drv("cuLaunchKernel"))
    }

    /// Whether launches on `bufs` use programmatic dependent launch: sm_90 and newer, one
    /// rank per device (virtual ranks need every rank's blocks co-resident, and a waiting
    /// dependent grid would hold SM slots), unless `INC_PDL=0`.
    pub fn pdl(&self, bufs: &PeerBuffers) -> bool {
        static ENV: OnceLock<bool> = OnceLock::new();
        let on = *ENV.get_or_init(|| std::env::var("INC_PDL").map_or(true, |v| v.trim() != "0"));
        on && self.arch.0 >= 9 && bufs.ranks_on_device() == 1
    }

    /// Enqueue one push one-shot allreduce (PROTOCOL.md "push one-shot": LL lines, no
    /// barrier, the data carries its own readiness) of at most half
    /// [`PeerBuffers::push_slot_bytes`] bytes per rank. Asynchronous and graph-capturable
    /// like [`Kernels::allreduce_raw`]; a count of 0 is a no-op.
    ///
    /// # Safety
    /// As [`Kernels::allreduce_raw`]: live device addresses of `count` elements, the same
    /// call on every rank in the same order on a stream that orders its calls.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn push_allreduce_raw(
        &self,
        bufs: &PeerBuffers,
        stream: &CudaStream,
        dtype: DType,
        op: ReduceOp,
        input: u64,
        output: u64,
        count: u64,
        options: CallOptions,
    ) -> Result<()> {
        if count == 0 {
            return empty_call(bufs);
        }
        let (args, plan) = self.prepare_push(bufs, dtype, op, input, output, count, options)?;
        let f = self.function(Algo::PushOneShot, dtype, op)?;
        // SAFETY: f's parameter is IncArgs; the addresses in args are live per this
        // function's contract and PeerBuffers.
        unsafe { self.launch(f, &plan, stream, &args, self.pdl(bufs)) }
    }

    /// Typed push one-shot from `input` into `output` (may alias only through
    /// [`Kernels::push_allreduce_in_place`]); `count` elements (`None` = input length).
    #[allow(clippy::too_many_arguments)]
    pub fn push_allreduce<T: Element>(
        &self,
        bufs: &PeerBuffers,
        stream: &CudaStream,
        op: ReduceOp,
        input: &CudaSlice<T>,
        output: &mut CudaSlice<T>,
        count: Option<u64>,
        options: CallOptions,
    ) -> Result<()> {
        self.allreduce(
            bufs,
            stream,
            Algo::PushOneShot,
            op,
            input,
            output,
            count,
            options,
        )
    }

    /// Typed in-place push one-shot of the first `count` elements of `data` (`None` = all).
    pub fn push_allreduce_in_place<T: Element>(
        &self,
        bufs: &PeerBuffers,
        stream: &CudaStream,
        op: ReduceOp,
        data: &mut CudaSlice<T>,
        count: Option<u64>,
        options: CallOptions,
    ) -> Result<()> {
        self.allreduce_in_place(bufs, stream, Algo::PushOneShot, op, data, count, options)
    }

    /// Enqueue one allreduce on `stream` (asynchronous; graph-capturable: no sync, no
    /// allocation, no flag reset). A count of 0 is a no-op on every rank.
    ///
    /// # Safety
    /// `input` and `output` must be device addresses of at least `count` elements that stay
    /// valid until the kernel completes; every rank must make the same call (same algo,
    /// dtype, op, count, blocks) in the same order on a stream that orders its calls.
    pub unsafe fn allreduce_raw(
        &self,
        bufs: &PeerBuffers,
        stream: &CudaStream,
        call: &RawCall,
    ) -> Result<()> {
        if call.count == 0 {
            return empty_call(bufs);
        }
        if call.algo == Algo::PushOneShot {
            // SAFETY: forwarded contract (same as this function's).
            return unsafe {
                self.push_allreduce_raw(
                    bufs,
                    stream,
                    call.dtype,
                    call.op,
                    call.input,
                    call.output,
                    call.count,
                    call.options,
                )
            };
        }
        let (args, plan) = self.prepare(bufs, call)?;
        let f = self.function(call.algo, call.dtype, call.op)?;
        // SAFETY: f's parameter is IncArgs; the addresses in args are live per this
        // function's contract and PeerBuffers.
        unsafe { self.launch(f, &plan, stream, &args, self.pdl(bufs)) }
    }

    /// Enqueue one zero-copy two-shot allreduce (PROTOCOL.md "two-shot, zero-copy"): in
    /// place on `count` elements at byte `offset` of every rank's symmetric allocation; no
    /// copy-in, no copy-out, no size limit but the allocation's. The form follows
    /// [`launch::zero_copy_form`]; the push form runs in pieces of the parity halves. Asynchronous and
    /// graph-capturable like [`Kernels::allreduce_raw`]; a count of 0 is a no-op.
    ///
    /// # Safety
    /// Every rank makes the same call (dtype, op, offset, count) in the same order on a
    /// stream that orders its calls, and `sym` (and the peers' allocations it maps) stay
    /// alive until the kernel completes.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn allreduce_symmetric_raw(
        &self,
        bufs: &PeerBuffers,
        sym: &SymmetricMemory,
        stream: &CudaStream,
        dtype: DType,
        op: ReduceOp,
        offset: u64,
        count: u64,
        options: CallOptions,
    ) -> Result<()> {
        if count == 0 {
            return empty_call(bufs);
        }
        // The push form needs the receive areas of the parity halves: larger calls run in
        // equal pieces of whole chunks (every rank cuts the same ones).
        let bytes = launch::tensor_bytes(dtype, count).unwrap_or(u64::MAX);
        let form = launch::zero_copy_form(bufs.world(), bytes, bufs.push_slot_bytes());
        let piece = if form == ZeroCopyForm::Push {
            let max = launch::zero_copy_push_max_count(dtype, bufs.half_bytes(), bufs.world());
            launch::piece_len(count, max, launch::lanes(dtype))
        } else {
            count
        };
        let es = dtype.size() as u64;
        let mut done = 0u64;
        while done < count {
            let n = (count - done).min(piece);
            let (args, plan) =
                self.prepare_symmetric(bufs, sym, form, dtype, op, offset + done * es, n, options)?;
            let f = self.function(Algo::TwoShot, dtype, op)?;
            // SAFETY: f's parameter is IncArgs; the addresses in args are live per this
            // function's contract.
            unsafe { self.launch(f, &plan, stream, &args, self.pdl(bufs)) }?;
            done += n;
        }
        Ok(())
    }

    /// Typed allreduce from `input` into `output` (may not alias; see
    /// [`Kernels::allreduce_in_place`]). Reduces `count` elements (`None` = input length).
    #[allow(clippy::too_many_arguments)]
    pub fn allreduce<T: Element>(
        &self,
        bufs: &PeerBuffers,
        stream: &CudaStream,
        algo: Algo,
        op: ReduceOp,
        input: &CudaSlice<T>,
        output: &mut CudaSlice<T>,
        count: Option<u64>,
        options: CallOptions,
    ) -> Result<()> {
        let n = checked_count(count, input.len(), output.len())?;
        let (ip, _ri) = input.device_ptr(stream);
        let (op_, _ro) = output.device_ptr_mut(stream);
        let call = RawCall {
            algo,
            dtype: T::DTYPE,
            op,
            input: ip,
            output: op_,
            count: n,
            options,
            piece: Piece::WHOLE,
        };
        // SAFETY: both slices hold at least n elements and are borrowed for this call; the
        // SyncOnDrop guards order later frees after the kernel on this stream.
        unsafe { self.allreduce_raw(bufs, stream, &call) }
    }

    /// Typed in-place allreduce of the first `count` elements of `data` (`None` = all).
    #[allow(clippy::too_many_arguments)]
    pub fn allreduce_in_place<T: Element>(
        &self,
        bufs: &PeerBuffers,
        stream: &CudaStream,
        algo: Algo,
        op: ReduceOp,
        data: &mut CudaSlice<T>,
        count: Option<u64>,
        options: CallOptions,
    ) -> Result<()> {
        let n = checked_count_in_place(count, data.len())?;
        let (p, _r) = data.device_ptr_mut(stream);
        let call = RawCall {
            algo,
            dtype: T::DTYPE,
            op,
            input: p,
            output: p,
            count: n,
            options,
            piece: Piece::WHOLE,
        };
        // SAFETY: the slice holds at least n elements and is borrowed for this call.
        unsafe { self.allreduce_raw(bufs, stream, &call) }
    }
}

/// A call of 0 elements: a no-op, unless the communicator is poisoned.
fn empty_call(bufs: &PeerBuffers) -> Result<()> {
    match bufs.poisoned() {
        Some(r) => Err(CudaError::Poisoned(r)),
        None => Ok(()),
    }
}

/// The element count of an out-of-place typed call (`None` = input length), checked
/// against both slices.
fn checked_count(count: Option<u64>, input_len: usize, output_len: usize) -> Result<u64> {
    let n = count.unwrap_or(input_len as u64);
    if n > input_len as u64 || n > output_len as u64 {
        return Err(CudaError::InvalidArgument(format!(
            "count {n} exceeds input ({input_len}) or output ({output_len}) length"
        )));
    }
    Ok(n)
}

/// The element count of an in-place typed call (`None` = the whole slice), checked.
fn checked_count_in_place(count: Option<u64>, len: usize) -> Result<u64> {
    let n = count.unwrap_or(len as u64);
    if n > len as u64 {
        return Err(CudaError::InvalidArgument(format!(
            "count {n} exceeds length {len}"
        )));
    }
    Ok(n)
}
