//! The calls of the cuda backend: one allreduce enqueued after the communicator's previous
//! call (stream order), run by a kernel (two-shot in pieces above the buffer) or by NCCL,
//! and its event and check; host calls through device staging buffers; the NCCL
//! communicator, created on first use.

use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaSlice, CudaStream, DevicePtrMut};
use inc_cuda::{CallOptions, Piece, RawCall};
use inc_sim::{Algo, DType, ReduceOp};

use super::{cuda_err, lock, CudaBackend, KernelCheck};
use crate::backend::{CallState, DeviceCall, Poison};
use crate::error::{CommError, Result};
use crate::nccl::Nccl;
use crate::options::AlgoPath;
use crate::order::StreamOrder;
use crate::work::{Checker, CudaWork, Work, WorkState};

/// Device buffers through which host calls run, kept and grown as needed.
#[derive(Default)]
pub(crate) struct Staging {
    input: Option<CudaSlice<u8>>,
    output: Option<CudaSlice<u8>>,
}

/// `slot`, reallocated on `stream` when it holds fewer than `len` bytes (to the next
/// power of two, so growing sizes reallocate rarely).
fn staging_buf<'a>(
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

impl CudaBackend {
    /// The NCCL communicator, created collectively on first use (every rank must reach
    /// its first NCCL call); the outcome, communicator or error, is kept.
    pub(super) fn nccl(&self) -> Result<Arc<Mutex<Nccl>>> {
        self.nccl
            .get_or_init(|| {
                Nccl::create(
                    &*self.store,
                    &self.prefix,
                    self.rank,
                    self.world,
                    &self.ctx,
                    self.ranks_on_device > 1,
                    self.call_timeout,
                )
                .map(|n| Arc::new(Mutex::new(n)))
            })
            .clone()
    }

    /// NCCL's asynchronous error, when the NCCL communicator exists.
    pub(super) fn nccl_error(&self) -> Option<CommError> {
        let Some(Ok(n)) = self.nccl.get() else {
            return None;
        };
        match n.lock() {
            Ok(n) => n.async_error(),
            Err(_) => Some(CommError::Nccl {
                rank: self.rank,
                reason: "nccl lock poisoned".into(),
            }),
        }
    }

    /// Enqueues one call and records its event (not while the stream is being captured
    /// into a graph).
    ///
    /// # Safety
    /// As [`Backend::enqueue`](crate::backend::Backend::enqueue).
    pub(super) unsafe fn enqueue_call(
        &self,
        order: &mut StreamOrder,
        poison: &Poison,
        call: &DeviceCall<'_>,
    ) -> Result<Work> {
        let DeviceCall {
            path,
            dtype,
            op,
            input,
            output,
            count,
            stream,
            symmetric,
        } = *call;
        let rank = self.rank;
        // Calls run in call order whatever their streams (see crate::order).
        let capture = StreamOrder::capture_of(rank, stream)?;
        order.before(rank, stream, capture)?;
        let check = match (path.algo(), symmetric) {
            (Some(Algo::TwoShot), Some((slot, offset))) => {
                // SAFETY: forwarded from this function's contract; the slot is this
                // backend's (kept until teardown).
                unsafe { self.launch_symmetric(stream, slot, dtype, op, offset, count as u64) }?;
                Checker::Kernel(self.kernel_check()?)
            }
            (Some(algo), _) => {
                // SAFETY: forwarded from this function's contract.
                unsafe { self.launch(stream, algo, dtype, op, input, output, count as u64) }?;
                Checker::Kernel(self.kernel_check()?)
            }
            (None, _) => {
                let n = self.nccl()?;
                {
                    let g = crate::nccl::lock(&n, rank)?;
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
        let ev = self
            .events
            .take(&self.ctx)
            .map_err(|e| CommError::Backend {
                rank,
                reason: format!("cuEventCreate: {e}"),
            })?;
        if let Err(e) = ev.record(stream) {
            self.events.give(ev);
            return Err(CommError::Backend {
                rank,
                reason: format!("cuEventRecord: {e}"),
            });
        }
        Ok(Work {
            state: WorkState::Cuda(CudaWork {
                event: Some(ev),
                pool: self.events.clone(),
                check,
                poison: poison.clone(),
                rank,
                timeout: self.call_timeout,
            }),
        })
    }

    /// Host staging: copy in (`src`, else `dst` for in place) to the kept staging buffers,
    /// reduce on the communicator's stream, wait, copy out into `dst`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn stage(
        &self,
        st: &mut CallState,
        poison: &Poison,
        path: AlgoPath,
        dtype: DType,
        op: ReduceOp,
        src: Option<&[u8]>,
        dst: &mut [u8],
    ) -> Result<()> {
        let rank = self.rank;
        let stream = &self.stream;
        let drv = |what: &'static str| {
            move |e: cudarc::driver::DriverError| CommError::Backend {
                rank,
                reason: format!("{what}: {e}"),
            }
        };
        let count = dst.len() / dtype.size().max(1);
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
            let call = DeviceCall {
                path,
                dtype,
                op,
                input: ip,
                output: op_.0,
                count,
                stream,
                symmetric: None,
            };
            // SAFETY: both device buffers hold at least `count` elements of `dtype`
            // (len bytes) and live until the wait below.
            unsafe { self.enqueue_call(order, poison, &call) }?
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

    /// Enqueues one kernel allreduce on `stream`. A two-shot call larger than the
    /// symmetric buffer holds runs as consecutive calls on pieces of at most the buffer's
    /// capacity (whole 16-byte chunks, so every piece keeps the tensor's alignment); every
    /// rank cuts the same pieces, of one size but the last (at most as large), and each
    /// piece but the first copies out the previous one beside its own transfer.
    ///
    /// # Safety
    /// `input`/`output` are device addresses of `count` elements of `dtype` on this
    /// device, valid until the call completes on `stream`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn launch(
        &self,
        stream: &CudaStream,
        algo: Algo,
        dtype: DType,
        op: ReduceOp,
        input: u64,
        output: u64,
        count: u64,
    ) -> Result<()> {
        let piece = match algo {
            // Equal pieces, not full ones and a sliver: a piece copies out the previous one
            // beside its own transfer (PROTOCOL.md "Deferred gather"), which a tiny last
            // piece would do alone.
            Algo::TwoShot => inc_cuda::launch::piece_len(
                count,
                inc_cuda::launch::max_count(algo, dtype, self.buffer_bytes(), self.world),
                inc_cuda::launch::lanes(dtype),
            ),
            _ => count.max(1),
        };
        let own = lock(self.own()?);
        let es = dtype.size() as u64;
        let mut done = 0u64;
        let mut prev_count = 0u64;
        loop {
            let n = (count - done).min(piece);
            // Pieces: each but the last leaves its copy-out to the next, which runs it beside
            // its own NVLink scatter (PROTOCOL.md "Deferred gather").
            let link = Piece {
                defer_gather: done + n < count,
                prev_count,
            };
            let call = RawCall {
                algo,
                dtype,
                op,
                input: input + done * es,
                output: output + done * es,
                count: n,
                options: CallOptions {
                    blocks: self.blocks,
                    timeout: self.call_timeout,
                },
                piece: link,
            };
            // SAFETY: forwarded from this function's contract; the piece lies inside the
            // caller's `count` elements (and so does the previous piece it copies out).
            let r = unsafe { self.kernels.allreduce_raw(&own, stream, &call) };
            self.log_kernel_loads();
            r.map_err(|e| cuda_err(self.rank, e))?;
            done += n;
            prev_count = n;
            if done >= count {
                break;
            }
        }
        Ok(())
    }

    /// Logs (info) where each kernel instance loaded since the last call came from:
    /// `embedded` (the CUBIN in the binary), `disk` (kernel cache), `compiled` (NVRTC) or
    /// `shared` (another thread's compile); once per instance and process, by whichever
    /// rank of the device loaded it. Cheap when nothing was loaded.
    pub(crate) fn log_kernel_loads(&self) {
        for r in self.kernels.take_load_reports() {
            let (algo, dtype, op) = r.instance;
            tracing::info!(
                rank = self.rank,
                kernel = %inc_cuda::source::entry_name(algo, dtype, op),
                origin = r.origin.name(),
                load_ms = super::super::ms(r.elapsed),
                note = r.note.as_deref().unwrap_or(""),
                "kernel loaded (first use of this instance)"
            );
        }
    }

    /// The check a [`Work`](crate::Work) runs after its event.
    pub(crate) fn kernel_check(&self) -> Result<KernelCheck> {
        Ok(KernelCheck {
            rank: self.rank,
            bufs: self.own()?.clone(),
            timeout_ms: u64::try_from(self.call_timeout.as_millis()).unwrap_or(u64::MAX),
        })
    }
}
