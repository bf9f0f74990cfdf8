//! `inc soak [--calls N] [--max-bytes B] [--seed S] [--threads N]`: many back-to-back
//! allreduces on the GPUs mixing sizes (1 element .. B bytes, odd sizes), dtypes, ops and
//! paths (auto and every intra-node path the group allows), in eager batches and in
//! batches captured into a CUDA graph; every call's output is checked against the CPU
//! reference (rank-order f32 fold) at its first and last element and at 62 random ones.
//! One process per GPU under `inc launch`, or ranks as threads (`--threads`).
//!
//! Every rank draws the same sequence of calls from the seed; inputs are a deterministic
//! function of (seed, rank, call, element), so every rank checks its own output locally.
//! Exit status: 0 when every checked element matched, 1 otherwise (or on any error).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaSlice, CudaStream, DeviceRepr};
use half::{bf16, f16};
use inc_comm::{AlgoPath as Path, BackendKind, Comm, CommOptions, DType, Element, ReduceOp, Work};
use inc_sim::cpu::reference_allreduce;

/// Arguments of `inc soak`.
#[derive(clap::Args)]
pub struct Args {
    /// Allreduce calls in all (every rank makes the same calls).
    #[arg(long, default_value_t = 100_000)]
    pub calls: u64,
    /// Largest call in bytes per rank.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_bytes: usize,
    /// Seed of the call sequence and of the inputs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Calls per batch (each batch is eager or one CUDA graph, then checked).
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Ranks as threads of this process (not under `inc launch`).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// Checked elements per call besides the first and the last.
const SAMPLES: usize = 62;

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Input element `i` of `rank` in call `call`: k/8 with |k| < 128, exact in every dtype.
fn input(seed: u64, rank: usize, call: u64, i: usize) -> f32 {
    let h = mix(seed ^ mix(call ^ ((rank as u64) << 48)) ^ (i as u64).wrapping_mul(0x9e37));
    ((h % 255) as f32 - 127.0) / 8.0
}

/// One call of the sequence.
#[derive(Clone, Copy, Debug)]
struct Call {
    index: u64,
    dtype: DType,
    op: ReduceOp,
    /// `None` = auto.
    path: Option<Path>,
    n: usize,
}

fn draw(seed: u64, index: u64, paths: &[Path], max_bytes: usize) -> Call {
    let h = mix(seed.wrapping_mul(31) ^ index);
    let dtype = DType::ALL[(h % 3) as usize];
    let op = ReduceOp::ALL[((h >> 8) % 4) as usize];
    let k = ((h >> 16) % (paths.len() as u64 + 2)) as usize;
    let path = paths.get(k).copied();
    let max_n = (max_bytes / dtype.size()).max(1);
    // log-uniform in 1..=max_n, with exact 1 and max_n now and then
    let u = ((h >> 24) % 1_000_000) as f64 / 1_000_000.0;
    let n = match (h >> 44) % 16 {
        0 => 1,
        1 => max_n,
        _ => ((max_n as f64).powf(u) as usize).clamp(1, max_n),
    };
    Call {
        index,
        dtype,
        op,
        path,
        n,
    }
}

fn sample_indices(seed: u64, c: &Call) -> Vec<usize> {
    let mut v = vec![0, c.n - 1];
    for j in 0..SAMPLES as u64 {
        v.push((mix(seed ^ c.index.wrapping_mul(7919) ^ j) % c.n as u64) as usize);
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Elements of `want` (reference bytes at the sampled indices) that differ from `got`.
fn wrong_at<T: Element>(got: &[T], idx: &[usize], want: &[u8]) -> usize {
    idx.iter()
        .enumerate()
        .filter(|(j, &i)| {
            let w = &want[j * std::mem::size_of::<T>()..(j + 1) * std::mem::size_of::<T>()];
            got.get(i).map(bytemuck::bytes_of) != Some(w)
        })
        .count()
}

struct Rank {
    comm: Comm,
    stream: Arc<CudaStream>,
    paths: Vec<Path>,
}

enum Buf {
    B(CudaSlice<bf16>),
    H(CudaSlice<f16>),
    F(CudaSlice<f32>),
}

fn upload<T: Element + DeviceRepr>(
    s: &Arc<CudaStream>,
    seed: u64,
    rank: usize,
    c: &Call,
) -> Result<CudaSlice<T>, String> {
    let host: Vec<T> = (0..c.n)
        .map(|i| T::from_f32(input(seed, rank, c.index, i)))
        .collect();
    s.clone_htod(&host).map_err(|e| format!("upload: {e}"))
}

fn enqueue<T: Element + DeviceRepr>(
    r: &Rank,
    c: &Call,
    x: &mut CudaSlice<T>,
) -> Result<Work, String> {
    match c.path {
        Some(p) => r.comm.allreduce_using(p, None, x, c.op, &r.stream),
        None => r.comm.allreduce(x, c.op, &r.stream),
    }
    .map_err(|e| format!("call {} ({:?}): {e}", c.index, c))
}

fn check<T: Element + DeviceRepr>(
    r: &Rank,
    seed: u64,
    c: &Call,
    x: &CudaSlice<T>,
) -> Result<(usize, usize), String> {
    let got: Vec<T> = r
        .stream
        .clone_dtoh(x)
        .map_err(|e| format!("download: {e}"))?;
    let idx = sample_indices(seed, c);
    let world = r.comm.world();
    let per_rank: Vec<Vec<u8>> = (0..world)
        .map(|q| {
            idx.iter()
                .flat_map(|&i| {
                    bytemuck::bytes_of(&T::from_f32(input(seed, q, c.index, i))).to_vec()
                })
                .collect()
        })
        .collect();
    let views: Vec<&[u8]> = per_rank.iter().map(|v| v.as_slice()).collect();
    let want = reference_allreduce(inc_sim::Algo::OneShot, c.dtype, c.op, &views, None)
        .map_err(|e| format!("reference: {e}"))?;
    Ok((idx.len(), wrong_at(&got, &idx, &want)))
}

/// Runs the whole soak on one rank; returns (calls, checked elements, wrong elements).
fn run_rank(r: &Rank, args: &Args) -> Result<(u64, u64, u64), String> {
    let rank = r.comm.rank();
    let mut done = 0u64;
    let (mut checked, mut wrong) = (0u64, 0u64);
    let mut batch_no = 0u64;
    let t0 = Instant::now();
    while done < args.calls {
        let k = (args.calls - done).min(args.batch as u64);
        // A pinned path that cannot take the call (e.g. over the LL capacity) becomes
        // auto; every rank decides the same.
        let calls: Vec<Call> = (done..done + k)
            .map(|i| {
                let mut c = draw(args.seed, i, &r.paths, args.max_bytes);
                if let Some(p) = c.path {
                    let bytes = (c.n * c.dtype.size()) as u64;
                    if r.comm.check_path(p, bytes, c.dtype).is_err() {
                        c.path = None;
                    }
                }
                c
            })
            .collect();
        let mut bufs = Vec::with_capacity(calls.len());
        for c in &calls {
            bufs.push(match c.dtype {
                DType::Bf16 => Buf::B(upload(&r.stream, args.seed, rank, c)?),
                DType::F16 => Buf::H(upload(&r.stream, args.seed, rank, c)?),
                DType::F32 => Buf::F(upload(&r.stream, args.seed, rank, c)?),
            });
        }
        let graph = batch_no % 2 == 1;
        if graph {
            r.stream
                .synchronize()
                .and_then(|()| {
                    r.stream
                        .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                })
                .map_err(|e| format!("cuStreamBeginCapture: {e}"))?;
        }
        let mut res = Ok(());
        let mut works = Vec::new();
        for (c, b) in calls.iter().zip(bufs.iter_mut()) {
            let w = match b {
                Buf::B(x) => enqueue(r, c, x),
                Buf::H(x) => enqueue(r, c, x),
                Buf::F(x) => enqueue(r, c, x),
            };
            match w {
                Ok(w) => works.push(w),
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        if graph {
            let g = r.stream.end_capture(CUgraphInstantiate_flags(0));
            res?;
            let g = g
                .map_err(|e| format!("cuStreamEndCapture: {e}"))?
                .ok_or("the captured graph is empty")?;
            g.launch().map_err(|e| format!("cuGraphLaunch: {e}"))?;
            r.stream
                .synchronize()
                .map_err(|e| format!("synchronize: {e}"))?;
            r.comm.check().map_err(|e| format!("after graph: {e}"))?;
        } else {
            res?;
            for w in works {
                w.wait().map_err(|e| format!("wait: {e}"))?;
            }
        }
        for (c, b) in calls.iter().zip(&bufs) {
            let (n, bad) = match b {
                Buf::B(x) => check(r, args.seed, c, x)?,
                Buf::H(x) => check(r, args.seed, c, x)?,
                Buf::F(x) => check(r, args.seed, c, x)?,
            };
            checked += n as u64;
            if bad > 0 && wrong == 0 {
                eprintln!("rank {rank}: call {c:?}: {bad} wrong element(s)");
            }
            wrong += bad as u64;
        }
        done += k;
        batch_no += 1;
        if rank == 0 && (batch_no % 500 == 0 || done == args.calls) {
            println!(
                "soak: {done} calls, {checked} elements checked, {wrong} wrong ({:.1} s)",
                t0.elapsed().as_secs_f64()
            );
        }
    }
    Ok((done, checked, wrong))
}

fn rank_setup(comm: Comm) -> Result<Rank, String> {
    if comm.backend() != BackendKind::Cuda {
        return Err("inc soak needs the cuda backend (GPUs)".into());
    }
    let ctx = comm
        .cuda_context()
        .ok_or("the cuda backend has no CUDA context")?
        .clone();
    // SAFETY: every buffer of the soak is used on one stream with explicit
    // synchronisation (graph capture needs tracking off, as for any cudarc capture).
    unsafe { ctx.disable_event_tracking() };
    let stream = ctx
        .new_stream()
        .map_err(|e| format!("cuStreamCreate: {e}"))?;
    let paths: Vec<Path> = [Path::PushOneShot, Path::OneShot, Path::TwoShot, Path::Hcm]
        .into_iter()
        .filter(|p| comm.check_path(*p, 16, DType::F32).is_ok())
        .collect();
    Ok(Rank {
        comm,
        stream,
        paths,
    })
}

fn report(rank: usize, res: Result<(u64, u64, u64), String>) -> bool {
    match res {
        Ok((calls, checked, 0)) => {
            println!("rank {rank}: PASS: {calls} calls, {checked} elements checked, 0 wrong");
            true
        }
        Ok((calls, checked, wrong)) => {
            println!("rank {rank}: FAIL: {calls} calls, {checked} elements checked, {wrong} wrong");
            false
        }
        Err(e) => {
            println!("rank {rank}: ERROR: {e}");
            false
        }
    }
}

/// Runs `inc soak`.
pub fn run(args: Args) -> ExitCode {
    if args.max_bytes < 4 || args.batch == 0 {
        eprintln!("inc soak: --max-bytes must be at least 4 and --batch at least 1");
        return ExitCode::from(2);
    }
    let mut opts = match CommOptions::from_env() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("inc soak: {e}");
            return ExitCode::from(2);
        }
    };
    opts.backend = BackendKind::Cuda;
    let launched = std::env::var_os("RANK").is_some() && std::env::var_os("WORLD_SIZE").is_some();
    let ok = if launched {
        match Comm::from_env_with(opts).map_err(|e| e.to_string()) {
            Ok(c) => {
                let rank = c.rank();
                report(rank, rank_setup(c).and_then(|r| run_rank(&r, &args)))
            }
            Err(e) => report(0, Err(e)),
        }
    } else {
        let gpus = inc_comm::cuda_device_count();
        if gpus == 0 {
            eprintln!("inc soak: no GPU found");
            return ExitCode::from(2);
        }
        if args.threads > gpus {
            opts.allow_shared_device = true;
        }
        let devices: Vec<usize> = (0..args.threads).map(|r| r % gpus).collect();
        match Comm::init_threads(&devices, opts) {
            Ok(comms) => std::thread::scope(|s| {
                let hs: Vec<_> = comms
                    .into_iter()
                    .map(|c| {
                        let args = &args;
                        s.spawn(move || {
                            let rank = c.rank();
                            report(rank, rank_setup(c).and_then(|r| run_rank(&r, args)))
                        })
                    })
                    .collect();
                // join every rank (no short-circuit), then combine
                let oks: Vec<bool> = hs.into_iter().map(|h| h.join().unwrap_or(false)).collect();
                oks.iter().all(|ok| *ok)
            }),
            Err(e) => report(0, Err(e.to_string())),
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
