//! Per-call host costs of `inc_comm::Comm`: the algorithm choice (pure, no allocation) and
//! a whole allreduce on the sim backend at world 1 (locks, poison check, choice,
//! counters, the CPU "kernel" of 16 bytes) and at world 2 (two threads, one-shot, 1 KiB).
//! On the sim backend there is no kernel launch: the world-1 call is an upper bound of the
//! host overhead that a cuda call pays before its launch.
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench harness: a setup failure should stop it

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use half::bf16;
use inc_comm::{BackendKind, Capacity, Comm, CommOptions, DType, ReduceOp, Selector};
use inc_topo::TopologyClass;

fn opts() -> CommOptions {
    CommOptions::default()
        .with_backend(BackendKind::Sim)
        .with_timeout(Duration::from_secs(30))
        .with_buffer_bytes(Some(1 << 20))
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("comm");
    let cap = Capacity {
        one_shot: 64 << 20,
        two_shot: 64 << 20,
        hcm: 32 << 20,
        push_one_shot: 256 << 10,
        lines: 2 << 20,
    };
    let sel = Selector::new(
        8,
        TopologyClass::FullyConnected,
        &CommOptions::default(),
        cap,
        None,
    );
    let mut bytes = 0u64;
    g.bench_function("select/selector_fully_connected_8", |b| {
        b.iter(|| {
            bytes = (bytes + 4099) % (128 << 20);
            sel.select(black_box(bytes), DType::Bf16)
        })
    });

    let one = Comm::init_threads(&[0], opts()).unwrap().pop().unwrap();
    g.bench_function("select/comm_select_algo", |b| {
        b.iter(|| one.select_algo(black_box(4096), DType::Bf16))
    });
    let input = vec![bf16::from_f32(1.0); 8];
    let mut output = vec![bf16::from_f32(0.0); 8];
    g.bench_function("allreduce/sim_world1_16B", |b| {
        b.iter(|| {
            one.allreduce_host_out(black_box(&input), &mut output, ReduceOp::Sum)
                .unwrap()
                .wait()
                .unwrap()
        })
    });
    assert_eq!(output[0], bf16::from_f32(1.0));

    let two = Comm::init_threads(&[0, 1], opts()).unwrap();
    let input = vec![bf16::from_f32(1.0); 512];
    g.bench_function("allreduce/sim_world2_one_shot_1KiB", |b| {
        b.iter_custom(|iters| {
            let start = Barrier::new(2);
            std::thread::scope(|s| {
                let hs: Vec<_> = two
                    .iter()
                    .map(|c| {
                        let (start, input) = (&start, &input);
                        s.spawn(move || {
                            let mut out = vec![bf16::from_f32(0.0); input.len()];
                            start.wait();
                            let t0 = Instant::now();
                            for _ in 0..iters {
                                c.allreduce_host_out(input, &mut out, ReduceOp::Sum)
                                    .unwrap()
                                    .wait()
                                    .unwrap();
                            }
                            let t = t0.elapsed();
                            assert_eq!(out[0], bf16::from_f32(2.0));
                            t
                        })
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().unwrap())
                    .max()
                    .unwrap_or_default()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
