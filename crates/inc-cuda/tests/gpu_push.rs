#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]
//! GPU tests of the push one-shot (PROTOCOL.md "push one-shot"). All `#[ignore]`; run with
//! `cargo test -p inc-cuda --release --test gpu_push -- --ignored --test-threads=1 --nocapture`
//! (or the `cargo xtask gpu-test` bundle). W virtual ranks share one GPU (not NVLink).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::sys::{CUevent_flags, CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr};
use half::{bf16, f16};
use inc_cuda::proto::{ERR_CALL_MISMATCH, ERR_PEER_ABORT, ERR_TIMEOUT};
use inc_cuda::{
    Algo, CallOptions, CudaError, DType, Kernels, PeerBuffers, Piece, RawCall, ReduceOp,
};

mod common;
use common::{gpu, rng};

struct Group {
    k: Kernels,
    bufs: Vec<PeerBuffers>,
    streams: Vec<Arc<CudaStream>>,
}

impl Group {
    fn new(ctx: &Arc<CudaContext>, world: usize) -> Group {
        let k = Kernels::load(ctx).unwrap();
        let mut bufs: Vec<PeerBuffers> = (0..world)
            .map(|r| PeerBuffers::new(ctx, r, world, 1 << 20).unwrap())
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
        }
        for b in &bufs {
            b.verify_peers().unwrap();
        }
        let streams = (0..world).map(|_| ctx.new_stream().unwrap()).collect();
        Group { k, bufs, streams }
    }
    fn sync(&self) {
        for s in &self.streams {
            s.synchronize().unwrap();
        }
    }
    fn max_count(&self, d: DType) -> usize {
        self.bufs[0].push_slot_bytes() as usize / 2 / d.size()
    }
}

/// Raw element words of dtype `d`: random values, with some +0.0 and -0.0.
fn gen(d: DType, seed: u64, n: usize) -> Vec<u32> {
    let mut next = rng(seed);
    (0..n)
        .map(|i| {
            let r = next();
            let v = match r % 17 {
                0 => -0.0,
                1 => 0.0,
                _ => ((r >> 8) % 4001) as f32 / 32.0 - 62.5,
            };
            let _ = i;
            bits(d, v)
        })
        .collect()
}

fn bits(d: DType, v: f32) -> u32 {
    match d {
        DType::F32 => v.to_bits(),
        DType::F16 => u32::from(f16::from_f32(v).to_bits()),
        DType::Bf16 => u32::from(bf16::from_f32(v).to_bits()),
    }
}

fn value(d: DType, b: u32) -> f32 {
    match d {
        DType::F32 => f32::from_bits(b),
        DType::F16 => f16::from_bits(b as u16).to_f32(),
        DType::Bf16 => bf16::from_bits(b as u16).to_f32(),
    }
}

/// min/max of +0.0 and -0.0 may give either zero: compare their zeros without the sign.
fn norm(d: DType, op: ReduceOp, v: Vec<u32>) -> Vec<u32> {
    if !matches!(op, ReduceOp::Min | ReduceOp::Max) {
        return v;
    }
    let neg_zero = if d == DType::F32 { 0x8000_0000 } else { 0x8000 };
    v.into_iter()
        .map(|b| if b == neg_zero { 0 } else { b })
        .collect()
}

/// Rank-order f32 fold of the inputs (the LL protocol carries -0.0 unchanged).
fn reference(d: DType, op: ReduceOp, inputs: &[Vec<u32>]) -> Vec<u32> {
    let w = inputs.len();
    let n = inputs[0].len();
    (0..n)
        .map(|i| {
            let mut acc = 0f32;
            for q in 0..w {
                let x = value(d, inputs[q][i]);
                acc = if q == 0 {
                    x
                } else {
                    match op {
                        ReduceOp::Sum | ReduceOp::Avg => acc + x,
                        ReduceOp::Min => acc.min(x),
                        ReduceOp::Max => acc.max(x),
                    }
                };
            }
            if op == ReduceOp::Avg {
                acc *= 1.0 / w as f32;
            }
            bits(d, acc)
        })
        .collect::<Vec<u32>>()
}

enum Dev {
    H(CudaSlice<u16>),
    F(CudaSlice<u32>),
}

impl Dev {
    fn upload(s: &Arc<CudaStream>, d: DType, v: &[u32]) -> Dev {
        match d {
            DType::F32 => Dev::F(s.clone_htod(v).unwrap()),
            _ => Dev::H(
                s.clone_htod(&v.iter().map(|&x| x as u16).collect::<Vec<_>>())
                    .unwrap(),
            ),
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
    fn download(&self, s: &Arc<CudaStream>, n: usize) -> Vec<u32> {
        match self {
            Dev::H(x) => s.clone_dtoh(x).unwrap()[..n]
                .iter()
                .map(|&b| u32::from(b))
                .collect(),
            Dev::F(x) => s.clone_dtoh(x).unwrap()[..n].to_vec(),
        }
    }
}

fn opts(blocks: Option<u32>, timeout: Duration) -> CallOptions {
    CallOptions { blocks, timeout }
}

/// One push call on every rank (out of place, or in place when `in_place`); checks outputs.
fn push_case(g: &Group, d: DType, op: ReduceOp, n: usize, in_place: bool, seed: u64) {
    let w = g.bufs.len();
    let inputs: Vec<Vec<u32>> = (0..w).map(|r| gen(d, seed * 31 + r as u64, n)).collect();
    let want = norm(d, op, reference(d, op, &inputs));
    let ins: Vec<Dev> = (0..w)
        .map(|r| Dev::upload(&g.streams[r], d, &inputs[r]))
        .collect();
    let outs: Vec<Dev> = (0..w).map(|r| Dev::zeros(&g.streams[r], d, n)).collect();
    g.sync();
    for r in 0..w {
        let s = &g.streams[r];
        let ip = ins[r].ptr(s);
        let o = if in_place { ip } else { outs[r].ptr(s) };
        // SAFETY: tensors hold n elements and live until the sync.
        unsafe {
            g.k.push_allreduce_raw(
                &g.bufs[r],
                s,
                d,
                op,
                ip,
                o,
                n as u64,
                CallOptions::default(),
            )
        }
        .unwrap();
    }
    g.sync();
    for r in 0..w {
        assert_eq!(g.bufs[r].read_error(), None, "rank {r}");
        let got = norm(
            d,
            op,
            if in_place { &ins[r] } else { &outs[r] }.download(&g.streams[r], n),
        );
        if got != want {
            let i = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
            panic!(
                "push {d} {op} W={w} n={n}: rank {r} element {i}: got {:#x} want {:#x}",
                got[i], want[i]
            );
        }
    }
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_push_all_worlds_dtypes_ops_sizes() {
    let Some(ctx) = gpu() else { return };
    let mut cases = 0;
    for w in 2..=8 {
        let g = Group::new(&ctx, w);
        for d in DType::ALL {
            let max = g.max_count(d);
            for op in ReduceOp::ALL {
                for (i, n) in [1usize, 7, 9, 1000, max].into_iter().enumerate() {
                    push_case(&g, d, op, n, i % 2 == 0, (w * 1000 + i) as u64);
                    cases += 1;
                }
            }
        }
    }
    println!("push: {cases} cases (W 2..8 x bf16/f16/f32 x sum/avg/min/max x 1..max) bit-exact");
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_push_1000_back_to_back_varying_sizes_dtypes_blocks() {
    let Some(ctx) = gpu() else { return };
    let w = 4;
    let g = Group::new(&ctx, w);
    let mut next = rng(77);
    let batch = 50;
    let mut total = 0;
    // One input per rank and dtype (max size), one output per call of a batch.
    let inputs: Vec<Vec<Vec<u32>>> = DType::ALL
        .iter()
        .map(|&d| {
            (0..w)
                .map(|r| gen(d, 5 + r as u64, g.max_count(d)))
                .collect()
        })
        .collect();
    let ins: Vec<Vec<Dev>> = DType::ALL
        .iter()
        .enumerate()
        .map(|(di, &d)| {
            (0..w)
                .map(|r| Dev::upload(&g.streams[r], d, &inputs[di][r]))
                .collect()
        })
        .collect();
    for _ in 0..1000 / batch {
        let mut plan = Vec::new();
        for _ in 0..batch {
            let di = (next() % 3) as usize;
            let d = DType::ALL[di];
            let op = ReduceOp::ALL[(next() % 4) as usize];
            let max = g.max_count(d);
            let n = match next() % 10 {
                0 => max,
                1 => 1,
                2..=4 => 1 + (next() as usize % max),
                _ => 1 + (next() as usize % 2048),
            };
            let blocks = if next() % 3 == 0 {
                Some(1 + (next() % 4) as u32)
            } else {
                None
            };
            plan.push((di, d, op, n, blocks));
        }
        let outs: Vec<Vec<Dev>> = plan
            .iter()
            .map(|&(_, d, _, n, _)| (0..w).map(|r| Dev::zeros(&g.streams[r], d, n)).collect())
            .collect();
        g.sync();
        for (c, &(di, d, op, n, blocks)) in plan.iter().enumerate() {
            for r in 0..w {
                let s = &g.streams[r];
                // SAFETY: tensors live until the sync below.
                unsafe {
                    g.k.push_allreduce_raw(
                        &g.bufs[r],
                        s,
                        d,
                        op,
                        ins[di][r].ptr(s),
                        outs[c][r].ptr(s),
                        n as u64,
                        opts(blocks, Duration::from_secs(10)),
                    )
                }
                .unwrap();
            }
        }
        g.sync();
        for (c, &(di, d, op, n, _)) in plan.iter().enumerate() {
            let sub: Vec<Vec<u32>> = inputs[di].iter().map(|v| v[..n].to_vec()).collect();
            let want = norm(d, op, reference(d, op, &sub));
            for r in 0..w {
                assert_eq!(g.bufs[r].read_error(), None);
                let got = norm(d, op, outs[c][r].download(&g.streams[r], n));
                assert!(
                    got == want,
                    "call {total}+{c}: {d} {op} n={n} rank {r} differs"
                );
            }
        }
        total += batch;
    }
    println!("push: {total} back-to-back calls (4 ranks, varying dtype/op/size/blocks) bit-exact");
}

/// Captures `calls` on each rank's stream into one graph per rank.
fn capture(
    g: &Group,
    mut enqueue: impl FnMut(usize, &Arc<CudaStream>),
) -> Vec<cudarc::driver::CudaGraph> {
    let mut graphs = Vec::new();
    for r in 0..g.bufs.len() {
        let s = &g.streams[r];
        s.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
            .unwrap();
        enqueue(r, s);
        graphs.push(
            s.end_capture(CUgraphInstantiate_flags(0))
                .unwrap()
                .expect("empty graph"),
        );
    }
    graphs
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_push_graph_replay() {
    let Some(ctx) = gpu() else { return };
    let w = 3;
    let g = Group::new(&ctx, w);
    let d = DType::Bf16;
    let sizes: Vec<usize> = (0..100)
        .map(|c| [1usize, 100, 4096, 131_072, 33][c % 5])
        .collect();
    let inputs: Vec<Vec<u32>> = (0..w).map(|r| gen(d, 40 + r as u64, 131_072)).collect();
    let ins: Vec<Dev> = (0..w)
        .map(|r| Dev::upload(&g.streams[r], d, &inputs[r]))
        .collect();
    let outs: Vec<Vec<Dev>> = sizes
        .iter()
        .map(|&n| (0..w).map(|r| Dev::zeros(&g.streams[r], d, n)).collect())
        .collect();
    g.sync();
    let e0: Vec<u32> = g.bufs.iter().map(|b| b.epoch().unwrap()).collect();
    let graphs = capture(&g, |r, s| {
        for (c, &n) in sizes.iter().enumerate() {
            // SAFETY: tensors outlive the graph launches.
            unsafe {
                g.k.push_allreduce_raw(
                    &g.bufs[r],
                    s,
                    d,
                    ReduceOp::Sum,
                    ins[r].ptr(s),
                    outs[c][r].ptr(s),
                    n as u64,
                    CallOptions::default(),
                )
            }
            .unwrap();
        }
    });
    for replay in 0..3u32 {
        for gr in &graphs {
            gr.launch().unwrap();
        }
        g.sync();
        for r in 0..w {
            assert_eq!(g.bufs[r].read_error(), None);
            assert_eq!(g.bufs[r].epoch().unwrap(), e0[r] + 100 * (replay + 1));
        }
        for (c, &n) in sizes.iter().enumerate() {
            let sub: Vec<Vec<u32>> = inputs.iter().map(|v| v[..n].to_vec()).collect();
            let want = reference(d, ReduceOp::Sum, &sub);
            for r in 0..w {
                assert!(
                    outs[c][r].download(&g.streams[r], n) == want,
                    "replay {replay} call {c} rank {r}"
                );
            }
        }
    }
    println!("push graph: 100 calls x {w} ranks replayed 3 times, epochs advanced, bit-exact");
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_push_missing_rank_times_out_and_mismatch_is_detected() {
    let Some(ctx) = gpu() else { return };
    // A missing rank: the others give up with TIMEOUT (or PEER_ABORT), no hang.
    let g = Group::new(&ctx, 3);
    let x: Vec<Dev> = (0..3)
        .map(|r| Dev::upload(&g.streams[r], DType::F32, &gen(DType::F32, r as u64, 4096)))
        .collect();
    g.sync();
    let t = Instant::now();
    for r in 0..2 {
        let s = &g.streams[r];
        let p = x[r].ptr(s);
        // SAFETY: x lives until the sync.
        unsafe {
            g.k.push_allreduce_raw(
                &g.bufs[r],
                s,
                DType::F32,
                ReduceOp::Sum,
                p,
                p,
                4096,
                opts(None, Duration::from_millis(300)),
            )
        }
        .unwrap();
    }
    g.streams[0].synchronize().unwrap();
    g.streams[1].synchronize().unwrap();
    let dt = t.elapsed();
    assert!(dt < Duration::from_secs(5), "took {dt:?}");
    let e: Vec<_> = (0..2)
        .map(|r| g.bufs[r].read_error().expect("error recorded"))
        .collect();
    assert!(
        e.iter()
            .all(|e| e.code == ERR_TIMEOUT || e.code == ERR_PEER_ABORT),
        "{e:?}"
    );
    assert!(
        e.iter().any(|e| e.code == ERR_TIMEOUT && e.peer == 2),
        "{e:?}"
    );
    println!("push timeout after {dt:?}: {} / {}", e[0], e[1]);
    let s = &g.streams[0];
    // SAFETY: not launched (poisoned).
    let r = unsafe {
        g.k.push_allreduce_raw(
            &g.bufs[0],
            s,
            DType::F32,
            ReduceOp::Sum,
            x[0].ptr(s),
            x[0].ptr(s),
            8,
            CallOptions::default(),
        )
    };
    assert!(matches!(r, Err(CudaError::Poisoned(_))), "{r:?}");

    // Mismatched calls: fewer and more elements than the others, and the same bytes with
    // another op (only the header line tells that one): CALL_MISMATCH.
    for (odd_count, odd_op) in [
        (4000u64, ReduceOp::Sum),
        (4096 + 64, ReduceOp::Sum),
        (4096, ReduceOp::Max),
    ] {
        let g = Group::new(&ctx, 3);
        // Compile both kernels first: a rank whose kernel compiles on first use would
        // start seconds after the others and turn the mismatch into a timeout.
        for op in [ReduceOp::Sum, odd_op] {
            g.k.function(Algo::PushOneShot, DType::F32, op).unwrap();
        }
        let x: Vec<Dev> = (0..3)
            .map(|r| Dev::upload(&g.streams[r], DType::F32, &gen(DType::F32, r as u64, 8192)))
            .collect();
        g.sync();
        for r in 0..3 {
            let s = &g.streams[r];
            let p = x[r].ptr(s);
            let n = if r == 2 { odd_count } else { 4096 };
            let op = if r == 2 { odd_op } else { ReduceOp::Sum };
            // SAFETY: x lives until the sync.
            unsafe {
                g.k.push_allreduce_raw(
                    &g.bufs[r],
                    s,
                    DType::F32,
                    op,
                    p,
                    p,
                    n,
                    opts(None, Duration::from_secs(3)),
                )
            }
            .unwrap();
        }
        g.sync();
        let e: Vec<_> = (0..3)
            .map(|r| g.bufs[r].read_error().expect("mismatch reported"))
            .collect();
        assert!(
            e.iter()
                .all(|e| e.code == ERR_CALL_MISMATCH || e.code == ERR_PEER_ABORT),
            "{e:?}"
        );
        assert!(
            e.iter().filter(|e| e.code == ERR_CALL_MISMATCH).count() >= 1,
            "{e:?}"
        );
        println!(
            "push mismatch (rank 2 count {odd_count} {odd_op}): {} | {} | {}",
            e[0], e[1], e[2]
        );
    }
    // Too large for the slot: a clear error before launch.
    let g = Group::new(&ctx, 2);
    let big = g.streams[0].alloc_zeros::<f32>(1 << 18).unwrap();
    let s = &g.streams[0];
    let p = big.device_ptr(s).0;
    // SAFETY: not launched (rejected).
    let r = unsafe {
        g.k.push_allreduce_raw(
            &g.bufs[0],
            s,
            DType::F32,
            ReduceOp::Sum,
            p,
            p,
            1 << 17,
            CallOptions::default(),
        )
    };
    assert!(matches!(r, Err(CudaError::InvalidArgument(_))), "{r:?}");
}

/// Per-call time (µs) of `calls` calls captured in one graph per rank, both ranks started
/// together; median of `reps` timed replays after one warm-up. Events on rank 0's stream.
fn time_graph(
    ctx: &Arc<CudaContext>,
    g: &Group,
    graphs: &[cudarc::driver::CudaGraph],
    calls: u32,
    reps: usize,
) -> f64 {
    let flags = Some(CUevent_flags::CU_EVENT_DEFAULT);
    let mut v = Vec::new();
    for i in 0..=reps {
        let start = ctx.new_event(flags).unwrap();
        start.record(&g.streams[0]).unwrap();
        for s in &g.streams[1..] {
            s.wait(&start).unwrap();
        }
        for gr in graphs {
            gr.launch().unwrap();
        }
        for s in &g.streams[1..] {
            let e = s.record_event(flags).unwrap();
            g.streams[0].wait(&e).unwrap();
        }
        let end = g.streams[0].record_event(flags).unwrap();
        let ms = start.elapsed_ms(&end).unwrap();
        if i > 0 {
            v.push(f64::from(ms) * 1000.0 / f64::from(calls));
        }
    }
    g.sync();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_push_vs_pull_latency_table() {
    let Some(ctx) = gpu() else { return };
    for w in [2, 4] {
        latency_table(&ctx, w);
    }
}

fn latency_table(ctx: &Arc<CudaContext>, w: usize) {
    let g = Group::new(ctx, w);
    let d = DType::Bf16;
    let max = g.max_count(d);
    let ins: Vec<Dev> = (0..w)
        .map(|r| Dev::upload(&g.streams[r], d, &gen(d, r as u64, max)))
        .collect();
    let outs: Vec<Dev> = (0..w).map(|r| Dev::zeros(&g.streams[r], d, max)).collect();
    g.sync();
    let calls = 100u32;
    println!("W={w} virtual ranks on ONE GPU (not NVLink), bf16 sum, graph of {calls} calls, median of 5 replays");
    println!(
        "{:>8} {:>14} {:>14} {:>8}",
        "bytes", "pull 1S (us)", "push 1S (us)", "speedup"
    );
    let mut bytes = 1024usize;
    while bytes <= 64 << 10 {
        let n = (bytes / 2) as u64;
        let pull = capture(&g, |r, s| {
            for _ in 0..calls {
                let c = RawCall {
                    algo: Algo::OneShot,
                    dtype: d,
                    op: ReduceOp::Sum,
                    input: ins[r].ptr(s),
                    output: outs[r].ptr(s),
                    count: n,
                    options: CallOptions::default(),
                    piece: Piece::WHOLE,
                };
                // SAFETY: tensors outlive the graph.
                unsafe { g.k.allreduce_raw(&g.bufs[r], s, &c) }.unwrap();
            }
        });
        let push = capture(&g, |r, s| {
            for _ in 0..calls {
                // SAFETY: tensors outlive the graph.
                unsafe {
                    g.k.push_allreduce_raw(
                        &g.bufs[r],
                        s,
                        d,
                        ReduceOp::Sum,
                        ins[r].ptr(s),
                        outs[r].ptr(s),
                        n,
                        CallOptions::default(),
                    )
                }
                .unwrap();
            }
        });
        let tp = time_graph(ctx, &g, &pull, calls, 5);
        let tq = time_graph(ctx, &g, &push, calls, 5);
        for r in 0..w {
            assert_eq!(g.bufs[r].read_error(), None);
        }
        println!("{bytes:>8} {tp:>14.2} {tq:>14.2} {:>7.2}x", tp / tq);
        bytes *= 2;
    }
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_push_through_allreduce_raw_and_typed_api() {
    let Some(ctx) = gpu() else { return };
    let w = 2;
    let g = Group::new(&ctx, w);
    let d = DType::F32;
    let n = 1000usize;
    let inputs: Vec<Vec<u32>> = (0..w).map(|r| gen(d, 900 + r as u64, n)).collect();
    let want = norm(d, ReduceOp::Max, reference(d, ReduceOp::Max, &inputs));
    let ins: Vec<Dev> = (0..w)
        .map(|r| Dev::upload(&g.streams[r], d, &inputs[r]))
        .collect();
    let outs: Vec<Dev> = (0..w).map(|r| Dev::zeros(&g.streams[r], d, n)).collect();
    g.sync();
    for r in 0..w {
        let s = &g.streams[r];
        let c = RawCall {
            algo: Algo::PushOneShot,
            dtype: d,
            op: ReduceOp::Max,
            input: ins[r].ptr(s),
            output: outs[r].ptr(s),
            count: n as u64,
            options: CallOptions::default(),
            piece: Piece::WHOLE,
        };
        // SAFETY: tensors live until the sync.
        unsafe { g.k.allreduce_raw(&g.bufs[r], s, &c) }.unwrap();
    }
    g.sync();
    for r in 0..w {
        assert_eq!(g.bufs[r].read_error(), None);
        assert!(
            norm(d, ReduceOp::Max, outs[r].download(&g.streams[r], n)) == want,
            "rank {r}"
        );
    }
    // Typed in-place API, f16.
    let d = DType::F16;
    let inputs: Vec<Vec<u32>> = (0..w).map(|r| gen(d, 950 + r as u64, n)).collect();
    let want = reference(d, ReduceOp::Avg, &inputs);
    let mut xs: Vec<CudaSlice<f16>> = (0..w)
        .map(|r| {
            let v: Vec<f16> = inputs[r]
                .iter()
                .map(|&b| f16::from_bits(b as u16))
                .collect();
            g.streams[r].clone_htod(&v).unwrap()
        })
        .collect();
    g.sync();
    for (r, x) in xs.iter_mut().enumerate() {
        g.k.push_allreduce_in_place(
            &g.bufs[r],
            &g.streams[r],
            ReduceOp::Avg,
            x,
            None,
            CallOptions::default(),
        )
        .unwrap();
    }
    g.sync();
    for r in 0..w {
        let got: Vec<u32> = g.streams[r]
            .clone_dtoh(&xs[r])
            .unwrap()
            .iter()
            .map(|v| u32::from(v.to_bits()))
            .collect();
        assert!(got == want, "typed rank {r}");
    }
    println!("push via allreduce_raw(Algo::PushOneShot) and push_allreduce_in_place: OK");
}
