//! The control channel (bounded all-gathers through a store) and the device-side helpers
//! of a timed call: its target and buffers, enqueueing, upload / poison / download, a
//! bounded event wait, and graph capture.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaEvent, CudaGraph, CudaSlice, CudaStream, DevicePtr, DeviceRepr};
use inc_comm::nccl::NcclComm;
use inc_comm::{AlgoPath as Path, Comm, Element, ReduceOp, SymmetricTensor};
use inc_store::Store;

/// The control channel: all-gathers through a store, every wait bounded.
pub(super) struct Ctrl {
    pub(super) store: Arc<dyn Store>,
    pub(super) rank: usize,
    pub(super) world: usize,
    pub(super) timeout: Duration,
}

impl Ctrl {
    pub(super) fn gather(&self, key: &str, msg: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        inc_store::store_all_gather(
            &*self.store,
            &format!("inc-bench/{key}"),
            self.rank,
            self.world,
            msg,
            self.timeout,
        )
        .map_err(|e| format!("bench control gather `{key}`: {e}"))
    }

    /// Ok on every rank, or the first rank's error on every rank.
    pub(super) fn agree(&self, key: &str, local: Result<(), String>) -> Result<(), String> {
        let msg = match &local {
            Ok(()) => b"ok".to_vec(),
            Err(e) => format!("err:rank {}: {e}", self.rank).into_bytes(),
        };
        let all = self.gather(key, &msg)?;
        match all.iter().find_map(|m| m.strip_prefix(b"err:")) {
            Some(e) => Err(String::from_utf8_lossy(e).into_owned()),
            None => Ok(()),
        }
    }
}

/// What a timed call goes through.
#[derive(Clone, Copy)]
pub(super) enum Target<'a> {
    /// An inc communicator: a pinned path, or the selector (`None`).
    Inc { comm: &'a Comm, path: Option<Path> },
    /// An inc communicator in place on a symmetric tensor (zero-copy).
    IncSym { comm: &'a Comm, path: Option<Path> },
    /// The bench's own NCCL communicator.
    Nccl(&'a NcclComm),
}

/// The buffers of a call.
pub(super) enum Bufs<'a, T> {
    /// cudarc slices (inc's device API and `nccl`).
    Slices(&'a CudaSlice<T>, &'a mut CudaSlice<T>),
    /// The first `count` elements of an inc symmetric tensor (in place).
    Sym(&'a mut SymmetricTensor<T>, usize),
    /// Raw device addresses of `count` elements (symmetric NCCL windows).
    Raw {
        input: u64,
        output: u64,
        count: usize,
    },
}

impl<T: Element + DeviceRepr> Bufs<'_, T> {
    /// (input, output, elements).
    pub(super) fn raw(&self, stream: &CudaStream) -> (u64, u64, usize) {
        match self {
            Bufs::Sym(t, n) => {
                let v = t.view();
                let p = v.device_ptr(stream).0;
                (p, p, *n)
            }
            Bufs::Slices(i, o) => {
                // Event tracking is off on the bench's contexts: the guards are no-ops.
                let ip = i.device_ptr(stream).0;
                let op = o.device_ptr(stream).0;
                (ip, op, o.len())
            }
            Bufs::Raw {
                input,
                output,
                count,
            } => (*input, *output, *count),
        }
    }
}

/// Enqueues one call; `Some(work)` for inc calls outside a capture.
pub(super) fn enqueue<T: Element + DeviceRepr>(
    target: Target<'_>,
    bufs: &mut Bufs<'_, T>,
    op: ReduceOp,
    stream: &Arc<CudaStream>,
) -> Result<Option<inc_comm::Work>, String> {
    match (target, bufs) {
        (Target::Inc { comm, path }, Bufs::Slices(i, o)) => match path {
            Some(p) => comm.allreduce_using(p, Some(*i), &mut **o, op, stream),
            None => comm.allreduce_out(*i, &mut **o, op, stream),
        }
        .map(Some)
        .map_err(|e| e.to_string()),
        (Target::IncSym { comm, path }, Bufs::Sym(t, n)) => match path {
            Some(p) => comm.allreduce_symmetric_using(p, &mut **t, 0..*n, op, stream),
            None => comm.allreduce_symmetric(&mut **t, 0..*n, op, stream),
        }
        .map(Some)
        .map_err(|e| e.to_string()),
        (Target::Nccl(n), b) => {
            let (ip, op_, count) = b.raw(stream);
            // SAFETY: both addresses hold `count` elements of T on this rank's device
            // (slices or NCCL windows owned by the caller), which outlive every use: the
            // bench synchronises the stream before releasing them.
            unsafe { n.all_reduce(ip, op_, count, T::DTYPE, op, stream) }
                .map_err(|e| e.to_string())?;
            Ok(None)
        }
        (Target::Inc { .. } | Target::IncSym { .. }, _) => {
            Err("inc's calls take cudarc slices or a symmetric tensor".into())
        }
    }
}

/// Uploads `src` to `dst` on `stream`.
pub(super) fn upload<T: DeviceRepr>(
    dst: u64,
    src: &[T],
    stream: &CudaStream,
) -> Result<(), String> {
    // SAFETY: dst holds at least src.len() elements of T (the caller's buffer of this
    // size); src stays borrowed until the stream is synchronised below.
    unsafe { cudarc::driver::result::memcpy_htod_async(dst, src, stream.cu_stream()) }
        .and_then(|()| stream.synchronize())
        .map_err(|e| format!("upload: {e}"))
}

/// Sets `bytes` bytes at `dst` to 0xFF (NaN in bf16, f16 and f32) on `stream`.
pub(super) fn poison(dst: u64, bytes: usize, stream: &CudaStream) -> Result<(), String> {
    // SAFETY: dst is a device buffer of at least `bytes` bytes on stream's device, which
    // stays allocated until the stream is synchronised.
    unsafe { inc_cuda::sys::memset_d8_async(dst, 0xFF, bytes, stream.cu_stream()) }
        .map_err(|e| format!("cuMemsetD8Async: {:?}", e.0))
}

/// Copies `dst.len()` elements at `src` back and waits for them.
pub(super) fn download<T: DeviceRepr>(
    dst: &mut [T],
    src: u64,
    stream: &CudaStream,
) -> Result<(), String> {
    // SAFETY: src holds at least dst.len() elements of T; the stream is synchronised
    // before dst is read or released.
    unsafe { cudarc::driver::result::memcpy_dtoh_async(dst, src, stream.cu_stream()) }
        .and_then(|()| stream.synchronize())
        .map_err(|e| format!("download: {e}"))
}

/// Waits for `ev` with a deadline (a hung peer cannot hang the bench).
pub(super) fn wait_event(ev: &CudaEvent, timeout: Duration) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        match ev.try_is_complete() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => return Err(format!("waiting for the GPU: {e}")),
        }
        if t0.elapsed() > timeout {
            return Err(format!(
                "the GPU work did not finish within {:.1} s",
                timeout.as_secs_f64()
            ));
        }
        if t0.elapsed() < Duration::from_micros(200) {
            std::hint::spin_loop();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// Captures `calls` back-to-back calls into a graph (ending the capture on any error).
pub(super) fn capture<T: Element + DeviceRepr>(
    target: Target<'_>,
    bufs: &mut Bufs<'_, T>,
    op: ReduceOp,
    stream: &Arc<CudaStream>,
    calls: usize,
) -> Result<CudaGraph, String> {
    stream
        .synchronize()
        .and_then(|()| {
            stream.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        })
        .map_err(|e| format!("cuStreamBeginCapture: {e}"))?;
    let mut res = Ok(());
    for _ in 0..calls {
        if let Err(e) = enqueue(target, bufs, op, stream) {
            res = Err(e);
            break;
        }
    }
    let g = stream.end_capture(CUgraphInstantiate_flags(0));
    res?;
    let g = g
        .map_err(|e| format!("cuStreamEndCapture: {e}"))?
        .ok_or("the captured graph is empty")?;
    g.upload().map_err(|e| format!("cuGraphUpload: {e}"))?;
    Ok(g)
}
