//! Calls on host slices (blocking) and the device staging buffers they run through.

use super::*;

/// Device buffers through which host calls run on the cuda backend.
#[derive(Default)]
pub(super) struct Staging {
    input: Option<CudaSlice<u8>>,
    output: Option<CudaSlice<u8>>,
}

/// `slot`, reallocated on `stream` when it holds fewer than `len` bytes (to the next
/// power of two, so growing sizes reallocate rarely).
pub(super) fn staging_buf<'a>(
    slot: &'a mut Option<CudaSlice<u8>>,
    len: usize,
    stream: &Arc<CudaStream>,
    rank: usize,
) -> Result<&'a mut CudaSlice<u8>> {
    if slot.as_ref().is_none_or(|s| s.len() < len) {
        *slot = None; // free the old one first
        let cap = len.checked_next_power_of_two().unwrap_or(len);
        let buf = stream
            .alloc_zeros::<u8>(cap)
            .map_err(|e| CommError::Backend {
                rank,
                reason: format!("cuMemAlloc of {cap} staging bytes: {e}"),
            })?;
        *slot = Some(buf);
    }
    slot.as_mut().ok_or_else(|| CommError::Backend {
        rank,
        reason: "staging buffer missing".into(),
    })
}

impl Comm {
    /// In-place allreduce of a host buffer: every rank's `buf` becomes the reduction of all
    /// ranks' `buf`s.
    ///
    /// **Blocking**: the call has finished when this returns, so the returned [`Work`] is
    /// already complete (`wait` returns `Ok` at once); it is returned so that host and
    /// device calls read alike. On the sim backend this is the data path; on the cuda
    /// backend the data goes through device staging buffers that the communicator keeps
    /// (allocated by the first host call, reallocated only when a larger call comes), on
    /// [`Comm::stream`], ordered after this communicator's previous call on any stream. A
    /// convenience, not the fast path: use [`Comm::allreduce`] on device buffers.
    pub fn allreduce_host<T: Element>(&self, buf: &mut [T], op: ReduceOp) -> Result<Work> {
        let dtype = T::DTYPE;
        let mut st = self.lock_call()?;
        self.check_entry()?;
        let bytes = self.bytes(buf.len(), dtype)?;
        let sel = self.choose(bytes, dtype).map_err(|e| self.fail(e))?;
        let data: &mut [u8] = bytemuck::cast_slice_mut(buf);
        let res = match (&self.backend, sel.path.algo()) {
            (Backend::Sim(b), Some(algo)) => b.allreduce_in_place(algo, dtype, op, data),
            (Backend::Cuda(b), _) => {
                let n = data.len() / dtype.size().max(1);
                self.stage(&mut st, b, sel.path, dtype, op, None, data, n)
            }
            (_, None) => Err(CommError::Unsupported {
                rank: self.rank,
                reason: "no path".into(),
            }),
        };
        self.settle(sel.path, bytes, res.map(|()| Work::done()))
    }

    /// Out-of-place allreduce of host buffers: `output` = reduction of every rank's `input`.
    /// Blocking, like [`Comm::allreduce_host`] (the returned [`Work`] is complete).
    pub fn allreduce_host_out<T: Element>(
        &self,
        input: &[T],
        output: &mut [T],
        op: ReduceOp,
    ) -> Result<Work> {
        self.host_out(None, input, output, op)
    }

    /// Like [`Comm::allreduce_host_out`] on a given path, whatever the selector would
    /// choose (benchmarks, `inc demo`); an error when the path cannot take the call.
    pub fn allreduce_host_using<T: Element>(
        &self,
        path: AlgoPath,
        input: &[T],
        output: &mut [T],
        op: ReduceOp,
    ) -> Result<Work> {
        self.host_out(Some(path), input, output, op)
    }

    pub(super) fn host_out<T: Element>(
        &self,
        path: Option<AlgoPath>,
        input: &[T],
        output: &mut [T],
        op: ReduceOp,
    ) -> Result<Work> {
        let dtype = T::DTYPE;
        let mut st = self.lock_call()?;
        self.check_entry()?;
        if input.len() != output.len() {
            return Err(self.len_mismatch(input.len(), output.len()));
        }
        let bytes = self.bytes(input.len(), dtype)?;
        let sel = self.selection(path, bytes, dtype)?;
        let src: &[u8] = bytemuck::cast_slice(input);
        let dst: &mut [u8] = bytemuck::cast_slice_mut(output);
        let res = match (&self.backend, sel.path.algo()) {
            (Backend::Sim(b), Some(algo)) => b.allreduce(algo, dtype, op, src, dst),
            (Backend::Cuda(b), _) => {
                self.stage(&mut st, b, sel.path, dtype, op, Some(src), dst, input.len())
            }
            (_, None) => Err(CommError::Unsupported {
                rank: self.rank,
                reason: "no path".into(),
            }),
        };
        self.settle(sel.path, bytes, res.map(|()| Work::done()))
    }

    pub(super) fn len_mismatch(&self, a: usize, b: usize) -> CommError {
        CommError::InvalidArgument {
            rank: self.rank,
            reason: format!("input has {a} elements, output {b}"),
        }
    }

    /// Host staging on the cuda backend: copy in (`src`, else `dst` for in place) to the
    /// kept staging buffers, reduce on the communicator's stream, wait, copy out into `dst`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn stage(
        &self,
        st: &mut CallState,
        b: &CudaBackend,
        path: AlgoPath,
        dtype: DType,
        op: ReduceOp,
        src: Option<&[u8]>,
        dst: &mut [u8],
        count: usize,
    ) -> Result<()> {
        let rank = self.rank;
        let stream = b.stream();
        let drv = |what: &'static str| {
            move |e: cudarc::driver::DriverError| CommError::Backend {
                rank,
                reason: format!("{what}: {e}"),
            }
        };
        if count == 0 {
            return Ok(());
        }
        let len = dst.len();
        let CallState { order, staging } = st;
        let dev_in = staging_buf(&mut staging.input, len, stream, rank)?;
        let mut dev_in = dev_in.slice_mut(0..len);
        stream
            .memcpy_htod(src.unwrap_or(dst), &mut dev_in)
            .map_err(drv("copy to device"))?;
        let mut dev_out = match src {
            Some(_) => Some(staging_buf(&mut staging.output, len, stream, rank)?.slice_mut(0..len)),
            None => None,
        };
        let work = {
            let (ip, _gi) = dev_in.device_ptr_mut(stream);
            let op_ = match &mut dev_out {
                Some(o) => o.device_ptr_mut(stream),
                None => (ip, cudarc::driver::SyncOnDrop::Sync(None)),
            };
            // SAFETY: both device buffers hold at least `count` elements of `dtype`
            // (len bytes) and live until the wait below.
            unsafe { self.enqueue(order, b, path, dtype, op, ip, op_.0, count, stream, None) }?
        };
        work.wait()?;
        match &dev_out {
            Some(o) => stream.memcpy_dtoh(o, dst),
            None => stream.memcpy_dtoh(&dev_in, dst),
        }
        .map_err(drv("copy to host"))?;
        stream.synchronize().map_err(drv("cuStreamSynchronize"))?;
        Ok(())
    }
}
