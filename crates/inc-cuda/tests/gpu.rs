#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]
//! GPU tests (need an NVIDIA GPU + driver + libnvrtc). All `#[ignore]`; run with
//! `cargo test -p inc-cuda --release --test gpu -- --ignored --test-threads=1`
//! or through the bundle of `cargo xtask gpu-test` (see the crate README).
//!
//! W "virtual ranks" share one GPU: each has its own PeerBuffers and stream, and maps the
//! others' allocations directly; all W x G blocks are co-resident (ranks_on_device = W).
//! Results are compared bit for bit with a CPU reference that folds in the same order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::sys::CUstreamCaptureMode;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr};
use half::{bf16, f16};
use inc_cuda::proto::{ERR_CALL_MISMATCH, ERR_PEER_ABORT, ERR_TIMEOUT};
use inc_cuda::{
    open_device, Algo, CallOptions, CudaError, DType, Kernels, PeerBuffers, Piece, RawCall,
    ReduceOp,
};

mod common;
use common::{gpu, rng};

/// DGX-1 style hybrid cube mesh: quads {0,1,2,3} and {4,5,6,7}, relay r <-> r^4.
const HCM: [[u32; 4]; 8] = [
    [1, 2, 3, 4],
    [0, 2, 3, 5],
    [0, 1, 3, 6],
    [0, 1, 2, 7],
    [5, 6, 7, 0],
    [4, 6, 7, 1],
    [4, 5, 7, 2],
    [4, 5, 6, 3],
];

struct Group {
    ctx: Arc<CudaContext>,
    k: Kernels,
    bufs: Vec<PeerBuffers>,
    streams: Vec<Arc<CudaStream>>,
}

impl Group {
    fn new(ctx: &Arc<CudaContext>, world: usize, half: u64) -> Group {
        let k = Kernels::load(ctx).unwrap();
        let mut bufs: Vec<PeerBuffers> = (0..world)
            .map(|r| PeerBuffers::new(ctx, r, world, half).unwrap())
            .collect();
        for r in 0..world {
            for q in 0..world {
                if q != r {
                    let (a, b) = if r < q {
                        let (lo, hi) = bufs.split_at_mut(q);
                        (&mut lo[r], &hi[0])
                    } else {
                        let (lo, hi) = bufs.split_at_mut(r);
                        (&mut hi[0], &lo[q])
                    };
                    a.map_local(q, b).unwrap();
                }
            }
            bufs[r].set_ranks_on_device(world as u32).unwrap();
            if world == 8 {
                bufs[r].set_hcm(HCM[r]).unwrap();
            }
        }
        for b in &bufs {
            b.verify_peers().unwrap();
        }
        let streams = (0..world).map(|_| ctx.new_stream().unwrap()).collect();
        Group {
            ctx: ctx.clone(),
            k,
            bufs,
            streams,
        }
    }

    fn sync(&self) {
        for s in &self.streams {
            s.synchronize().unwrap();
        }
    }
}

// ----- data and CPU reference ---------------------------------------------------------

/// Nonzero values k/64, k odd in [-255, 255]: exact in every dtype, no +-0 ties for min/max.
fn gen_f32(seed: u64, n: usize) -> Vec<f32> {
    let mut r = rng(seed);
    (0..n)
        .map(|_| ((r() % 256) as i32 * 2 - 255) as f32 / 64.0)
        .collect()
}

fn to_bits(d: DType, v: &[f32]) -> Vec<u16> {
    match d {
        DType::Bf16 => v.iter().map(|&x| bf16::from_f32(x).to_bits()).collect(),
        DType::F16 => v.iter().map(|&x| f16::from_f32(x).to_bits()).collect(),
        DType::F32 => Vec::new(),
    }
}

fn fold(op: ReduceOp, a: f32, b: f32) -> f32 {
    match op {
        ReduceOp::Min => a.min(b),
        ReduceOp::Max => a.max(b),
        _ => a + b,
    }
}

/// Reference result as raw element bits (u32 per element; 16-bit types in the low half).
fn reference(algo: Algo, d: DType, op: ReduceOp, inputs: &[Vec<f32>]) -> Vec<u32> {
    let w = inputs.len();
    let n = inputs[0].len();
    let scale = 1.0f32 / w as f32;
    let q = |x: f32| -> f32 {
        match d {
            DType::Bf16 => bf16::from_f32(x).to_f32(),
            DType::F16 => f16::from_f32(x).to_f32(),
            DType::F32 => x,
        }
    };
    (0..n)
        .map(|i| {
            let v = |r: usize| q(inputs[r][i]);
            let mut acc = if algo == Algo::Hcm {
                let a = (1..4).fold(v(0), |s, r| fold(op, s, v(r)));
                let b = (5..8).fold(v(4), |s, r| fold(op, s, v(r)));
                fold(op, a, b)
            } else {
                (1..w).fold(v(0), |s, r| fold(op, s, v(r)))
            };
            if op == ReduceOp::Avg {
                acc *= scale;
            }
            match d {
                DType::Bf16 => u32::from(bf16::from_f32(acc).to_bits()),
                DType::F16 => u32::from(f16::from_f32(acc).to_bits()),
                DType::F32 => acc.to_bits(),
            }
        })
        .collect()
}

/// A device tensor of any dtype (as raw 16/32-bit words).
enum Dev {
    H(CudaSlice<u16>),
    F(CudaSlice<f32>),
}

impl Dev {
    fn upload(s: &Arc<CudaStream>, d: DType, v: &[f32], pad: usize) -> Dev {
        match d {
            DType::F32 => {
                let mut x = vec![0f32; pad];
                x.extend_from_slice(v);
                Dev::F(s.clone_htod(&x).unwrap())
            }
            _ => {
                let mut x = vec![0u16; pad];
                x.extend(to_bits(d, v));
                Dev::H(s.clone_htod(&x).unwrap())
            }
        }
    }
    fn zeros(s: &Arc<CudaStream>, d: DType, n: usize) -> Dev {
        match d {
            DType::F32 => Dev::F(s.alloc_zeros(n).unwrap()),
            _ => Dev::H(s.alloc_zeros(n).unwrap()),
        }
    }
    fn ptr(&self, s: &Arc<CudaStream>) -> u64 {
        match self {
            Dev::H(x) => x.device_ptr(s).0,
            Dev::F(x) => x.device_ptr(s).0,
        }
    }
    fn download(&self, s: &Arc<CudaStream>, skip: usize) -> Vec<u32> {
        match self {
            Dev::H(x) => s.clone_dtoh(x).unwrap()[skip..]
                .iter()
                .map(|&b| u32::from(b))
                .collect(),
            Dev::F(x) => s.clone_dtoh(x).unwrap()[skip..]
                .iter()
                .map(|v| v.to_bits())
                .collect(),
        }
    }
}

fn call(algo: Algo, dtype: DType, op: ReduceOp, input: u64, output: u64, count: u64) -> RawCall {
    RawCall {
        algo,
        dtype,
        op,
        input,
        output,
        count,
        options: CallOptions::default(),
        piece: Piece::WHOLE,
    }
}

/// Run one allreduce on every rank of `g` and compare each rank's output with the CPU
/// reference. `mode`: 0 = out of place, 1 = in place, 2 = unaligned (offset by one element).
fn run_case(
    g: &Group,
    algo: Algo,
    d: DType,
    op: ReduceOp,
    n: usize,
    mode: u32,
    seed: u64,
) -> Result<(), String> {
    let w = g.bufs.len();
    let inputs: Vec<Vec<f32>> = (0..w).map(|r| gen_f32(seed * 131 + r as u64, n)).collect();
    let want = reference(algo, d, op, &inputs);
    let pad = usize::from(mode == 2);
    let es = d.size() as u64;
    let mut ins = Vec::new();
    let mut outs = Vec::new();
    for r in 0..w {
        let s = &g.streams[r];
        ins.push(Dev::upload(s, d, &inputs[r], pad));
        outs.push(if mode == 1 {
            None
        } else {
            Some(Dev::zeros(s, d, n + pad))
        });
    }
    g.sync();
    for r in 0..w {
        let s = &g.streams[r];
        let ip = ins[r].ptr(s) + pad as u64 * es;
        let op_ = outs[r].as_ref().map_or(ip, |o| o.ptr(s) + pad as u64 * es);
        // SAFETY: both tensors hold n elements past the offset and live until the sync below.
        unsafe {
            g.k.allreduce_raw(&g.bufs[r], s, &call(algo, d, op, ip, op_, n as u64))
        }
        .map_err(|e| e.to_string())?;
    }
    g.sync();
    for r in 0..w {
        if let Some(e) = g.bufs[r].read_error() {
            return Err(format!("rank {r}: {e}"));
        }
        let got = outs[r]
            .as_ref()
            .unwrap_or(&ins[r])
            .download(&g.streams[r], pad);
        if got != want {
            let i = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
            return Err(format!(
                "{algo} {d} {op} W={w} n={n} mode={mode}: rank {r} element {i}: got {:#x} want {:#x}",
                got.get(i).copied().unwrap_or(0),
                want.get(i).copied().unwrap_or(0)
            ));
        }
    }
    Ok(())
}

// ----- tests ----------------------------------------------------------------------------

#[test]
#[ignore = "needs a GPU"]
fn gpu_device_and_compile_cache() {
    // Kernels compile per instance on first use (see gpu_lazy.rs for the cold-start
    // numbers); here: every instance, cold then from the disk cache, no warming thread.
    let Some(ctx) = gpu() else { return };
    let dir = std::env::temp_dir().join(format!("inc-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // the NVRTC path: the embedded CUBINs are tested by gpu_embedded.rs
    let opts = inc_cuda::LoadOptions {
        cache: inc_cuda::CacheMode::Dir(dir.clone()),
        warm: inc_cuda::Warm::Off,
        embedded: inc_cuda::Embedded::Off,
    };
    let load_all = |k: &Kernels| {
        for (a, d, o) in inc_cuda::all_instances() {
            k.function(a, d, o).unwrap();
        }
    };
    let t = Instant::now();
    let k1 = Kernels::load_opts(&ctx, &opts).unwrap();
    load_all(&k1);
    let cold = t.elapsed();
    let t = Instant::now();
    let k2 = Kernels::load_opts(&ctx, &opts).unwrap();
    load_all(&k2);
    let warm = t.elapsed();
    assert!(!k1.loaded_from_cache());
    assert!(k2.loaded_from_cache());
    println!(
        "device: sm_{}{}, {} SMs, {} blocks/SM at 512 threads (min over instances); compile of all instances one by one {:?}, cached load {:?}",
        k1.arch().0,
        k1.arch().1,
        k1.sm_count(),
        k1.blocks_per_sm(),
        cold,
        warm
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_all_algos_dtypes_ops_sizes() {
    let Some(ctx) = gpu() else { return };
    let small = [1usize, 3, 8, 9, 31, 1000, 4097, 65_535, 1_000_003];
    let mut total = 0;
    let mut per: std::collections::BTreeMap<String, usize> = Default::default();
    let mut failures = Vec::new();
    for w in 2..=8usize {
        let g = Group::new(&ctx, w, 20 << 20);
        let mut algos = vec![Algo::OneShot, Algo::TwoShot];
        if w == 8 {
            algos.push(Algo::Hcm);
        }
        for &algo in &algos {
            for d in DType::ALL {
                for op in ReduceOp::ALL {
                    // what fits a 20 MiB half (the one-shot keeps W - 1 receive areas: at 7+
                    // ranks 1_000_003 f32 do not fit; launch's tests hold the error)
                    let m = inc_cuda::launch::max_count(algo, d, 20 << 20, w) as usize;
                    let mut sizes: Vec<usize> = small.iter().copied().filter(|&n| n <= m).collect();
                    if matches!(w, 2 | 5 | 8) && matches!(op, ReduceOp::Sum | ReduceOp::Max) {
                        // the largest odd size that fits
                        sizes.push(m - 3);
                    }
                    for (i, &n) in sizes.iter().enumerate() {
                        let mode = (i % 3) as u32;
                        total += 1;
                        *per.entry(format!("{algo}/{d}/{op}")).or_default() += 1;
                        if let Err(e) = run_case(&g, algo, d, op, n, mode, (w * 1000 + i) as u64) {
                            failures.push(e);
                        }
                    }
                }
            }
        }
    }
    for (k, v) in &per {
        println!("  {k}: {v} cases");
    }
    println!("matrix: {} cases, {} failed", total, failures.len());
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        failures.iter().take(5).collect::<Vec<_>>()
    );
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_back_to_back_calls_varying_algo_and_blocks() {
    let Some(ctx) = gpu() else { return };
    for w in [2usize, 4, 8] {
        let g = Group::new(&ctx, w, 1 << 20);
        let calls = 300usize;
        let n = 2053usize;
        let cap =
            g.k.plan(
                &g.bufs[0],
                Algo::OneShot,
                DType::F32,
                ReduceOp::Sum,
                1 << 30,
                None,
            )
            .unwrap()
            .blocks;
        let mut ins = vec![];
        let mut outs = vec![];
        let mut wants = vec![];
        for c in 0..calls {
            let inputs: Vec<Vec<f32>> = (0..w).map(|r| gen_f32((c * 17 + r) as u64, n)).collect();
            let algo = if c % 3 == 1 {
                Algo::TwoShot
            } else {
                Algo::OneShot
            };
            wants.push(reference(algo, DType::F32, ReduceOp::Sum, &inputs));
            ins.push(
                (0..w)
                    .map(|r| g.streams[r].clone_htod(&inputs[r]).unwrap())
                    .collect::<Vec<_>>(),
            );
            outs.push(
                (0..w)
                    .map(|r| g.streams[r].alloc_zeros::<f32>(n).unwrap())
                    .collect::<Vec<_>>(),
            );
        }
        g.sync();
        let e0 = g.bufs[0].epoch().unwrap();
        let t = Instant::now();
        for c in 0..calls {
            let algo = if c % 3 == 1 {
                Algo::TwoShot
            } else {
                Algo::OneShot
            };
            let blocks = [1, 3, cap][c % 3].min(cap);
            for r in 0..w {
                let s = &g.streams[r];
                let mut rc = call(
                    algo,
                    DType::F32,
                    ReduceOp::Sum,
                    ins[c][r].device_ptr(s).0,
                    outs[c][r].device_ptr(s).0,
                    n as u64,
                );
                rc.options.blocks = Some(blocks);
                // SAFETY: tensors live until the sync below.
                unsafe { g.k.allreduce_raw(&g.bufs[r], s, &rc) }.unwrap();
            }
        }
        g.sync();
        let dt = t.elapsed();
        for r in 0..w {
            assert_eq!(g.bufs[r].read_error(), None);
            assert_eq!(
                g.bufs[r].epoch().unwrap(),
                e0 + calls as u32,
                "rank {r} epoch"
            );
        }
        for c in 0..calls {
            for r in 0..w {
                let got: Vec<u32> = g.streams[r]
                    .clone_dtoh(&outs[c][r])
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect();
                assert_eq!(got, wants[c], "W={w} call {c} rank {r}");
            }
        }
        println!(
            "back-to-back: W={w}: {calls} calls OK ({:.1} us/call incl. launch)",
            dt.as_secs_f64() * 1e6 / calls as f64
        );
    }
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_zero_copy_variants() {
    let Some(ctx) = gpu() else { return };
    let w = 4;
    let g = Group::new(&ctx, w, 1 << 20);
    let n = 5003usize;
    // Zero-copy one-shot (the only zero-copy variant): the input lies in the symmetric
    // buffer, the output outside it.
    let algo = Algo::OneShot;
    for round in 0..20u64 {
        let inputs: Vec<Vec<f32>> = (0..w).map(|r| gen_f32(round * 7 + r as u64, n)).collect();
        let want = reference(algo, DType::F32, ReduceOp::Sum, &inputs);
        let off = 4096u64 * (round % 3);
        let outs: Vec<CudaSlice<f32>> = (0..w)
            .map(|r| g.streams[r].alloc_zeros::<f32>(n).unwrap())
            .collect();
        for r in 0..w {
            let bytes: Vec<u8> = inputs[r].iter().flat_map(|v| v.to_le_bytes()).collect();
            // SAFETY: the range lies inside rank r's data area (1 MiB halves).
            unsafe { inc_cuda::sys::copy_htod(g.bufs[r].data_ptr() + off, &bytes) }.unwrap();
        }
        // the legacy-stream copies above may still be in flight for the rank streams
        ctx.synchronize().unwrap();
        for r in 0..w {
            let s = &g.streams[r];
            let ip = g.bufs[r].data_ptr() + off;
            let op_ = outs[r].device_ptr(s).0;
            // SAFETY: symmetric buffer and outputs live until the sync.
            unsafe {
                g.k.allreduce_raw(
                    &g.bufs[r],
                    s,
                    &call(algo, DType::F32, ReduceOp::Sum, ip, op_, n as u64),
                )
            }
            .unwrap();
        }
        g.sync();
        for r in 0..w {
            assert_eq!(g.bufs[r].read_error(), None);
            let got: Vec<u32> = g.streams[r]
                .clone_dtoh(&outs[r])
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            assert_eq!(got, want, "zero-copy {algo} round {round} rank {r}");
        }
    }
    // zero-copy one-shot in place is refused (peers still read the input)
    let ip = g.bufs[0].data_ptr();
    let e =
        g.k.prepare(
            &g.bufs[0],
            &call(Algo::OneShot, DType::F32, ReduceOp::Sum, ip, ip, 100),
        )
        .unwrap_err();
    assert!(matches!(e, CudaError::InvalidArgument(_)), "{e}");
    // two-shot and hcm have no zero-copy variant (peers store into the symmetric buffer)
    for algo in [Algo::TwoShot, Algo::Hcm] {
        let e =
            g.k.prepare(
                &g.bufs[0],
                &call(algo, DType::F32, ReduceOp::Sum, ip, ip, 100),
            )
            .unwrap_err();
        assert!(matches!(e, CudaError::InvalidArgument(_)), "{algo}: {e}");
    }
    println!("zero-copy: 20 rounds OK");
}

/// The epoch's wrap (PROTOCOL.md "Wrap"): every rank's epoch words set just below 2^32,
/// then calls of every algorithm across the wrap (the LL call at the wrap is the largest
/// LL call, so its upper lines are fresh memory, which an epoch of 0 would take as
/// current), then a jump of 2^31 calls and calls with more blocks than the ones before it
/// (their flag slots, had their consumers not cleared them, would hold an epoch that now
/// reads as newer: SEQ_MISMATCH).
#[test]
#[ignore = "needs a GPU"]
fn gpu_calls_cross_the_epoch_wrap() {
    let Some(ctx) = gpu() else { return };
    let g = Group::new(&ctx, 4, 1 << 20);
    for b in &g.bufs {
        b.set_epoch(u32::MAX - 6).unwrap();
    }
    let plan = [
        (Algo::PushOneShot, 64),
        (Algo::OneShot, 300),
        (Algo::TwoShot, 70000),
        (Algo::PushOneShot, 200),
        (Algo::TwoShot, 64),
        (Algo::OneShot, 100),
        // the call above runs at epoch u32::MAX, this one at 2 (not 0)
        (Algo::PushOneShot, 16000),
        (Algo::PushOneShot, 16000),
        (Algo::TwoShot, 1000),
        (Algo::PushOneShot, 4000),
        (Algo::OneShot, 7000),
    ];
    for (k, &(algo, n)) in plan.iter().enumerate() {
        run_case(&g, algo, DType::Bf16, ReduceOp::Sum, n, 0, 700 + k as u64)
            .unwrap_or_else(|e| panic!("call {k} ({algo:?}, {n}): {e}"));
    }
    for b in &g.bufs {
        assert_eq!(b.epoch().unwrap(), 6, "u32::MAX - 6 + 6 calls, then 2..=6");
        b.set_epoch(6 + (1 << 31) + 3).unwrap();
    }
    // after the jump the LL call as large as the largest before it finds lines written
    // 2^31 calls ago: "not yet" (SEQ_WINDOW), never SEQ_MISMATCH, however late the peer
    for (k, &(algo, n)) in [
        (Algo::TwoShot, 70000),
        (Algo::OneShot, 70000),
        (Algo::PushOneShot, 16000),
    ]
    .iter()
    .enumerate()
    {
        run_case(&g, algo, DType::Bf16, ReduceOp::Sum, n, 0, 800 + k as u64)
            .unwrap_or_else(|e| panic!("after the jump, {algo:?} {n}: {e}"));
    }
}

/// Rule 5 of PROTOCOL.md "Wrap": one call in SCRUB_EVERY / 2 zeroes a rotating 4 KiB window
/// of its own push region, so no LL word keeps its tag for a whole epoch period. World 2,
/// 512 KiB slots: 128 windows a parity. A large LL call at epoch e, small LL calls, a
/// one-shot at each of the next 256 scrubbing epochs (the epoch words jump there, as if the
/// calls in between had run), then the epoch words set as if one period (2^32 - 2 calls: e
/// again) or one period less 6 calls (e - 6: the large call's lines read as 6 calls ahead)
/// had passed, and the large call again. Without the scrub (the kernels before it, GPU run
/// 102) the large call returns a wrong result, silently: its upper lines, untouched since e,
/// are taken as its own.
#[test]
#[ignore = "needs a GPU"]
fn gpu_no_ll_word_outlives_an_epoch_period() {
    let Some(ctx) = gpu() else { return };
    for back in [1u32, 7] {
        let g = Group::new(&ctx, 2, 1 << 20);
        let bf16 = |algo, n, seed| run_case(&g, algo, DType::Bf16, ReduceOp::Sum, n, 0, seed);
        for b in &g.bufs {
            b.set_epoch(1000).unwrap();
        }
        let big = 60_000; // 120 KB of bf16: 240 KB of lines in each slot
        bf16(Algo::PushOneShot, big, 1100).unwrap_or_else(|e| panic!("the large LL call: {e}"));
        let e = g.bufs[0].epoch().unwrap();
        for k in 0..8u64 {
            bf16(Algo::PushOneShot, 64, 1200 + k)
                .unwrap_or_else(|err| panic!("small LL call {k}: {err}"));
        }
        let mut at = g.bufs[0].epoch().unwrap();
        for k in 0..256u64 {
            at = inc_proto::push::next_scrub_epoch(at);
            for b in &g.bufs {
                b.set_epoch(at - 1).unwrap();
            }
            bf16(Algo::OneShot, 512, 1300 + k)
                .unwrap_or_else(|err| panic!("scrubbing call {k} at epoch {at}: {err}"));
        }
        for b in &g.bufs {
            b.set_epoch(e - back).unwrap();
        }
        bf16(Algo::PushOneShot, big, 1600).unwrap_or_else(|err| {
            panic!("the large LL call {back} call(s) before its epoch came back: {err}")
        });
    }
}

/// The copy-in two-shot of a call of its own that fits the lines region runs as lines
/// (PROTOCOL.md "two-shot of lines"): results bit-identical to the reference at sizes
/// around the line and slice boundaries, every writer's header word holds the call's flag
/// (the form was taken), and after every call every flag word of every rank's lines region
/// is 0 (the consumer cleared what it took); a call too large for the region runs the
/// barrier form and leaves the headers alone.
#[test]
#[ignore = "needs a GPU"]
fn gpu_two_shot_of_lines_clears_what_it_took() {
    let Some(ctx) = gpu() else { return };
    for w in [2usize, 3, 4] {
        // halves large enough for the barrier form of 1 Mi f32 elements (2 x 4 MiB + W)
        let g = Group::new(&ctx, w, 16 << 20);
        // elements of bf16: 1, one line (60), one more, a slice boundary, 1 MiB, 2 MiB
        for (k, &n) in [1usize, 60, 61, 3001, 524_288, 1_048_576]
            .iter()
            .enumerate()
        {
            for (j, d) in [DType::Bf16, DType::F32].into_iter().enumerate() {
                let e = g.bufs[0].epoch().unwrap();
                run_case(
                    &g,
                    Algo::TwoShot,
                    d,
                    ReduceOp::Sum,
                    n,
                    (k % 3) as u32,
                    900 + k as u64,
                )
                .unwrap_or_else(|err| panic!("w{w} {d:?} {n}: {err}"));
                let sig = inc_cuda::proto::call_sig(Algo::TwoShot, d, ReduceOp::Sum, n as u64);
                let flag = inc_cuda::proto::flag_word(inc_proto::next_epoch(e), sig);
                let fits = inc_proto::lines::use_lines(
                    n as u64 * d.size() as u64,
                    w,
                    g.bufs[0].push_slot_bytes() as usize,
                    true,
                );
                for (r, b) in g.bufs.iter().enumerate() {
                    let (hdr, set) = b.lines_words().unwrap();
                    assert_eq!(set, 0, "w{w} {d:?} {n} rank {r}: flags left set");
                    let p = (inc_proto::next_epoch(e) % 2) as usize;
                    for s in (0..w).filter(|&s| s != r) {
                        let h = hdr[p * inc_cuda::proto::MAX_RANKS + s];
                        assert_eq!(
                            h == flag,
                            fits,
                            "w{w} {d:?} {n} rank {r} writer {s} (case {j})"
                        );
                    }
                }
            }
        }
    }
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_graph_capture_100_calls_replayed_twice() {
    let Some(ctx) = gpu() else { return };
    let w = 4;
    let g = Group::new(&ctx, w, 1 << 20);
    let n = 1027usize;
    let inputs: Vec<Vec<f32>> = (0..w).map(|r| gen_f32(99 + r as u64, n)).collect();
    let want_sum = reference(Algo::OneShot, DType::F32, ReduceOp::Sum, &inputs);
    let ins: Vec<CudaSlice<f32>> = (0..w)
        .map(|r| g.streams[r].clone_htod(&inputs[r]).unwrap())
        .collect();
    let outs: Vec<CudaSlice<f32>> = (0..w)
        .map(|r| g.streams[r].alloc_zeros::<f32>(n).unwrap())
        .collect();
    g.sync();
    let e0: Vec<u32> = g.bufs.iter().map(|b| b.epoch().unwrap()).collect();
    let mut graphs = Vec::new();
    for r in 0..w {
        let s = &g.streams[r];
        s.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
            .unwrap();
        for c in 0..100 {
            let algo = if c % 2 == 0 {
                Algo::OneShot
            } else {
                Algo::TwoShot
            };
            // SAFETY: tensors outlive the graph launches below.
            unsafe {
                g.k.allreduce_raw(
                    &g.bufs[r],
                    s,
                    &call(
                        algo,
                        DType::F32,
                        ReduceOp::Sum,
                        ins[r].device_ptr(s).0,
                        outs[r].device_ptr(s).0,
                        n as u64,
                    ),
                )
            }
            .unwrap();
        }
        let graph = s
            .end_capture(cudarc::driver::sys::CUgraphInstantiate_flags(0))
            .unwrap()
            .expect("empty graph");
        graphs.push(graph);
    }
    // capture launched nothing
    for r in 0..w {
        assert_eq!(g.bufs[r].epoch().unwrap(), e0[r]);
    }
    for replay in 0..2 {
        for gr in &graphs {
            gr.launch().unwrap();
        }
        g.sync();
        for r in 0..w {
            assert_eq!(g.bufs[r].read_error(), None);
            assert_eq!(
                g.bufs[r].epoch().unwrap(),
                e0[r] + 100 * (replay + 1),
                "epoch advanced by replays"
            );
            let got: Vec<u32> = g.streams[r]
                .clone_dtoh(&outs[r])
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            assert_eq!(got, want_sum, "replay {replay} rank {r}");
        }
    }
    drop(graphs);
    let _ = &g.ctx;
    println!("graph: 100 calls x {w} ranks captured, replayed twice OK");
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_missing_rank_times_out_and_poisons() {
    let Some(ctx) = gpu() else { return };
    let w = 3;
    let g = Group::new(&ctx, w, 1 << 20);
    let n = 4096usize;
    let ins: Vec<CudaSlice<f32>> = (0..w)
        .map(|r| g.streams[r].clone_htod(&gen_f32(r as u64, n)).unwrap())
        .collect();
    g.sync();
    let t = Instant::now();
    for r in 0..2 {
        let s = &g.streams[r];
        let mut c = call(
            Algo::OneShot,
            DType::F32,
            ReduceOp::Sum,
            ins[r].device_ptr(s).0,
            ins[r].device_ptr(s).0,
            n as u64,
        );
        c.options.timeout = Duration::from_millis(300);
        // SAFETY: tensors live until the sync.
        unsafe { g.k.allreduce_raw(&g.bufs[r], s, &c) }.unwrap();
    }
    g.streams[0].synchronize().unwrap();
    g.streams[1].synchronize().unwrap();
    let dt = t.elapsed();
    assert!(
        dt < Duration::from_secs(5),
        "kernels took {dt:?} to give up"
    );
    let e0 = g.bufs[0].read_error().expect("rank 0 must report an error");
    let e1 = g.bufs[1].read_error().expect("rank 1 must report an error");
    for e in [e0, e1] {
        assert!(e.code == ERR_TIMEOUT || e.code == ERR_PEER_ABORT, "{e}");
    }
    assert!(
        [e0, e1]
            .iter()
            .any(|e| e.code == ERR_TIMEOUT && e.peer == 2),
        "{e0} / {e1}"
    );
    println!("timeout: rank 0: {e0}; rank 1: {e1}; gave up after {dt:?}");
    // poisoned: fails fast
    let s = &g.streams[0];
    let c = call(
        Algo::OneShot,
        DType::F32,
        ReduceOp::Sum,
        ins[0].device_ptr(s).0,
        ins[0].device_ptr(s).0,
        n as u64,
    );
    // SAFETY: not launched (poisoned).
    let r = unsafe { g.k.allreduce_raw(&g.bufs[0], s, &c) };
    assert!(matches!(r, Err(CudaError::Poisoned(_))), "{r:?}");
    // the late rank finds its abort word raised by the peers and reports it, without waiting
    let s2 = &g.streams[2];
    let c2 = call(
        Algo::OneShot,
        DType::F32,
        ReduceOp::Sum,
        ins[2].device_ptr(s2).0,
        ins[2].device_ptr(s2).0,
        n as u64,
    );
    // SAFETY: tensors live until the sync.
    unsafe { g.k.allreduce_raw(&g.bufs[2], s2, &c2) }.unwrap();
    s2.synchronize().unwrap();
    let e2 = g.bufs[2].read_error().expect("late rank sees the abort");
    assert_eq!(e2.code, ERR_PEER_ABORT, "{e2}");
    assert!(e2.peer < 2, "the abort word names rank 0 or 1: {e2}");
    println!("late rank: {e2}");
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_call_mismatch_and_host_abort() {
    let Some(ctx) = gpu() else { return };
    // different counts on the two ranks -> CALL_MISMATCH, not a hang or garbage
    let g = Group::new(&ctx, 2, 1 << 20);
    let ins: Vec<CudaSlice<f32>> = (0..2)
        .map(|r| g.streams[r].clone_htod(&gen_f32(r as u64, 200)).unwrap())
        .collect();
    g.sync();
    for r in 0..2 {
        let s = &g.streams[r];
        let p = ins[r].device_ptr(s).0;
        let mut c = call(
            Algo::TwoShot,
            DType::F32,
            ReduceOp::Sum,
            p,
            p,
            100 + r as u64,
        );
        c.options.timeout = Duration::from_secs(2);
        // SAFETY: tensors live until the sync.
        unsafe { g.k.allreduce_raw(&g.bufs[r], s, &c) }.unwrap();
    }
    g.sync();
    let errs: Vec<_> = (0..2)
        .map(|r| g.bufs[r].read_error().expect("mismatch reported"))
        .collect();
    assert!(errs.iter().any(|e| e.code == ERR_CALL_MISMATCH), "{errs:?}");
    println!("mismatch: {} / {}", errs[0], errs[1]);

    // host abort stops a rank that waits for a peer that never comes (timeout 30 s)
    let g = Group::new(&ctx, 2, 1 << 20);
    let x = g.streams[0].clone_htod(&gen_f32(5, 64)).unwrap();
    g.sync();
    let s = &g.streams[0];
    let mut c = call(
        Algo::OneShot,
        DType::F32,
        ReduceOp::Sum,
        x.device_ptr(s).0,
        x.device_ptr(s).0,
        64,
    );
    c.options.timeout = Duration::from_secs(30);
    // SAFETY: x lives until the sync.
    unsafe { g.k.allreduce_raw(&g.bufs[0], s, &c) }.unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    g.bufs[0].abort();
    s.synchronize().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "abort took {:?}",
        t.elapsed()
    );
    let e = g.bufs[0].read_error().expect("abort recorded");
    assert_eq!(e.code, ERR_PEER_ABORT, "{e}");
    assert_eq!(
        e.peer, 0,
        "the abort word names rank 0 (the host of rank 0 aborted): {e}"
    );
    println!("host abort: stopped after {:?}: {e}", t.elapsed());
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_validation_errors() {
    let Some(ctx) = gpu() else { return };
    let g = Group::new(&ctx, 2, 1 << 20);
    let x = g.streams[0].alloc_zeros::<f32>(1 << 20).unwrap();
    let p = x.device_ptr(&g.streams[0]).0;
    let too_big = call(
        Algo::OneShot,
        DType::F32,
        ReduceOp::Sum,
        p,
        p,
        (1 << 18) + 1,
    );
    assert!(matches!(
        g.k.prepare(&g.bufs[0], &too_big),
        Err(CudaError::TooLarge { .. })
    ));
    let hcm = call(Algo::Hcm, DType::F32, ReduceOp::Sum, p, p, 16);
    assert!(
        g.k.prepare(&g.bufs[0], &hcm).is_err(),
        "hcm needs world 8 + row"
    );
    let odd = call(Algo::OneShot, DType::F32, ReduceOp::Sum, p + 2, p, 16);
    assert!(matches!(
        g.k.prepare(&g.bufs[0], &odd),
        Err(CudaError::InvalidArgument(_))
    ));
    let mut many = call(Algo::OneShot, DType::F32, ReduceOp::Sum, p, p, 16);
    many.options.blocks = Some(inc_cuda::proto::MAX_BLOCKS as u32 + 1);
    assert!(g.k.prepare(&g.bufs[0], &many).is_err());
    // unconnected buffers
    let lone = PeerBuffers::new(&ctx, 0, 2, 1 << 20).unwrap();
    assert!(lone.verify_peers().is_err());
    assert!(g
        .k
        .prepare(
            &lone,
            &call(Algo::OneShot, DType::F32, ReduceOp::Sum, p, p, 16)
        )
        .is_err());
}

/// Two processes on one GPU, buffers mapped through CUDA IPC. The test re-executes its own
/// binary as rank 1; handles travel through files in a temp folder.
#[test]
#[ignore = "needs a GPU"]
fn gpu_ipc_two_process() {
    let child = std::env::var("INC_IPC_ROLE").is_ok_and(|v| v == "child");
    if !child && gpu().is_none() {
        return;
    }
    let dir = if child {
        std::path::PathBuf::from(std::env::var("INC_IPC_DIR").unwrap())
    } else {
        let d = std::env::temp_dir().join(format!("inc-ipc-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let rank = usize::from(child);
    let mut proc = None;
    if !child {
        let exe = std::env::current_exe().unwrap();
        proc = Some(
            std::process::Command::new(exe)
                .args([
                    "--ignored",
                    "--exact",
                    "gpu_ipc_two_process",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("INC_IPC_ROLE", "child")
                .env("INC_IPC_DIR", &dir)
                .spawn()
                .unwrap(),
        );
    }
    let result = std::panic::catch_unwind(|| ipc_rank(&dir, rank));
    if let Some(mut p) = proc {
        let st = p.wait().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
        assert!(st.success(), "child (rank 1) failed: {st}");
        println!("ipc: 2 processes x 20 calls OK");
    } else if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn wait_file(p: &std::path::Path) -> String {
    let t = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(p) {
            return s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "timed out waiting for {p:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn put_file(p: &std::path::Path, s: &str) {
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, s).unwrap();
    std::fs::rename(tmp, p).unwrap();
}

fn ipc_rank(dir: &std::path::Path, rank: usize) {
    let ctx = open_device(0).unwrap();
    // SAFETY: explicit stream syncs order all work in this process.
    unsafe { ctx.disable_event_tracking() };
    let mut bufs = PeerBuffers::new(&ctx, rank, 2, 4 << 20).unwrap();
    put_file(
        &dir.join(format!("h{rank}")),
        &bufs.export_handle().unwrap().to_hex(),
    );
    let peer = 1 - rank;
    let h = inc_cuda::IpcHandle::from_hex(&wait_file(&dir.join(format!("h{peer}")))).unwrap();
    bufs.open_ipc(peer, &h).unwrap();
    bufs.verify_peers().unwrap();
    let k = Kernels::load(&ctx).unwrap();
    let s = ctx.new_stream().unwrap();
    for c in 0..20u64 {
        let (algo, d, n) = if c % 2 == 0 {
            (Algo::OneShot, DType::F32, 4099usize)
        } else {
            (Algo::TwoShot, DType::Bf16, 100_003usize)
        };
        let inputs: Vec<Vec<f32>> = (0..2).map(|r| gen_f32(c * 10 + r, n)).collect();
        let want = reference(algo, d, ReduceOp::Sum, &inputs);
        let got = if d == DType::F32 {
            // typed API
            let mut x = s.clone_htod(&inputs[rank]).unwrap();
            k.allreduce_in_place(
                &bufs,
                &s,
                algo,
                ReduceOp::Sum,
                &mut x,
                None,
                CallOptions::default(),
            )
            .unwrap();
            s.synchronize().unwrap();
            bufs.check().unwrap();
            s.clone_dtoh(&x)
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<u32>>()
        } else {
            let x = Dev::upload(&s, d, &inputs[rank], 0);
            s.synchronize().unwrap();
            let p = x.ptr(&s);
            // SAFETY: x lives until the sync.
            unsafe { k.allreduce_raw(&bufs, &s, &call(algo, d, ReduceOp::Sum, p, p, n as u64)) }
                .unwrap();
            s.synchronize().unwrap();
            bufs.check().unwrap();
            x.download(&s, 0)
        };
        assert_eq!(got, want, "ipc rank {rank} call {c}");
    }
    // both done before either frees memory the other may still read
    put_file(&dir.join(format!("done{rank}")), "ok");
    wait_file(&dir.join(format!("done{peer}")));
}

/// Registration (issue 14): the caller's memory is checked (aligned, device memory of this
/// context, inside one allocation), and memory the driver cannot share through CUDA IPC
/// (stream-ordered pool memory, cudarc's default allocation) gives an error that says so.
#[test]
#[ignore = "needs a GPU"]
fn gpu_registered_memory_is_checked() {
    let Some(ctx) = gpu() else { return };
    let s = ctx.new_stream().unwrap();
    let buf: CudaSlice<f32> = s.alloc_zeros(1024).unwrap();
    let (p, _g) = buf.device_ptr(&s);
    s.synchronize().unwrap();
    // SAFETY: test code: live device memory of this context, sizes as allocated.
    let m = unsafe { inc_cuda::SymmetricMemory::register(&ctx, 0, 2, p, 4096) }.unwrap();
    assert_eq!(m.base(), p);
    match m.export_handle() {
        Err(e) => {
            assert!(e.to_string().contains("stream-ordered pool"), "{e}");
            println!("pool memory: refused for IPC: {e}");
        }
        Ok(_) => println!(
            "pool memory: this driver exports it (async alloc: {})",
            ctx.has_async_alloc()
        ),
    }
    // SAFETY: test code: live device memory of this context, sizes as allocated.
    assert!(unsafe { inc_cuda::SymmetricMemory::register(&ctx, 0, 2, p + 4, 64) }.is_err());
    // SAFETY: test code: live device memory of this context, sizes as allocated.
    assert!(unsafe { inc_cuda::SymmetricMemory::register(&ctx, 0, 2, 0x1000, 64) }.is_err());
    // SAFETY: test code: live device memory of this context, sizes as allocated.
    assert!(unsafe { inc_cuda::SymmetricMemory::register(&ctx, 0, 2, p, 1 << 30) }.is_err());
    // SAFETY: test code: live device memory of this context, sizes as allocated.
    assert!(unsafe { inc_cuda::SymmetricMemory::register(&ctx, 2, 2, p, 64) }.is_err());
    // cuMemAlloc memory at an offset: exportable; the offset is what peers add
    ctx.bind_to_thread().unwrap();
    // SAFETY: test code: live device memory of this context, sizes as allocated.
    let raw = unsafe { inc_cuda::sys::mem_alloc(1 << 20) }.unwrap();
    // SAFETY: test code: live device memory of this context, sizes as allocated.
    let r = unsafe { inc_cuda::SymmetricMemory::register(&ctx, 0, 2, raw + 4096, 8192) }.unwrap();
    assert_eq!(r.offset(), 4096);
    r.export_handle().unwrap();
    drop(r);
    // SAFETY: test code: live device memory of this context, sizes as allocated.
    unsafe { inc_cuda::sys::mem_free(raw) }.unwrap();
    println!("registered memory: alignment, range, rank and IPC export checked");
}
