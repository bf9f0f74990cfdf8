//! The protocol simulator's throughput: schedules per second of the inc one-shot protocol
//! at world 8 with 4 blocks (the checker's unit of work in CI and proptest).
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench harness: a setup failure should stop it

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use inc_sim::{check, Algo, Protocol, SimConfig};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sim");
    for (algo, world, bytes) in [
        (Algo::OneShot, 8, 256),
        (Algo::TwoShot, 8, 256),
        (Algo::OneShot, 2, 256),
    ] {
        let mut cfg = SimConfig::new(Protocol::Inc, algo, world, bytes, 2);
        cfg.blocks = vec![4];
        // One schedule must be clean, or the number means nothing.
        let r = check(&cfg, 1, 1).unwrap();
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        let per = 8u64;
        g.throughput(Throughput::Elements(per));
        let mut seed = 0u64;
        g.bench_function(
            format!("schedules/{}_w{world}_4blocks_{bytes}B_2calls", algo.name()),
            |b| {
                b.iter(|| {
                    seed = seed.wrapping_add(per);
                    check(black_box(&cfg), per, seed).unwrap()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
