//! The cuda path of `inc bench` / `inc tune`: device buffers, CUDA-event timing, CUDA
//! graphs, and NCCL beside inc on the same buffers.
//!
//! Per rank (a thread with `--threads N`, a process under `inc launch`):
//!
//! * **Buffers.** Per size one input/output `CudaSlice` pair (inc's device API takes
//!   whole slices), shared by every column. Before each repetition the input is uploaded
//!   from a host pattern that changes every repetition (small integers: the reference is
//!   exact) and the output is set to NaN bytes, so a call that writes nothing is wrong.
//! * **Lining up.** Right before each timed region an untimed 16-element inc allreduce on
//!   a small control communicator runs on the same stream: it returns on every rank at
//!   nearly the same moment, so the timed call does not also measure a late peer's host.
//! * **eager**: CUDA events around one call launched from the host. **graph**:
//!   `--graph-calls` back-to-back calls captured into a CUDA graph (once per size and
//!   column), events around one replay, divided by the calls.
//! * **#wrong**: after every repetition the output comes back to the host and every
//!   element is compared with the reference (outside the timed region).
//! * The time of a repetition is the slowest rank's (gathered through a store: in-memory
//!   for threads, the launch's TCP store for processes); the reported time is the median.
//! * **NCCL** (`--compare nccl`): `nccl` = inc's NCCL path (`Path::Nccl`) on the same
//!   buffers; `nccl-symm` = NCCL on window-registered symmetric buffers (NCCL >= 2.27,
//!   [`super::nccl_raw`]). With virtual ranks (more ranks than GPUs: they share a GPU,
//!   `allow_shared_device`) NCCL cannot run: both are n/a, and NCCL with ONE rank on GPU 0
//!   is measured instead as a floor (`nccl-w1`, `nccl-symm-w1`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::sys::{CUevent_flags, CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{
    CudaContext, CudaEvent, CudaGraph, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    ValidAsZeroBits,
};
use half::{bf16, f16};
use inc_comm::{
    AlgoChoice, AlgoPath as Path, Comm, CommOptions, DType, Element, ReduceOp, SymmetricTensor,
    TorchrunEnv,
};
use inc_store::{MemStore, Store};

use super::measure::{
    connect_env_store, expected_table, fill, join_ranks, series_opts, thread_series_comms, PERIOD,
    REP_STEP,
};
use super::nccl_raw::{self, RawNccl, SymmBuffers};
use super::report::{median, Mode, Report, Sample, Series, Source};
use super::{Launch, Plan, Which};

/// Elements of the lining-up call.
const SYNC_ELEMS: usize = 16;
/// Symmetric buffer bytes of the control communicator (it only reduces 16 elements).
const SYNC_BUFFER_BYTES: u64 = 64 << 10;

/// The error when no GPU is visible.
pub(crate) fn no_gpu() -> String {
    "the cuda backend found no CUDA device (needs an NVIDIA GPU, its driver and libnvrtc; \
     check CUDA_VISIBLE_DEVICES), use --backend sim"
        .into()
}

/// Where the ranks of a `--threads N` run sit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Device of each rank.
    pub devices: Vec<usize>,
    /// More ranks than GPUs: they share GPUs ("virtual ranks").
    pub virtual_ranks: bool,
}

/// A GPU per rank when there are enough, else rank `i` on GPU `i mod gpus`.
pub(crate) fn thread_layout(n: usize, gpus: usize) -> Result<Layout, String> {
    if gpus == 0 {
        return Err(no_gpu());
    }
    if n <= gpus {
        Ok(Layout {
            devices: (0..n).collect(),
            virtual_ranks: false,
        })
    } else {
        Ok(Layout {
            devices: (0..n).map(|i| i % gpus).collect(),
            virtual_ranks: true,
        })
    }
}

/// What one column measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ColKind {
    /// `plan.specs[k]` through its own communicator.
    Inc(usize),
    /// NCCL through inc's `Path::Nccl` on the same buffers.
    Nccl,
    /// NCCL on window-registered symmetric buffers.
    NcclSymm,
    /// NCCL with one rank on rank 0's GPU (measured by rank 0 alone, after the rest).
    Floor {
        /// On symmetric buffers.
        symm: bool,
    },
    /// Not measured, and why.
    Na(String),
}

/// One column of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Col {
    /// Series name.
    pub name: String,
    /// inc or NCCL.
    pub source: Source,
    /// eager or graph.
    pub mode: Mode,
    /// What it measures.
    pub kind: ColKind,
}

/// Name of the world-1 floor columns.
pub(crate) const FLOOR: &str = "nccl-w1";
/// Name of the symmetric world-1 floor column.
pub(crate) const FLOOR_SYMM: &str = "nccl-symm-w1";

/// The columns of a cuda run in report order: per mode the inc specs, then with
/// `--compare nccl` `nccl` and `nccl-symm` (n/a with the reason when they cannot run),
/// and with virtual ranks the world-1 floors. `nccl` is libnccl's version or why it is
/// unusable.
pub(crate) fn columns(plan: &Plan, virtual_ranks: bool, nccl: &Result<i32, String>) -> Vec<Col> {
    let mut cols = Vec::new();
    for &mode in &plan.modes {
        for (k, spec) in plan.specs.iter().enumerate() {
            cols.push(Col {
                name: spec.name.clone(),
                source: Source::Inc,
                mode,
                kind: ColKind::Inc(k),
            });
        }
    }
    if !plan.compare_nccl {
        return cols;
    }
    let col = |name: &str, mode, kind| Col {
        name: name.into(),
        source: Source::Nccl,
        mode,
        kind,
    };
    for &mode in &plan.modes {
        let (plain, symm) = match (virtual_ranks, nccl) {
            (true, _) => {
                let why = "n/a (needs a GPU per rank): this group has virtual ranks".to_string();
                (ColKind::Na(why.clone()), ColKind::Na(why))
            }
            (false, Err(e)) => (ColKind::Na(e.clone()), ColKind::Na(e.clone())),
            (false, Ok(v)) => (
                ColKind::Nccl,
                nccl_raw::symm_unsupported(*v).map_or(ColKind::NcclSymm, ColKind::Na),
            ),
        };
        cols.push(col("nccl", mode, plain));
        cols.push(col("nccl-symm", mode, symm));
    }
    if virtual_ranks {
        for &mode in &plan.modes {
            let (plain, symm) = match nccl {
                Err(e) => (ColKind::Na(e.clone()), ColKind::Na(e.clone())),
                Ok(v) => (
                    ColKind::Floor { symm: false },
                    nccl_raw::symm_unsupported(*v)
                        .map_or(ColKind::Floor { symm: true }, ColKind::Na),
                ),
            };
            cols.push(col(FLOOR, mode, plain));
            cols.push(col(FLOOR_SYMM, mode, symm));
        }
    }
    cols
}

/// Calls per timing in `mode`.
pub(crate) fn calls_per_timing(mode: Mode, graph_calls: usize) -> usize {
    match mode {
        Mode::Eager => 1,
        Mode::Graph => graph_calls.max(1),
    }
}

/// Microseconds per call of a timing of `ms` milliseconds over `calls` calls.
pub(crate) fn per_call_us(ms: f32, calls: usize) -> f64 {
    f64::from(ms) * 1e3 / calls.max(1) as f64
}

/// Offset into [`pattern_buffer`] / [`expected_buffer`] of repetition `rep`.
pub(crate) fn rep_offset(rep: usize) -> usize {
    (rep * REP_STEP) % PERIOD
}

/// `len + PERIOD` elements of `rank`'s input pattern at repetition 0: repetition `rep`'s
/// input of `n` elements is `[rep_offset(rep)..][..n]` (no per-repetition generation).
pub(crate) fn pattern_buffer<T: Element>(rank: usize, len: usize) -> Vec<T> {
    let mut v = vec![T::from_f32(0.0); len + PERIOD];
    fill(&mut v, rank, 0);
    v
}

/// `len + PERIOD` elements of the expected output, laid out like [`pattern_buffer`].
pub(crate) fn expected_buffer<T: Element>(table: &[T], len: usize) -> Vec<T> {
    table.iter().copied().cycle().take(len + PERIOD).collect()
}

/// Elements of `out` whose bits differ from `want` (plus any length difference).
pub(crate) fn count_wrong_bits<T: Element>(out: &[T], want: &[T]) -> u64 {
    let a: &[u8] = bytemuck::cast_slice(out);
    let b: &[u8] = bytemuck::cast_slice(want);
    let extra = out.len().abs_diff(want.len()) as u64;
    if a == b {
        return 0;
    }
    let w = std::mem::size_of::<T>();
    extra
        + a.chunks_exact(w)
            .zip(b.chunks_exact(w))
            .filter(|(x, y)| x != y)
            .count() as u64
}

/// One rank's result of one point, as sent to the others: `ok` + #wrong (u64 LE) + the
/// times (f32 LE), or `err:` + why.
pub(crate) fn encode_point(r: &Result<(Vec<f32>, u64), String>) -> Vec<u8> {
    match r {
        Ok((times, wrong)) => {
            let mut v = b"ok".to_vec();
            v.extend_from_slice(&wrong.to_le_bytes());
            for t in times {
                v.extend_from_slice(&t.to_le_bytes());
            }
            v
        }
        Err(e) => format!("err:{e}").into_bytes(),
    }
}

/// Every rank's point combined: per repetition the slowest rank's time (µs), and #wrong
/// summed; the first rank's error if any failed (the same verdict on every rank).
pub(crate) fn combine_points(all: &[Vec<u8>]) -> Result<(Vec<f64>, u64), String> {
    if let Some(e) = all.iter().find_map(|m| m.strip_prefix(b"err:")) {
        return Err(String::from_utf8_lossy(e).into_owned());
    }
    let mut times: Option<Vec<f64>> = None;
    let mut wrong = 0u64;
    for (r, m) in all.iter().enumerate() {
        let body = m
            .strip_prefix(b"ok")
            .ok_or_else(|| format!("rank {r} sent a malformed result"))?;
        let (w, rest) = body
            .split_first_chunk::<8>()
            .ok_or_else(|| format!("rank {r} sent a short result"))?;
        wrong = wrong.saturating_add(u64::from_le_bytes(*w));
        let t: Vec<f64> = rest
            .chunks_exact(4)
            .map(|c| {
                let mut b = [0u8; 4];
                b.copy_from_slice(c);
                f64::from(f32::from_le_bytes(b))
            })
            .collect();
        times = Some(match times {
            None => t,
            Some(prev) if prev.len() == t.len() => {
                prev.iter().zip(&t).map(|(a, b)| a.max(*b)).collect()
            }
            Some(_) => return Err(format!("rank {r} timed a different number of repetitions")),
        });
    }
    Ok((times.unwrap_or_default(), wrong))
}

/// The kernel module version from `/proc/driver/nvidia/version`'s text (`570.86.15`).
pub(crate) fn parse_nvrm(text: &str) -> Option<String> {
    let line = text.lines().next()?;
    line.split_whitespace()
        .find(|t| {
            let parts: Vec<&str> = t.split('.').collect();
            parts.len() >= 2
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
}

/// `570.86.15 (CUDA 12.8)`: the kernel driver and the CUDA driver API versions.
fn driver_version() -> String {
    let kmod = std::fs::read_to_string("/proc/driver/nvidia/version")
        .ok()
        .and_then(|t| parse_nvrm(&t));
    let mut v: std::ffi::c_int = 0;
    // SAFETY: only reached when the driver loaded and reported a device; v is a valid
    // out pointer.
    let ok = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) }
        == cudarc::driver::sys::CUresult::CUDA_SUCCESS;
    let api = ok.then(|| format!("CUDA {}.{}", v / 1000, (v % 1000) / 10));
    match (kmod, api) {
        (Some(k), Some(a)) => format!("{k} ({a})"),
        (Some(k), None) => k,
        (None, Some(a)) => a,
        (None, None) => "unknown".into(),
    }
}

/// The control channel: all-gathers through a store, every wait bounded.
struct Ctrl {
    store: Arc<dyn Store>,
    rank: usize,
    world: usize,
    timeout: Duration,
}

impl Ctrl {
    fn gather(&self, key: &str, msg: &[u8]) -> Result<Vec<Vec<u8>>, String> {
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
    fn agree(&self, key: &str, local: Result<(), String>) -> Result<(), String> {
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
enum Target<'a> {
    /// An inc communicator: a pinned path, or the selector (`None`).
    Inc { comm: &'a Comm, path: Option<Path> },
    /// An inc communicator in place on a symmetric tensor (zero-copy).
    IncSym { comm: &'a Comm, path: Option<Path> },
    /// The bench's own NCCL communicator.
    Nccl(&'a RawNccl),
}

/// The buffers of a call.
enum Bufs<'a, T> {
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
    fn raw(&self, stream: &CudaStream) -> Result<(u64, u64, usize), String> {
        Ok(match self {
            Bufs::Sym(t, n) => {
                let v = t.view().map_err(|e| e.to_string())?;
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
        })
    }
}

/// Enqueues one call; `Some(work)` for inc calls outside a capture.
fn enqueue<T: Element + DeviceRepr>(
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
            let (ip, op_, count) = b.raw(stream)?;
            // SAFETY: both addresses hold `count` elements of T on this rank's device
            // (slices or NCCL windows owned by the caller), which outlive every use: the
            // bench synchronises the stream before releasing them.
            unsafe { n.all_reduce(ip, op_, count, T::DTYPE, op, stream) }?;
            Ok(None)
        }
        (Target::Inc { .. } | Target::IncSym { .. }, _) => {
            Err("inc's calls take cudarc slices or a symmetric tensor".into())
        }
    }
}

/// Uploads `src` to `dst` on `stream`.
fn upload<T: DeviceRepr>(dst: u64, src: &[T], stream: &CudaStream) -> Result<(), String> {
    // SAFETY: dst holds at least src.len() elements of T (the caller's buffer of this
    // size); src stays borrowed until the stream is synchronised below.
    unsafe { cudarc::driver::result::memcpy_htod_async(dst, src, stream.cu_stream()) }
        .and_then(|()| stream.synchronize())
        .map_err(|e| format!("upload: {e}"))
}

/// Sets `bytes` bytes at `dst` to 0xFF (NaN in bf16, f16 and f32) on `stream`.
fn poison(dst: u64, bytes: usize, stream: &CudaStream) -> Result<(), String> {
    // SAFETY: dst is a device buffer of at least `bytes` bytes on stream's device.
    let r = unsafe { cudarc::driver::sys::cuMemsetD8Async(dst, 0xFF, bytes, stream.cu_stream()) };
    if r == cudarc::driver::sys::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(format!("cuMemsetD8Async: {r:?}"))
    }
}

/// Copies `dst.len()` elements at `src` back and waits for them.
fn download<T: DeviceRepr>(dst: &mut [T], src: u64, stream: &CudaStream) -> Result<(), String> {
    // SAFETY: src holds at least dst.len() elements of T; the stream is synchronised
    // before dst is read or released.
    unsafe { cudarc::driver::result::memcpy_dtoh_async(dst, src, stream.cu_stream()) }
        .and_then(|()| stream.synchronize())
        .map_err(|e| format!("download: {e}"))
}

/// Waits for `ev` with a deadline (a hung peer cannot hang the bench).
fn wait_event(ev: &CudaEvent, timeout: Duration) -> Result<(), String> {
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
fn capture<T: Element + DeviceRepr>(
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

/// One rank's device state shared by every point.
struct RankState<'a, T> {
    plan: &'a Plan,
    stream: Arc<CudaStream>,
    start: CudaEvent,
    end: CudaEvent,
    /// The control communicator whose 16-element call lines the ranks up.
    sync: Option<&'a Comm>,
    sync_in: CudaSlice<T>,
    sync_out: CudaSlice<T>,
    host_in: Vec<T>,
    expected: Vec<T>,
    host_out: Vec<T>,
}

impl<T: Element + DeviceRepr> RankState<'_, T> {
    /// Times one (column, size, mode): local times (µs per call) and #wrong.
    fn point(
        &mut self,
        target: Target<'_>,
        bufs: &mut Bufs<'_, T>,
        mode: Mode,
    ) -> Result<(Vec<f32>, u64), String> {
        let plan = self.plan;
        let stream = self.stream.clone();
        let (ip, op, n) = bufs.raw(&stream)?;
        let calls = calls_per_timing(mode, plan.graph_calls);
        let bytes = n * std::mem::size_of::<T>();
        // In place (a symmetric tensor), repeated calls reduce their own results: one
        // checked call first, then the timed ones unchecked.
        let in_place = ip == op;
        let mut wrong = 0u64;
        if in_place {
            let src = self.host_in.get(..n).ok_or("pattern out of range")?;
            upload(ip, src, &stream)?;
            if let Some(w) = enqueue(target, bufs, plan.op, &stream)? {
                w.wait().map_err(|e| e.to_string())?;
            }
            let out = self.host_out.get_mut(..n).ok_or("output out of range")?;
            download(out, op, &stream)?;
            let want = self.expected.get(..n).ok_or("reference out of range")?;
            wrong = count_wrong_bits(out, want);
        }
        let graph = match mode {
            Mode::Graph => Some(capture(target, bufs, plan.op, &stream, calls)?),
            Mode::Eager => None,
        };
        let mut times = Vec::with_capacity(plan.iters);
        let mut host_us: Vec<f64> = Vec::new();
        for rep in 0..plan.warmup + plan.iters {
            let off = rep_offset(rep);
            let src = self
                .host_in
                .get(off..off + n)
                .ok_or("pattern out of range")?;
            upload(ip, src, &stream)?;
            if !in_place {
                poison(op, bytes, &stream)?;
            }
            let sync = match self.sync {
                Some(c) => Some(
                    c.allreduce_out(&self.sync_in, &mut self.sync_out, ReduceOp::Sum, &stream)
                        .map_err(|e| format!("lining up the ranks: {e}"))?,
                ),
                None => None,
            };
            self.start
                .record(&stream)
                .map_err(|e| format!("cuEventRecord: {e}"))?;
            let work = match &graph {
                Some(g) => {
                    g.launch().map_err(|e| format!("cuGraphLaunch: {e}"))?;
                    None
                }
                None => {
                    let h0 = std::time::Instant::now();
                    let w = enqueue(target, bufs, plan.op, &stream)?;
                    if rep >= plan.warmup {
                        host_us.push(h0.elapsed().as_secs_f64() * 1e6);
                    }
                    w
                }
            };
            self.end
                .record(&stream)
                .map_err(|e| format!("cuEventRecord: {e}"))?;
            wait_event(&self.end, plan.opts.timeout)?;
            if let Some(w) = sync {
                w.wait().map_err(|e| format!("lining up the ranks: {e}"))?;
            }
            if let Some(w) = work {
                w.wait().map_err(|e| e.to_string())?;
            }
            if let (Some(_), Target::Inc { comm, .. } | Target::IncSym { comm, .. }) =
                (&graph, target)
            {
                comm.check().map_err(|e| e.to_string())?;
            }
            let ms = self
                .start
                .elapsed_ms(&self.end)
                .map_err(|e| format!("cuEventElapsedTime: {e}"))?;
            if !in_place {
                let out = self.host_out.get_mut(..n).ok_or("output out of range")?;
                download(out, op, &stream)?;
                let want = self
                    .expected
                    .get(off..off + n)
                    .ok_or("reference out of range")?;
                wrong = wrong.saturating_add(count_wrong_bits(out, want));
            }
            if rep >= plan.warmup {
                times.push(per_call_us(ms, calls) as f32);
            }
        }
        drop(graph);
        if !host_us.is_empty() {
            // CPU time of one eager call (validation, selection, launch, event record).
            host_us.sort_by(f64::total_cmp);
            let who = match target {
                Target::Inc { path, .. } => path.map_or("auto", |p| p.name()),
                Target::IncSym { path, .. } => path.map_or("zero-copy", |p| p.name()),
                Target::Nccl(_) => "nccl",
            };
            eprintln!(
                "# host time per eager call: {who} {bytes} B: median {:.2} us",
                host_us[host_us.len() / 2]
            );
        }
        stream
            .synchronize()
            .map_err(|e| format!("cuStreamSynchronize: {e}"))?;
        Ok((times, wrong))
    }
}

/// Runs the plan on GPUs; rank 0 gets the report.
pub(crate) fn run(plan: &Plan) -> Result<Option<Report>, String> {
    if inc_comm::cuda_device_count() == 0 {
        return Err(no_gpu());
    }
    match plan.dtype {
        DType::Bf16 => run_typed::<bf16>(plan),
        DType::F16 => run_typed::<f16>(plan),
        DType::F32 => run_typed::<f32>(plan),
    }
}

/// Options of the control (lining-up) communicator.
fn sync_opts(plan: &Plan) -> CommOptions {
    plan.opts
        .clone()
        .with_algo(AlgoChoice::Auto)
        .with_buffer_bytes(Some(SYNC_BUFFER_BYTES))
        .with_tune_file(None)
}

fn run_typed<T: Element + DeviceRepr + ValidAsZeroBits>(
    plan: &Plan,
) -> Result<Option<Report>, String> {
    let gpus = inc_comm::cuda_device_count();
    match plan.launch {
        Launch::Threads(n) => {
            let layout = thread_layout(n, gpus)?;
            let mut plan = plan.clone();
            plan.opts.allow_shared_device |= layout.virtual_ranks;
            let plan = &plan;
            let sync =
                Comm::init_threads(&layout.devices, sync_opts(plan)).map_err(|e| e.to_string())?;
            let ranks = thread_series_comms(plan, &layout.devices, n)?;
            let store: Arc<dyn Store> = Arc::new(MemStore::new());
            std::thread::scope(|s| {
                let handles: Vec<_> = sync
                    .iter()
                    .zip(&ranks)
                    .enumerate()
                    .map(|(rank, (c, mine))| {
                        let ctrl = Ctrl {
                            store: store.clone(),
                            rank,
                            world: n,
                            timeout: plan.opts.timeout,
                        };
                        s.spawn(move || rank_main::<T>(plan, &ctrl, c, mine, gpus))
                    })
                    .collect();
                join_ranks(handles)
            })
        }
        Launch::Env => {
            let env =
                TorchrunEnv::from_lookup(|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
            let mut plan = plan.clone();
            plan.opts.allow_shared_device |= env.world > gpus;
            let plan = &plan;
            let store = connect_env_store(plan, &env)?;
            let sync = Comm::from_env_with(sync_opts(plan)).map_err(|e| e.to_string())?;
            let mut comms = Vec::with_capacity(plan.specs.len());
            for spec in &plan.specs {
                comms.push(
                    Comm::from_env_with(series_opts(plan, spec))
                        .map_err(|e| format!("{}: {e}", spec.name))?,
                );
            }
            let ctrl = Ctrl {
                store,
                rank: env.rank,
                world: env.world,
                timeout: plan.opts.timeout,
            };
            rank_main::<T>(plan, &ctrl, &sync, &comms, gpus)
        }
    }
}

/// One rank's whole run; on error every communicator is aborted so peers fail fast.
fn rank_main<T: Element + DeviceRepr + ValidAsZeroBits>(
    plan: &Plan,
    ctrl: &Ctrl,
    sync: &Comm,
    comms: &[Comm],
    gpus: usize,
) -> Result<Option<Report>, String> {
    let res = rank_inner::<T>(plan, ctrl, sync, comms, gpus);
    if let Err(e) = &res {
        sync.abort(e);
        for c in comms {
            c.abort(e);
        }
    }
    res
}

/// Whether an inc column runs at `bytes`, with the path it takes; else why not.
fn inc_fit(comm: &Comm, which: Which, bytes: u64, dtype: DType) -> Result<Path, String> {
    let path = match which {
        Which::Path(p) | Which::Symmetric(Some(p)) => p,
        Which::Auto | Which::Symmetric(None) | Which::Registered => {
            comm.select_algo(bytes, dtype).path
        }
    };
    comm.check_path(path, bytes, dtype)
        .map(|()| path)
        .map_err(|e| {
            // The selector's reason is the more telling one (e.g. hcm needs 8 GPUs).
            let why = comm
                .select_algo(bytes, dtype)
                .fallback
                .map_or_else(|| e.to_string(), |f| f.to_string());
            match which {
                Which::Auto | Which::Symmetric(None) | Which::Registered => {
                    format!("auto takes {path}: {why}")
                }
                Which::Path(_) | Which::Symmetric(Some(_)) => why,
            }
        })
}

fn rank_inner<T: Element + DeviceRepr + ValidAsZeroBits>(
    plan: &Plan,
    ctrl: &Ctrl,
    sync: &Comm,
    comms: &[Comm],
    gpus: usize,
) -> Result<Option<Report>, String> {
    let rank = sync.rank();
    let world = sync.world();
    let ctx = sync
        .cuda_context()
        .ok_or("the cuda backend has no CUDA context")?
        .clone();
    for c in std::iter::once(sync).chain(comms) {
        if let Some(cx) = c.cuda_context() {
            // SAFETY: every use of the bench's buffers is ordered on one stream with
            // explicit synchronisation (graph capture needs tracking off, as with any
            // cudarc capture).
            unsafe { cx.disable_event_tracking() };
        }
    }
    let stream = ctx
        .new_stream()
        .map_err(|e| format!("cuStreamCreate: {e}"))?;
    let ev = || {
        ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| format!("cuEventCreate: {e}"))
    };
    let elem = plan.dtype.size() as u64;
    let max_bytes = plan.sizes.iter().copied().max().unwrap_or(elem);
    let max_elems = usize::try_from(max_bytes / elem)
        .map_err(|_| format!("{max_bytes} bytes do not fit this machine's memory"))?;
    let table = expected_table::<T>(world, plan.op)?;
    let sync_in = stream
        .clone_htod(&vec![T::from_f32(1.0); SYNC_ELEMS])
        .map_err(|e| format!("alloc: {e}"))?;
    let sync_out = stream
        .alloc_zeros::<T>(SYNC_ELEMS)
        .map_err(|e| format!("alloc: {e}"))?;
    let mut st = RankState {
        plan,
        stream: stream.clone(),
        start: ev()?,
        end: ev()?,
        sync: Some(sync),
        sync_in,
        sync_out,
        host_in: pattern_buffer::<T>(rank, max_elems),
        expected: expected_buffer(&table, max_elems),
        host_out: vec![T::from_f32(0.0); max_elems],
    };
    let virtual_ranks = sync.ranks_on_device() > 1;
    let nccl_version = if plan.compare_nccl {
        inc_comm::nccl::probe()
    } else {
        Err("not asked".into())
    };
    let mut cols = columns(plan, virtual_ranks, &nccl_version);

    // inc's NCCL communicator is created on first use: do it now, eagerly (never inside
    // a graph capture). Its creation is collective and agreed.
    if cols.iter().any(|c| c.kind == ColKind::Nccl) {
        let mut o = stream
            .alloc_zeros::<T>(SYNC_ELEMS)
            .map_err(|e| format!("alloc: {e}"))?;
        let r = sync
            .allreduce_using(
                Path::Nccl,
                Some(&st.sync_in),
                &mut o,
                ReduceOp::Sum,
                &stream,
            )
            .and_then(|w| w.wait())
            .map_err(|e| e.to_string());
        if let Err(e) = r {
            na(&mut cols, &ColKind::Nccl, &e);
        }
    }
    // nccl-symm: the bench's own NCCL communicator and registered windows (collective).
    let raw = if cols.iter().any(|c| c.kind == ColKind::NcclSymm) {
        match RawNccl::create(rank, world, &ctx, |m| ctrl.gather("nccl-id", m)) {
            Ok(r) => Some(r),
            Err(e) => {
                na(&mut cols, &ColKind::NcclSymm, &e);
                None
            }
        }
    } else {
        None
    };
    let max_usize = usize::try_from(max_bytes).map_err(|_| "size too large".to_string())?;
    let symm: Option<SymmBuffers<'_>> = match &raw {
        Some(r) => {
            let s = r.symmetric(max_usize);
            let verdict = ctrl.agree("nccl-symm", s.as_ref().map(|_| ()).map_err(Clone::clone));
            match (s, verdict) {
                (Ok(s), Ok(())) => Some(s),
                (_, Err(e)) | (Err(e), _) => {
                    na(&mut cols, &ColKind::NcclSymm, &e);
                    None
                }
            }
        }
        None => None,
    };

    // One symmetric tensor of the largest size per zero-copy column (collective, in the
    // same order on every rank).
    let mut sym: Vec<Option<SymmetricTensor<T>>> = Vec::new();
    for (spec, comm) in plan.specs.iter().zip(comms) {
        sym.push(match spec.which {
            Which::Symmetric(_) => Some(
                comm.alloc_symmetric::<T>(max_elems.max(1))
                    .map_err(|e| format!("symmetric tensor of {max_bytes} B: {e}"))?,
            ),
            Which::Registered => Some(registered::<T>(comm, max_elems.max(1))?),
            _ => None,
        });
    }
    let mut series: Vec<Series> = cols
        .iter()
        .map(|c| Series::new(&c.name, c.source, c.mode))
        .collect();
    for (si, &bytes) in plan.sizes.iter().enumerate() {
        let n = usize::try_from(bytes / elem)
            .unwrap_or(usize::MAX)
            .min(max_elems);
        let input = stream
            .alloc_zeros::<T>(n.max(1))
            .map_err(|e| format!("alloc of {bytes} B: {e}"))?;
        let mut output = stream
            .alloc_zeros::<T>(n.max(1))
            .map_err(|e| format!("alloc of {bytes} B: {e}"))?;
        for (ci, col) in cols.iter().enumerate() {
            let sample = match &col.kind {
                ColKind::Na(why) => na_sample(why),
                ColKind::Floor { .. } => Sample::default(), // rank 0 measures it below
                ColKind::Inc(k) => {
                    let (spec, comm) = plan
                        .specs
                        .get(*k)
                        .zip(comms.get(*k))
                        .ok_or("column without a communicator")?;
                    match inc_fit(comm, spec.which, bytes, plan.dtype) {
                        Err(why) => na_sample(&why),
                        Ok(path) => {
                            let r = match (spec.which, sym.get_mut(*k)) {
                                (Which::Symmetric(p), Some(Some(t))) => st.point(
                                    Target::IncSym { comm, path: p },
                                    &mut Bufs::Sym(t, n),
                                    col.mode,
                                ),
                                (Which::Registered, Some(Some(t))) => st.point(
                                    Target::IncSym { comm, path: None },
                                    &mut Bufs::Sym(t, n),
                                    col.mode,
                                ),
                                (Which::Symmetric(_) | Which::Registered, _) => {
                                    Err("no symmetric tensor for this column".to_string())
                                }
                                (which, _) => st.point(
                                    Target::Inc {
                                        comm,
                                        path: match which {
                                            Which::Path(p) => Some(p),
                                            _ => None,
                                        },
                                    },
                                    &mut Bufs::Slices(&input, &mut output),
                                    col.mode,
                                ),
                            };
                            let mut s = gathered(ctrl, &format!("p{si}/{ci}"), r, col, bytes)?;
                            if matches!(
                                spec.which,
                                Which::Auto | Which::Symmetric(None) | Which::Registered
                            ) {
                                s.path = Some(path.name().to_string());
                            }
                            s
                        }
                    }
                }
                ColKind::Nccl => match sync.check_path(Path::Nccl, bytes, plan.dtype) {
                    Err(e) => na_sample(&e.to_string()),
                    Ok(()) => {
                        let target = Target::Inc {
                            comm: sync,
                            path: Some(Path::Nccl),
                        };
                        let r = st.point(target, &mut Bufs::Slices(&input, &mut output), col.mode);
                        gathered(ctrl, &format!("p{si}/{ci}"), r, col, bytes)?
                    }
                },
                ColKind::NcclSymm => match (&raw, &symm) {
                    (Some(r), Some(b)) => {
                        let mut bufs = Bufs::Raw {
                            input: b.input(),
                            output: b.output(),
                            count: n,
                        };
                        let res = st.point(Target::Nccl(r), &mut bufs, col.mode);
                        gathered(ctrl, &format!("p{si}/{ci}"), res, col, bytes)?
                    }
                    _ => na_sample("NCCL symmetric buffers are unavailable"),
                },
            };
            if let Some(s) = series.get_mut(ci) {
                s.samples.push(sample);
            }
        }
        stream
            .synchronize()
            .map_err(|e| format!("cuStreamSynchronize: {e}"))?;
    }
    drop(symm);
    drop(raw);
    if rank != 0 {
        return Ok(None);
    }
    if cols.iter().any(|c| matches!(c.kind, ColKind::Floor { .. })) {
        floors::<T>(plan, &ctx, &mut st, &cols, &mut series, max_elems)?;
    }
    let mut notes = vec![format!(
        "{world} rank(s) as {} on {} GPU(s); each rank times its calls with CUDA events \
         on its own stream, a repetition counts the slowest rank",
        match plan.launch {
            Launch::Threads(_) => "threads of one process",
            Launch::Env => "processes (inc launch)",
        },
        gpus.min(world)
    )];
    if virtual_ranks {
        notes.push(format!(
            "virtual ranks on one GPU: not an NVLink number ({world} ranks share {} GPU(s): \
             their kernels run side by side on one device and 'peer' traffic is local memory)",
            gpus.min(world)
        ));
        if plan.launch == Launch::Env {
            notes.push(
                "processes sharing a GPU are time-sliced by the driver (no MPS): a call that \
                 waits for a peer in another process waits for the next time slice (ms), so \
                 these times measure the scheduler, not inc; use --threads for virtual ranks"
                    .into(),
            );
        }
    }
    notes.push(
        "before each timed region an untimed 16-element inc allreduce lines the ranks up on \
         the GPU; the output is reset to NaN and checked element by element every repetition"
            .into(),
    );
    if let Ok(v) = &nccl_version {
        notes.push(format!("NCCL {}", nccl_raw::version_text(*v)));
    }
    notes.push(format!(
        "inc device memory per rank and communicator: {:.1} MiB (signal pad, two symmetric \
         halves, push region; INC_BUFFER_BYTES sets a half)",
        sync.device_bytes() as f64 / (1 << 20) as f64
    ));
    if series.iter().any(|s| s.name == FLOOR) {
        notes.push(format!(
            "{FLOOR} / {FLOOR_SYMM}: NCCL with ONE rank on GPU 0 (no peer, no link): a floor \
             for NCCL's cost per call, measured because NCCL refuses virtual ranks; ratio = \
             that floor / best inc time"
        ));
    }
    notes.extend(plan.notes.iter().cloned());
    let device = ctx.name().map_err(|e| format!("cuDeviceGetName: {e}"))?;
    Ok(Some(Report {
        backend: "cuda".into(),
        device,
        driver: driver_version(),
        topology: sync.topology().name().to_string(),
        world,
        dtype: plan.dtype,
        op: plan.op,
        iters: plan.iters,
        warmup: plan.warmup,
        graph_calls: plan.graph_calls,
        sizes: plan.sizes.clone(),
        series,
        notes,
    }))
}

/// A `cuMemAlloc` buffer of `len` elements (64 bytes into its allocation) registered as a
/// symmetric tensor. The allocation is never freed: peers map it until the communicator's
/// shutdown, which comes after this bench run (the process exits soon after).
fn registered<T: Element + DeviceRepr>(
    comm: &Comm,
    len: usize,
) -> Result<SymmetricTensor<T>, String> {
    let ctx = comm.cuda_context().ok_or("no CUDA context")?;
    ctx.bind_to_thread()
        .map_err(|e| format!("cuCtxSetCurrent: {e}"))?;
    let bytes = len * std::mem::size_of::<T>() + 64;
    // SAFETY: the context is current (bound above).
    let raw = unsafe { cudarc::driver::result::malloc_sync(bytes) }
        .map_err(|e| format!("cuMemAlloc of {bytes} B: {e}"))?;
    // SAFETY: [raw + 64, raw + bytes) is a live cuMemAlloc allocation of this device, never
    // freed (see above), written only through the tensor.
    unsafe { comm.register_symmetric::<T>(raw + 64, len) }
        .map_err(|e| format!("registering {bytes} B: {e}"))
}

fn na_sample(why: &str) -> Sample {
    Sample {
        note: Some(why.to_string()),
        ..Sample::default()
    }
}

/// Turns every column of `kind` into n/a with `why`.
fn na(cols: &mut [Col], kind: &ColKind, why: &str) {
    for c in cols.iter_mut().filter(|c| &c.kind == kind) {
        c.kind = ColKind::Na(why.to_string());
    }
}

/// Gathers one point from every rank into a sample (the same verdict everywhere).
fn gathered(
    ctrl: &Ctrl,
    key: &str,
    local: Result<(Vec<f32>, u64), String>,
    col: &Col,
    bytes: u64,
) -> Result<Sample, String> {
    let all = ctrl.gather(key, &encode_point(&local))?;
    let (times, wrong) = combine_points(&all)
        .map_err(|e| format!("{} at {bytes} B ({}): {e}", col.name, col.mode.name()))?;
    Ok(Sample {
        time_us: median(&times),
        wrong,
        path: None,
        note: None,
    })
}

/// Rank 0 alone: NCCL with one rank on its GPU, every size, into the floor columns.
fn floors<T: Element + DeviceRepr + ValidAsZeroBits>(
    plan: &Plan,
    ctx: &Arc<CudaContext>,
    st: &mut RankState<'_, T>,
    cols: &[Col],
    series: &mut [Series],
    max_elems: usize,
) -> Result<(), String> {
    let set_all = |series: &mut [Series], symm: Option<bool>, why: &str| {
        for (c, s) in cols.iter().zip(series.iter_mut()) {
            if matches!(c.kind, ColKind::Floor { symm: x } if symm.is_none_or(|y| y == x)) {
                for smp in &mut s.samples {
                    *smp = na_sample(why);
                }
            }
        }
    };
    let raw = match RawNccl::create(0, 1, ctx, |m| Ok(vec![m.to_vec()])) {
        Ok(r) => r,
        Err(e) => {
            set_all(series, None, &e);
            return Ok(());
        }
    };
    let max_bytes = max_elems * std::mem::size_of::<T>();
    let symm = if cols.iter().any(|c| c.kind == ColKind::Floor { symm: true }) {
        match raw.symmetric(max_bytes.max(1)) {
            Ok(s) => Some(s),
            Err(e) => {
                set_all(series, Some(true), &e);
                None
            }
        }
    } else {
        None
    };
    // World 1: the output is the input.
    let table = expected_table::<T>(1, plan.op)?;
    st.expected = expected_buffer(&table, max_elems);
    st.host_in = pattern_buffer::<T>(0, max_elems);
    st.sync = None;
    let elem = plan.dtype.size() as u64;
    for (si, &bytes) in plan.sizes.iter().enumerate() {
        let n = usize::try_from(bytes / elem)
            .unwrap_or(usize::MAX)
            .min(max_elems);
        let input = st
            .stream
            .alloc_zeros::<T>(n.max(1))
            .map_err(|e| format!("alloc of {bytes} B: {e}"))?;
        let mut output = st
            .stream
            .alloc_zeros::<T>(n.max(1))
            .map_err(|e| format!("alloc of {bytes} B: {e}"))?;
        for (ci, c) in cols.iter().enumerate() {
            let ColKind::Floor { symm: want_symm } = c.kind else {
                continue;
            };
            let r = match (&symm, want_symm) {
                (_, false) => st.point(
                    Target::Nccl(&raw),
                    &mut Bufs::Slices(&input, &mut output),
                    c.mode,
                ),
                (Some(b), true) => {
                    let mut bufs = Bufs::Raw {
                        input: b.input(),
                        output: b.output(),
                        count: n,
                    };
                    st.point(Target::Nccl(&raw), &mut bufs, c.mode)
                }
                (None, true) => continue,
            };
            let (times, wrong) = r.map_err(|e| format!("{} at {bytes} B: {e}", c.name))?;
            if let Some(smp) = series.get_mut(ci).and_then(|s| s.samples.get_mut(si)) {
                *smp = Sample {
                    time_us: median(&times.iter().map(|t| f64::from(*t)).collect::<Vec<_>>()),
                    wrong,
                    path: None,
                    note: None,
                };
            }
        }
        st.stream
            .synchronize()
            .map_err(|e| format!("cuStreamSynchronize: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{parse_algos, Launch};
    use super::*;

    fn plan(compare: bool, modes: Vec<Mode>) -> Plan {
        Plan {
            specs: parse_algos("auto,one-shot,two-shot").unwrap(),
            compare_nccl: compare,
            modes,
            dtype: DType::Bf16,
            op: ReduceOp::Sum,
            sizes: vec![1024, 2048],
            iters: 3,
            warmup: 1,
            graph_calls: 50,
            opts: CommOptions::default(),
            launch: Launch::Threads(2),
            notes: vec![],
        }
    }

    #[test]
    fn layout_uses_a_gpu_per_rank_else_virtual_ranks() {
        assert!(thread_layout(2, 0).is_err());
        assert_eq!(
            thread_layout(2, 8).unwrap(),
            Layout {
                devices: vec![0, 1],
                virtual_ranks: false
            }
        );
        assert_eq!(
            thread_layout(3, 2).unwrap(),
            Layout {
                devices: vec![0, 1, 0],
                virtual_ranks: true
            }
        );
        assert!(thread_layout(2, 1).unwrap().virtual_ranks);
    }

    #[test]
    fn columns_without_compare_are_the_specs_per_mode() {
        let p = plan(false, vec![Mode::Graph, Mode::Eager]);
        let c = columns(&p, true, &Ok(22703));
        assert_eq!(c.len(), 6);
        assert!(c.iter().all(|c| c.source == Source::Inc));
        assert_eq!(c[0].mode, Mode::Graph);
        assert_eq!(c[3].kind, ColKind::Inc(0));
        assert_eq!(c[5].name, "two-shot");
    }

    #[test]
    fn nccl_columns_follow_the_group_and_the_library() {
        let p = plan(true, vec![Mode::Eager]);
        // A GPU per rank, NCCL 2.27: both measured, no floors.
        let c = columns(&p, false, &Ok(22703));
        let kinds: Vec<&ColKind> = c.iter().map(|c| &c.kind).collect();
        assert_eq!(kinds[3..], [&ColKind::Nccl, &ColKind::NcclSymm]);
        // Older NCCL: symm n/a with the version.
        let c = columns(&p, false, &Ok(22106));
        assert!(matches!(&c[4].kind, ColKind::Na(w) if w.contains("2.21.6")));
        assert_eq!(c[3].kind, ColKind::Nccl);
        // No libnccl: both n/a with the reason.
        let c = columns(&p, false, &Err("libnccl not found".into()));
        assert!(c[3..]
            .iter()
            .all(|c| matches!(&c.kind, ColKind::Na(w) if w.contains("libnccl"))));
        // Virtual ranks: n/a (needs a GPU per rank) + the world-1 floors.
        let c = columns(&p, true, &Ok(22703));
        assert_eq!(c.len(), 7);
        assert!(matches!(&c[3].kind, ColKind::Na(w) if w.contains("needs a GPU per rank")));
        assert_eq!(c[5].name, FLOOR);
        assert_eq!(c[5].kind, ColKind::Floor { symm: false });
        assert_eq!(c[6].kind, ColKind::Floor { symm: true });
        assert!(c[3..].iter().all(|c| c.source == Source::Nccl));
        // Virtual ranks, old NCCL: the symmetric floor is n/a.
        let c = columns(&p, true, &Ok(22106));
        assert!(matches!(&c[6].kind, ColKind::Na(_)));
    }

    #[test]
    fn timing_arithmetic() {
        assert_eq!(calls_per_timing(Mode::Eager, 50), 1);
        assert_eq!(calls_per_timing(Mode::Graph, 50), 50);
        assert_eq!(calls_per_timing(Mode::Graph, 0), 1);
        assert!((per_call_us(1.0, 50) - 20.0).abs() < 1e-9);
        assert!((per_call_us(0.004, 1) - 4.0).abs() < 1e-6);
    }

    #[test]
    fn shifted_buffers_equal_the_per_repetition_pattern() {
        let len = 100;
        let base = pattern_buffer::<f32>(3, len);
        let table = expected_table::<f32>(4, ReduceOp::Sum).unwrap();
        let exp = expected_buffer(&table, len);
        for rep in 0..40 {
            let mut v = vec![0f32; len];
            fill(&mut v, 3, rep);
            let off = rep_offset(rep);
            assert_eq!(&base[off..off + len], &v[..], "rep {rep}");
            // The expected window agrees with measure's checker.
            assert_eq!(
                super::super::measure::count_wrong(&exp[off..off + len], &table, rep),
                0
            );
        }
    }

    #[test]
    fn bitwise_checker_counts_each_wrong_element() {
        let want = vec![bf16::from_f32(1.0); 64];
        let mut out = want.clone();
        assert_eq!(count_wrong_bits(&out, &want), 0);
        out[3] = bf16::from_f32(2.0);
        out[60] = bf16::from_bits(0xFFFF); // NaN: the poisoned output
        assert_eq!(count_wrong_bits(&out, &want), 2);
        // -0 and +0 differ in bits.
        let z = vec![0f32; 4];
        let nz = vec![-0f32; 4];
        assert_eq!(count_wrong_bits(&nz, &z), 4);
        assert_eq!(count_wrong_bits(&z[..3], &z), 1);
    }

    #[test]
    fn points_combine_to_the_slowest_rank() {
        let a = encode_point(&Ok((vec![1.0, 5.0, 3.0], 0)));
        let b = encode_point(&Ok((vec![2.0, 4.0, 3.5], 2)));
        let (t, w) = combine_points(&[a.clone(), b]).unwrap();
        assert_eq!(t, vec![2.0, 5.0, 3.5]);
        assert_eq!(w, 2);
        let e = encode_point(&Err("rank 1: timeout".into()));
        assert_eq!(
            combine_points(&[a.clone(), e]).unwrap_err(),
            "rank 1: timeout"
        );
        let short = encode_point(&Ok((vec![1.0], 0)));
        assert!(combine_points(&[a, short]).is_err());
        assert!(combine_points(&[b"ok".to_vec()]).is_err());
    }

    #[test]
    fn driver_version_from_proc() {
        let prop = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.86.15  Thu Jan  2 2025\nGCC version: gcc 12.2\n";
        assert_eq!(parse_nvrm(prop).as_deref(), Some("570.86.15"));
        let open = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  575.51.03  Release Build  (dvs-builder@U16)  Wed";
        assert_eq!(parse_nvrm(open).as_deref(), Some("575.51.03"));
        assert_eq!(parse_nvrm("garbage"), None);
        assert_eq!(parse_nvrm(""), None);
    }
}
