//! Topology costs paid once per communicator: parsing `nvidia-smi topo -m`, classifying a
//! mesh, and the complete hybrid-cube-mesh solver (on a DGX-1 mesh numbered arbitrarily).
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench harness: a setup failure should stop it

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use inc_topo::{classify, parse_nvidia_smi_topo, solve_hcm, NvlMesh, TopologyClass};

const DGX1_TEXT: &str =
    include_str!("../../crates/inc-topo/tests/fixtures/dgx1-v100-8x-hcm-mlx5-pytorch-ddp.txt");
const A100_TEXT: &str =
    include_str!("../../crates/inc-topo/tests/fixtures/a100-8x-nv12-aws-p4d.txt");

fn dgx1() -> NvlMesh {
    NvlMesh::from_edges(
        8,
        &[
            (0, 1, 1),
            (0, 2, 1),
            (0, 3, 2),
            (1, 2, 2),
            (1, 3, 1),
            (2, 3, 2),
            (4, 5, 1),
            (4, 6, 1),
            (4, 7, 2),
            (5, 6, 2),
            (5, 7, 1),
            (6, 7, 2),
            (0, 4, 2),
            (1, 5, 2),
            (2, 6, 1),
            (3, 7, 1),
        ],
    )
    .unwrap()
    .permuted(&[5, 2, 7, 0, 1, 6, 3, 4])
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let hcm = dgx1();
    let full = NvlMesh::from_fn(8, |i, j| if i == j { 0 } else { 18 }).unwrap();
    // An almost-HCM the solver must search exhaustively before saying no.
    let mut broken = hcm.rows();
    broken[0][1] = 0;
    broken[1][0] = 0;
    broken[0][2] = 0;
    broken[2][0] = 0;
    let broken = NvlMesh::new(broken).unwrap();
    assert!(matches!(classify(&hcm), TopologyClass::HybridCubeMesh(_)));
    assert_eq!(classify(&full), TopologyClass::FullyConnected);

    let mut g = c.benchmark_group("topo");
    g.bench_function("classify/fully_connected_8", |b| {
        b.iter(|| classify(black_box(&full)))
    });
    g.bench_function("classify/hcm_dgx1_permuted", |b| {
        b.iter(|| classify(black_box(&hcm)))
    });
    g.bench_function("solve_hcm/dgx1_permuted", |b| {
        b.iter(|| solve_hcm(black_box(&hcm)))
    });
    g.bench_function("solve_hcm/not_hcm", |b| {
        b.iter(|| solve_hcm(black_box(&broken)))
    });
    g.bench_function("parse/dgx1_text", |b| {
        b.iter(|| parse_nvidia_smi_topo(black_box(DGX1_TEXT)))
    });
    g.bench_function("parse/a100_text", |b| {
        b.iter(|| parse_nvidia_smi_topo(black_box(A100_TEXT)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
