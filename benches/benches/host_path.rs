//! Host CPU time of one eager device allreduce, layer by layer (issue 13: "the host path of
//! one call at most 2 us"), on one GPU at world 1 (the host path of a call does not depend
//! on the world size; one GPU suffices): enqueue only, 64 calls back to back, then a stream
//! sync that is not timed.
//!
//! - `raw_launch`: `cuLaunchKernelEx` (PDL attribute) of the one-shot kernel with arguments
//!   prepared once: the driver's floor;
//! - `raw_launch_event`: the same plus `cuEventRecord` (a `Work` needs its event);
//! - `inc_cuda_allreduce_raw`: `Kernels::allreduce_raw` (validation, launch plan, arguments,
//!   launch): inc-cuda's layer;
//! - `comm_allreduce_out`: `Comm::allreduce_out` (lock, health check, stream checks,
//!   selection, ordering, launch, event, `Work`), dropped at once.
//!
//! Without a GPU it prints a note and measures nothing. Run on a GPU host:
//! `cargo bench -p inc-benches --bench host_path -- --quick --noplot` (or build with
//! `--no-run` and run the binary with `--bench`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench harness: a setup failure should stop it

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use cudarc::driver::{CudaContext, CudaStream, DevicePtr, DevicePtrMut};
use half::bf16;
use inc_comm::{BackendKind, Comm, CommOptions, ReduceOp};
use inc_cuda::{CallOptions, Kernels, PeerBuffers, Piece, RawCall};
use inc_sim::{Algo, DType};

const N: usize = 512; // 1 KiB of bf16
const BATCH: u64 = 64;

/// Times `f` over `iters` calls in batches of BATCH, syncing `s` (untimed) after each.
fn timed(iters: u64, s: &Arc<CudaStream>, mut f: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(BATCH);
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        total += t.elapsed();
        s.synchronize().unwrap();
        left -= n;
    }
    total
}

fn bench(c: &mut Criterion) {
    if inc_comm::cuda_device_count() == 0 {
        eprintln!("host_path: no CUDA device here, nothing measured");
        return;
    }
    let mut g = c.benchmark_group("host_path");

    // inc-cuda alone: world 1, one rank's buffers, no peers.
    let ctx: Arc<CudaContext> = CudaContext::new(0).unwrap();
    // SAFETY: every buffer here is used on one stream, synchronised before reuse.
    unsafe { ctx.disable_event_tracking() };
    let s = ctx.new_stream().unwrap();
    let k = Kernels::load(&ctx).unwrap();
    let bufs = PeerBuffers::new(&ctx, 0, 1, 1 << 20).unwrap();
    let x = s.clone_htod(&[bf16::ONE; N]).unwrap();
    let mut y = s.alloc_zeros::<bf16>(N).unwrap();
    let (xp, _gx) = x.device_ptr(&s);
    let (yp, _gy) = y.device_ptr_mut(&s);
    let call = RawCall {
        algo: Algo::OneShot,
        dtype: DType::Bf16,
        op: inc_sim::ReduceOp::Sum,
        input: xp,
        output: yp,
        count: N as u64,
        options: CallOptions::default(),
        piece: Piece::WHOLE,
    };
    // first call compiles or loads the instance
    // SAFETY: xp/yp hold N bf16 on this device and outlive every call (synchronised below).
    unsafe { k.allreduce_raw(&bufs, &s, &call) }.unwrap();
    s.synchronize().unwrap();
    let (args, plan) = k.prepare(&bufs, &call).unwrap();
    let f = k
        .function(Algo::OneShot, DType::Bf16, inc_sim::ReduceOp::Sum)
        .unwrap();
    let pdl = k.pdl(&bufs);
    let ev = ctx.new_event(None).unwrap();
    let launch = || {
        // SAFETY: f takes IncArgs; args point at live buffers (see above).
        unsafe {
            inc_cuda::sys::launch(
                f.cu_function(),
                plan.blocks,
                plan.threads,
                s.cu_stream(),
                &args,
                pdl,
            )
        }
        .unwrap();
    };
    g.bench_function("raw_launch", |b| {
        b.iter_custom(|iters| timed(iters, &s, launch))
    });
    g.bench_function("raw_launch_event", |b| {
        b.iter_custom(|iters| {
            timed(iters, &s, || {
                launch();
                ev.record(&s).unwrap();
            })
        })
    });
    g.bench_function("inc_cuda_allreduce_raw", |b| {
        b.iter_custom(|iters| {
            timed(iters, &s, || {
                // SAFETY: as above.
                unsafe { k.allreduce_raw(&bufs, &s, &call) }.unwrap();
            })
        })
    });
    s.synchronize().unwrap();

    // The library: a communicator of one rank on device 0.
    let opts = CommOptions::default().with_backend(BackendKind::Cuda);
    let comm = Comm::init_threads(&[0], opts).unwrap().pop().unwrap();
    let cs = comm.stream().unwrap().clone();
    // SAFETY: as above (one stream, synchronised).
    unsafe { cs.context().disable_event_tracking() };
    let cx = cs.clone_htod(&[bf16::ONE; N]).unwrap();
    let mut cy = cs.alloc_zeros::<bf16>(N).unwrap();
    comm.allreduce_out(&cx, &mut cy, ReduceOp::Sum, &cs)
        .unwrap()
        .wait()
        .unwrap();
    g.bench_function("comm_allreduce_out", |b| {
        b.iter_custom(|iters| {
            timed(iters, &cs, || {
                drop(
                    comm.allreduce_out(&cx, &mut cy, ReduceOp::Sum, &cs)
                        .unwrap(),
                );
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
