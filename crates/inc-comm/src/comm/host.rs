//! Calls on host slices (blocking): the CPU data path on sim, device staging buffers on
//! cuda ([`Backend::allreduce_host`](crate::backend::Backend::allreduce_host)).

use super::*;

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
        let sel = self.choose(bytes, dtype, false).map_err(|e| self.fail(e))?;
        let data: &mut [u8] = bytemuck::cast_slice_mut(buf);
        let res =
            self.backend
                .allreduce_host(&mut st, &self.poison, sel.path, dtype, op, None, data);
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
        let sel = self.selection(path, bytes, dtype, false)?;
        let src: &[u8] = bytemuck::cast_slice(input);
        let dst: &mut [u8] = bytemuck::cast_slice_mut(output);
        let res =
            self.backend
                .allreduce_host(&mut st, &self.poison, sel.path, dtype, op, Some(src), dst);
        self.settle(sel.path, bytes, res.map(|()| Work::done()))
    }

    pub(super) fn len_mismatch(&self, a: usize, b: usize) -> CommError {
        CommError::InvalidArgument {
            rank: self.rank,
            reason: format!("input has {a} elements, output {b}"),
        }
    }
}
