#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! CPU data backend: ranks as threads (and as processes over /dev/shm) running the inc
//! protocol on real data, compared bit-for-bit with the reference. The two-shot runs in
//! both its forms: the form rule picks lines for the small calls here
//! (`tests/cpu_lines.rs`), so the barrier form is also forced.

use std::sync::Arc;
use std::time::Duration;

use inc_sim::cpu::{reference_allreduce, CpuConfig, CpuRank, Region, RegionLayout, TwoShotForm};
use inc_sim::program::CUBE_MESH_8;
use inc_sim::{Algo, DType, ReduceOp, SimError, ERR_CALL_MISMATCH, ERR_PEER_ABORT, ERR_TIMEOUT};

mod common;
use common::{cpu_ranks, local_regions, random_input, run_all, Call, Rng};

#[test]
fn every_algo_dtype_op_matches_reference_bit_for_bit() {
    let cfg = CpuConfig {
        blocks: 2,
        threads_per_block: 2,
        timeout: Duration::from_secs(20),
    };
    let mut rng = Rng(0x1234_5678);
    for world in 1..=8usize {
        let hcm = world == 8;
        // two-shot needs 2 x C + W chunks of a half (700 f32: 5.6 KB), one-shot W x C
        // (its receive areas; 700 f32 at world 8: 22.4 KB).
        let ranks = cpu_ranks(&local_regions(world, 24 << 10), cfg, hcm);
        let mut calls: Vec<Call> = Vec::new();
        let algos: &[Algo] = if hcm {
            &Algo::ALL
        } else {
            &[Algo::OneShot, Algo::TwoShot]
        };
        for &algo in algos {
            for dtype in DType::ALL {
                for op in ReduceOp::ALL {
                    let count = 1 + rng.below(if algo == Algo::Hcm { 300 } else { 700 }) as usize;
                    let blocks = 1 + rng.below(4) as usize;
                    let inputs = (0..world)
                        .map(|_| random_input(&mut rng, dtype, count, 64.0))
                        .collect();
                    calls.push((algo, dtype, op, blocks, inputs));
                }
            }
        }
        let res = run_all(&ranks, &calls, None);
        for (i, (algo, dtype, op, _, inputs)) in calls.iter().enumerate() {
            let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
            let want = reference_allreduce(*algo, *dtype, *op, &refs, hcm.then_some(&CUBE_MESH_8))
                .unwrap();
            for (r, rr) in res.iter().enumerate() {
                let got = rr[i]
                    .as_ref()
                    .unwrap_or_else(|e| panic!("w{world} r{r} {algo} {dtype} {op}: {e}"));
                assert_eq!(got, &want, "world {world} rank {r} {algo} {dtype} {op}");
            }
        }
    }
}

/// The two-shot's barrier form, forced (the form rule would pick lines for these sizes).
#[test]
fn two_shot_barrier_form_matches_reference_bit_for_bit() {
    let cfg = CpuConfig {
        blocks: 2,
        threads_per_block: 2,
        timeout: Duration::from_secs(20),
    };
    let mut rng = Rng(0x2b2b);
    for world in 2..=8usize {
        let ranks = cpu_ranks(&local_regions(world, 24 << 10), cfg, false);
        for dtype in DType::ALL {
            for op in ReduceOp::ALL {
                let count = 1 + rng.below(700) as usize;
                let blocks = 1 + rng.below(4) as usize;
                let inputs: Vec<Vec<u8>> = (0..world)
                    .map(|_| random_input(&mut rng, dtype, count, 3.0))
                    .collect();
                let res: Vec<Vec<u8>> = std::thread::scope(|s| {
                    let hs: Vec<_> = ranks
                        .iter()
                        .zip(&inputs)
                        .map(|(rank, x)| {
                            s.spawn(move || {
                                let mut out = vec![0u8; x.len()];
                                let f = TwoShotForm::Barrier;
                                rank.allreduce_two_shot(f, dtype, op, blocks, x, &mut out)
                                    .map(|()| out)
                            })
                        })
                        .collect();
                    hs.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
                });
                let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
                let want = reference_allreduce(Algo::TwoShot, dtype, op, &refs, None).unwrap();
                for (r, got) in res.iter().enumerate() {
                    assert_eq!(got, &want, "world {world} rank {r} {dtype} {op} {count}");
                }
            }
        }
    }
}

#[test]
fn reference_is_a_real_allreduce() {
    // Independent check of the reference: small integers in f32 are exact in any order.
    let inputs: Vec<Vec<u8>> = (0..8)
        .map(|r| {
            (0..5)
                .flat_map(|i| ((r * 10 + i) as f32).to_ne_bytes())
                .collect()
        })
        .collect();
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    for algo in Algo::ALL {
        let out = reference_allreduce(algo, DType::F32, ReduceOp::Sum, &refs, Some(&CUBE_MESH_8))
            .unwrap();
        let vals: Vec<f32> = out
            .chunks(4)
            .map(|c| f32::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        let want: Vec<f32> = (0..5)
            .map(|i| (0..8).map(|r| (r * 10 + i) as f32).sum())
            .collect();
        assert_eq!(vals, want, "{algo}");
        let out = reference_allreduce(algo, DType::F32, ReduceOp::Max, &refs, Some(&CUBE_MESH_8))
            .unwrap();
        assert_eq!(f32::from_ne_bytes(out[..4].try_into().unwrap()), 70.0);
    }
}

#[test]
fn back_to_back_calls_with_random_delays() {
    let cfg = CpuConfig {
        blocks: 3,
        threads_per_block: 1,
        timeout: Duration::from_secs(20),
    };
    let world = 4;
    // one-shot keeps W - 1 receive areas of C chunks: 500 bf16 at world 4 need 3 KB.
    let ranks = cpu_ranks(&local_regions(world, 4096), cfg, false);
    let mut rng = Rng(99);
    let calls: Vec<Call> = (0..40)
        .map(|i| {
            let algo = if i % 2 == 0 {
                Algo::OneShot
            } else {
                Algo::TwoShot
            };
            let count = 1 + rng.below(500) as usize;
            let blocks = 1 + rng.below(4) as usize;
            let inputs = (0..world)
                .map(|_| random_input(&mut rng, DType::Bf16, count, 64.0))
                .collect();
            (algo, DType::Bf16, ReduceOp::Sum, blocks, inputs)
        })
        .collect();
    let res = run_all(&ranks, &calls, Some(5));
    for (i, (algo, dtype, op, _, inputs)) in calls.iter().enumerate() {
        let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let want = reference_allreduce(*algo, *dtype, *op, &refs, None).unwrap();
        for rr in &res {
            assert_eq!(rr[i].as_ref().unwrap(), &want, "call {i}");
        }
    }
}

/// PROTOCOL.md "Kernel prologue / epilogue": every block advances its own epoch word and
/// block 0 those of the blocks not launched, so after every call all MAX_BLOCKS words hold
/// its epoch whatever the grid of this call and the previous ones (a grid that grows
/// finds its new blocks' words current).
#[test]
fn every_block_epoch_word_holds_the_last_epoch_whatever_the_grids() {
    let cfg = CpuConfig {
        blocks: 2,
        threads_per_block: 2,
        timeout: Duration::from_secs(20),
    };
    let world = 2;
    let ranks = cpu_ranks(&local_regions(world, 8192), cfg, false);
    let mut rng = Rng(99);
    let mut calls: Vec<Call> = Vec::new();
    for (i, blocks) in [3usize, 1, 5, 2, 7, 1].into_iter().enumerate() {
        let algo = if i % 2 == 0 {
            Algo::OneShot
        } else {
            Algo::TwoShot
        };
        let inputs = (0..world)
            .map(|_| random_input(&mut rng, DType::F32, 300, 64.0))
            .collect();
        calls.push((algo, DType::F32, ReduceOp::Sum, blocks, inputs));
    }
    for per_rank in run_all(&ranks, &calls, Some(5)) {
        for r in per_rank {
            r.unwrap();
        }
    }
    for rank in &ranks {
        let words = rank.epoch_words().unwrap();
        assert!(words.iter().all(|&w| w == calls.len() as u32), "{words:?}");
    }
}

#[test]
fn a_rank_that_never_calls_makes_the_others_time_out() {
    let cfg = CpuConfig {
        blocks: 2,
        threads_per_block: 1,
        timeout: Duration::from_millis(300),
    };
    let ranks = cpu_ranks(&local_regions(3, 1024), cfg, false);
    let live = &ranks[..2];
    let input = vec![0u8; 64];
    let t0 = std::time::Instant::now();
    let res: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = live
            .iter()
            .map(|r| {
                let input = &input;
                s.spawn(move || {
                    let mut out = vec![0u8; 64];
                    let first =
                        r.allreduce(Algo::OneShot, DType::F32, ReduceOp::Sum, 2, input, &mut out);
                    let second =
                        r.allreduce(Algo::OneShot, DType::F32, ReduceOp::Sum, 2, input, &mut out);
                    (first, second)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(t0.elapsed() < Duration::from_secs(10));
    // Poisoned: the next call fails fast with an error too.
    common::assert_dead_peer_outcome(&res);
    assert!(ranks[0].is_aborted() && ranks[2].is_aborted());
    let rec = ranks[0].error_record();
    assert!(rec.code == ERR_TIMEOUT || rec.code == ERR_PEER_ABORT);
}

#[test]
fn mismatched_sizes_fail_on_every_rank() {
    for form in [TwoShotForm::Barrier, TwoShotForm::Lines] {
        mismatched_sizes_fail_in(form);
    }
}

fn mismatched_sizes_fail_in(form: TwoShotForm) {
    let cfg = CpuConfig {
        blocks: 2,
        threads_per_block: 1,
        timeout: Duration::from_secs(20),
    };
    let ranks = cpu_ranks(&local_regions(3, 1024), cfg, false);
    let res: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = ranks
            .iter()
            .enumerate()
            .map(|(r, rank)| {
                s.spawn(move || {
                    let n = if r == 1 { 40 } else { 48 };
                    let input = vec![0u8; n];
                    let mut out = vec![0u8; n];
                    rank.allreduce_two_shot(form, DType::F32, ReduceOp::Sum, 2, &input, &mut out)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let codes: Vec<u32> = res
        .iter()
        .map(|r| r.as_ref().unwrap_err().code().unwrap())
        .collect();
    assert!(codes.contains(&ERR_CALL_MISMATCH), "{form:?}: {codes:?}");
    assert!(
        codes
            .iter()
            .all(|&c| c == ERR_CALL_MISMATCH || c == ERR_PEER_ABORT),
        "{form:?}: {codes:?}"
    );
}

#[test]
fn bad_arguments_are_errors() {
    let cfg = CpuConfig::default();
    let ranks = cpu_ranks(&local_regions(2, 256), cfg, false);
    let mut out = vec![0u8; 6];
    let r = &ranks[0];
    assert!(matches!(
        r.allreduce(
            Algo::OneShot,
            DType::F32,
            ReduceOp::Sum,
            1,
            &[0; 6],
            &mut out
        ),
        Err(SimError::Config(_))
    ));
    assert!(r
        .allreduce(
            Algo::OneShot,
            DType::F16,
            ReduceOp::Sum,
            0,
            &[0; 6],
            &mut out
        )
        .is_err());
    assert!(r
        .allreduce(
            Algo::OneShot,
            DType::F16,
            ReduceOp::Sum,
            33,
            &[0; 6],
            &mut out
        )
        .is_err());
    assert!(r
        .allreduce(Algo::Hcm, DType::F16, ReduceOp::Sum, 1, &[0; 6], &mut out)
        .is_err());
    let big = vec![0u8; 4096];
    let mut big_out = vec![0u8; 4096];
    assert!(r
        .allreduce(
            Algo::OneShot,
            DType::F16,
            ReduceOp::Sum,
            1,
            &big,
            &mut big_out
        )
        .is_err());
    assert!(r
        .allreduce(
            Algo::OneShot,
            DType::F16,
            ReduceOp::Sum,
            1,
            &[0; 6],
            &mut [0u8; 4]
        )
        .is_err());
    let regions: Vec<Arc<Region>> = (0..2)
        .map(|_| Arc::new(Region::new_local(RegionLayout::new(64))))
        .collect();
    assert!(CpuRank::new(2, 2, regions.clone(), cfg, None).is_err());
    assert!(CpuRank::new(0, 3, regions.clone(), cfg, None).is_err());
    assert!(CpuRank::new(0, 2, regions, cfg, Some([1, 2, 3, 4])).is_err());
    let mut bad = CUBE_MESH_8;
    bad[0][3] = 5;
    assert!(inc_sim::cpu::validate_hcm(&bad).is_err());
    assert!(inc_sim::cpu::validate_hcm(&CUBE_MESH_8).is_ok());
}

const CHILD_ENV: &str = "INC_SIM_SHM_CHILD";

fn shm_rank(rank: usize, tag: &str) -> Vec<Vec<u8>> {
    let layout = RegionLayout::new(4096);
    let cfg = CpuConfig {
        blocks: 2,
        threads_per_block: 2,
        timeout: Duration::from_secs(20),
    };
    let name = |r: usize| format!("inc-sim-shm-{tag}-{r}");
    let mine = Arc::new(Region::create_shm(&name(rank), layout).unwrap());
    let other = 1 - rank;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let theirs = loop {
        match Region::open_shm(&name(other), layout) {
            Ok(r) => break Arc::new(r),
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("peer region never appeared: {e}"),
        }
    };
    let regions = if rank == 0 {
        vec![mine.clone(), theirs]
    } else {
        vec![theirs, mine.clone()]
    };
    let r = CpuRank::new(rank, 2, regions, cfg, None).unwrap();
    let mut outs = Vec::new();
    // one-shot, the two-shot as the rule picks it (lines at this size), its barrier form
    for call in 0..12u32 {
        let input: Vec<u8> = (0..333u32)
            .flat_map(|i| ((i * (rank as u32 + 1) + call) as f32).to_ne_bytes())
            .collect();
        let mut out = vec![0u8; input.len()];
        let (d, op) = (DType::F32, ReduceOp::Sum);
        match call % 3 {
            0 => r.allreduce(Algo::OneShot, d, op, 2, &input, &mut out),
            1 => r.allreduce(Algo::TwoShot, d, op, 2, &input, &mut out),
            _ => r.allreduce_two_shot(TwoShotForm::Barrier, d, op, 2, &input, &mut out),
        }
        .unwrap();
        outs.push(out);
    }
    // The peer keeps its own mapping of my region even after I unlink it.
    outs
}

#[test]
fn two_processes_over_shared_memory() {
    if let Ok(tag) = std::env::var(CHILD_ENV) {
        shm_rank(1, &tag);
        return;
    }
    let tag = format!("{}", std::process::id());
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "two_processes_over_shared_memory",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &tag)
        .spawn()
        .unwrap();
    let outs = shm_rank(0, &tag);
    let status = child.wait().unwrap();
    assert!(status.success());
    for (call, out) in outs.iter().enumerate() {
        let vals: Vec<f32> = out
            .chunks(4)
            .map(|c| f32::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        for (i, v) in vals.iter().enumerate() {
            let i = i as u32;
            let c = call as u32;
            assert_eq!(*v, (i + c) as f32 + (2 * i + c) as f32);
        }
    }
}

/// An out-of-place call whose output is not as long as its input fails with a
/// configuration error on every entry point (barrier paths, push one-shot, two-shot in
/// either form) before anything moves, and leaves the output untouched.
#[test]
fn output_of_another_length_is_a_config_error() {
    let regions = local_regions(1, 1 << 16);
    let cfg = CpuConfig {
        blocks: 1,
        threads_per_block: 1,
        timeout: Duration::from_secs(5),
    };
    let r = &cpu_ranks(&regions, cfg, false)[0];
    let input = vec![1u8; 64];
    let mut out = vec![7u8; 32];
    let calls: Vec<Result<(), SimError>> = vec![
        r.allreduce(
            Algo::OneShot,
            DType::F32,
            ReduceOp::Sum,
            1,
            &input,
            &mut out,
        ),
        r.push_allreduce(DType::F32, ReduceOp::Sum, 1, &input, &mut out),
        r.allreduce_two_shot(
            TwoShotForm::Barrier,
            DType::F32,
            ReduceOp::Sum,
            1,
            &input,
            &mut out,
        ),
        r.allreduce_two_shot(
            TwoShotForm::Lines,
            DType::F32,
            ReduceOp::Sum,
            1,
            &input,
            &mut out,
        ),
    ];
    for (i, res) in calls.into_iter().enumerate() {
        match res {
            Err(SimError::Config(m)) => {
                assert!(m.contains("output has 32 bytes, input 64"), "{i}: {m}")
            }
            other => panic!("call {i}: {other:?}"),
        }
    }
    assert!(out.iter().all(|&b| b == 7));
}
