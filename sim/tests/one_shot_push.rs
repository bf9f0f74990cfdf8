#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! one-shot, push form (PROTOCOL.md "one-shot", `inc::one_shot`, kernel
//! `kernels/one_shot.cu`): each rank stores its input chunks into every peer's receive
//! area `R[me]` of the call's parity half (PushIn), start barrier, then folds its own input
//! and its own receive areas in rank order (ReduceRecv, local reads). No end barrier: the
//! parity halves stand in for it. The zero-copy one-shot keeps the pull form
//! (`inc::one_shot_zc`).
//!
//! The checker is clean at worlds 2..4 with several blocks and calls (PCT, walk,
//! adversarial, faults); PushIn after the start barrier and one receive area instead of
//! two parity halves are caught. The CPU backend equals the reference at worlds 2..4, and
//! its receive areas sit where the kernel puts them (`R[s]` at chunk `s x C` of a half).

use std::sync::Arc;
use std::time::Duration;

use inc_sim::cpu::{reference_allreduce, CpuConfig, CpuRank, Region};
use inc_sim::{
    check, replay, Algo, DType, Fault, Protocol, RandomMode, ReduceOp, Scheduler, SimConfig,
    ViolationKind, Weakening,
};

mod common;
use common::{clean, cpu_ranks, local_regions, random_input, run_all, Call, Rng};

fn cfg(world: usize, bytes: usize, calls: usize) -> SimConfig {
    let mut c = SimConfig::new(Protocol::Inc, Algo::OneShot, world, bytes, calls);
    c.blocks = vec![2, 1, 3];
    c
}

#[test]
fn one_shot_push_is_clean_under_pct_world_2_to_4() {
    for world in 2..=4 {
        // 1 chunk, a partial tail chunk, a chunk count that is not a multiple of the grid.
        for bytes in [16, 100, 256] {
            for seed in [1u64, 1_000_003] {
                let c = cfg(world, bytes, 4);
                let r = clean(&c, 60, seed + (world * 1000 + bytes) as u64);
                assert_eq!(r.schedules, 60);
            }
        }
    }
}

#[test]
fn one_shot_push_is_clean_under_walk_other_grids_and_a_slow_rank() {
    for world in 2..=4 {
        for blocks in [vec![1], vec![3, 1], vec![4, 2, 1]] {
            let mut c = cfg(world, 144, 5);
            c.blocks = blocks;
            c.random = RandomMode::Walk;
            clean(&c, 60, 17 + world as u64);
            c.threads_per_block = 2;
            clean(&c, 30, 29 + world as u64);
        }
        for slow in 0..world {
            let mut c = cfg(world, 100, 4);
            c.scheduler = Scheduler::Adversarial {
                slow_rank: slow,
                stall: Some(((slow + 1) % world, 0)),
            };
            clean(&c, 8, 5);
        }
    }
}

#[test]
fn one_shot_push_exhaustive_tiny() {
    let mut c = cfg(2, 32, 2);
    c.blocks = vec![1];
    c.scheduler = Scheduler::Exhaustive { depth: 14 };
    let r = clean(&c, 20_000, 0);
    assert!(r.schedules > 100, "{}", r.schedules);
}

#[test]
fn one_shot_push_faults_are_detected() {
    for world in [2, 4] {
        for fault in [
            Fault::Kill { rank: 1, call: 1 },
            Fault::Mismatch { rank: 1, call: 1 },
            Fault::EpochSkew { rank: 0, delta: 2 },
        ] {
            let mut c = cfg(world, 64, 3);
            c.fault = Some(fault);
            clean(&c, 30, 4);
        }
    }
}

/// The start flag's release publishes the pushed chunks: with PushIn after the start
/// barrier a peer may fold its receive area before my chunk landed there.
#[test]
fn one_shot_push_after_the_barrier_is_caught() {
    for world in 2..=4 {
        let mut c = cfg(world, 64, 2);
        c.weaken = Some(Weakening::ScatterAfterBarrier);
        let r = check(&c, 200, 3).unwrap();
        let v = r
            .violations
            .iter()
            .find(|v| v.kind == ViolationKind::StaleRead)
            .unwrap_or_else(|| panic!("world {world}: {:?}", r.violations));
        assert!(v.message.contains("ReduceRecv"), "{}", v.message);
        assert!(v.message.contains("own R["), "{}", v.message);
        let again = replay(&c, &v.schedule).unwrap();
        assert!(
            again.violations.iter().any(|x| x.kind == v.kind),
            "world {world}: replay lost the stale read"
        );
        // The weakened program runs the barrier before PushIn.
        let text = v.render();
        let bar = text.find("Barrier(start, others) done");
        let push = text.find("PushIn done");
        if let (Some(b), Some(p)) = (bar, push) {
            assert!(b < p, "{text}");
        }
    }
}

/// One receive area instead of two parity halves (and no end barrier): a fast rank's
/// PushIn of the next call overwrites what a slow peer still folds.
#[test]
fn one_shot_push_with_one_receive_area_is_caught() {
    let mut c = cfg(2, 64, 2);
    c.blocks = vec![1];
    c.weaken = Some(Weakening::NoRotation);
    c.scheduler = Scheduler::Adversarial {
        slow_rank: 1,
        stall: None,
    };
    let r = check(&c, 1, 0).unwrap();
    let v = r
        .violations
        .iter()
        .find(|v| v.kind == ViolationKind::StaleRead)
        .unwrap_or_else(|| panic!("{:?}", r.violations));
    assert!(
        v.message.contains("overwritten by a later call"),
        "{}",
        v.message
    );
}

/// The traces name the push form's steps; the zero-copy one-shot still runs the pull
/// program (CopyIn, ReduceAll from every rank's buffer, end barrier).
#[test]
fn traces_name_the_program_that_runs() {
    let mut c = cfg(3, 64, 2);
    c.weaken = Some(Weakening::NoStartBarrier);
    c.shrink_runs = 0;
    let r = check(&c, 50, 0).unwrap();
    let v = r.violations.first().expect("a violation");
    let text = v.render();
    assert!(text.contains("ReduceRecv"), "{text}");
    assert!(
        !text.contains("ReduceAll") && !text.contains("CopyIn"),
        "{text}"
    );
    let mut z = cfg(3, 64, 2);
    z.zero_copy = true;
    z.weaken = Some(Weakening::NoStartBarrier);
    z.shrink_runs = 0;
    let r = check(&z, 50, 0).unwrap();
    let v = r.violations.first().expect("a violation");
    let text = v.render();
    assert!(text.contains("ReduceAll read r"), "{text}");
    assert!(
        !text.contains("ReduceRecv") && !text.contains("PushIn"),
        "{text}"
    );
    // And the zero-copy one-shot is clean with its end barrier.
    z.weaken = None;
    clean(&z, 100, 9);
}

// ---- CPU backend

fn comm(world: usize, half: usize, timeout: Duration) -> (Vec<CpuRank>, Vec<Arc<Region>>) {
    let cfg = CpuConfig {
        blocks: 2,
        threads_per_block: 2,
        timeout,
    };
    let regions = local_regions(world, half);
    (cpu_ranks(&regions, cfg, false), regions)
}

/// Every call on every rank, with random pauses; each rank's outputs (a failed call panics).
fn run(ranks: &[CpuRank], calls: &[Call]) -> Vec<Vec<Vec<u8>>> {
    run_all(ranks, calls, Some(3))
        .into_iter()
        .enumerate()
        .map(|(r, rr)| {
            rr.into_iter()
                .map(|x| x.unwrap_or_else(|e| panic!("rank {r}: {e}")))
                .collect()
        })
        .collect()
}

#[test]
fn cpu_one_shot_push_matches_reference_world_2_to_4() {
    let mut rng = Rng(0x0e5e_0001);
    let half = 8192;
    for world in 2..=4 {
        let (ranks, _) = comm(world, half, Duration::from_secs(20));
        let cap = ranks[0].max_bytes(Algo::OneShot);
        assert_eq!(cap, half / 16 / (world - 1) * 16, "world {world}");
        let mut calls: Vec<Call> = Vec::new();
        for i in 0..30 {
            let dtype = DType::ALL[i % 3];
            let op = ReduceOp::ALL[(i / 3) % 4];
            let max = cap / dtype.size();
            // Small counts (one partial chunk), random ones, and the capacity itself.
            let count = match i % 5 {
                0 => 1 + rng.below(7) as usize,
                4 => max,
                _ => 1 + rng.below(max as u64) as usize,
            };
            let blocks = 1 + rng.below(4) as usize;
            let ins = (0..world)
                .map(|_| random_input(&mut rng, dtype, count, 32.0))
                .collect();
            calls.push((Algo::OneShot, dtype, op, blocks, ins));
        }
        let res = run(&ranks, &calls);
        for (i, (_, dtype, op, _, ins)) in calls.iter().enumerate() {
            let refs: Vec<&[u8]> = ins.iter().map(Vec::as_slice).collect();
            let want = reference_allreduce(Algo::OneShot, *dtype, *op, &refs, None).unwrap();
            for (r, rr) in res.iter().enumerate() {
                assert_eq!(rr[i], want, "world {world} rank {r} call {i} {dtype} {op}");
            }
        }
    }
}

/// PROTOCOL.md "Areas": a receive area per other rank, so a (W-1)-th of a half.
#[test]
fn cpu_one_shot_capacity_is_a_world_minus_one_th_of_a_half() {
    let half = 4096;
    let (ranks, _) = comm(4, half, Duration::from_millis(300));
    assert_eq!(ranks[0].max_bytes(Algo::OneShot), half / 16 / 3 * 16);
    let (ranks3, _) = comm(3, half, Duration::from_millis(300));
    assert_eq!(ranks3[0].max_bytes(Algo::OneShot), half / 2);
    let (ranks1, _) = comm(1, half, Duration::from_millis(300));
    assert_eq!(ranks1[0].max_bytes(Algo::OneShot), half);
    // One chunk past the capacity: refused before anything is written (no peer involved,
    // so no timeout either).
    let big = vec![0u8; half / 16 / 3 * 16 + 16];
    let mut out = vec![0u8; big.len()];
    let e = ranks[0]
        .allreduce(Algo::OneShot, DType::F32, ReduceOp::Sum, 1, &big, &mut out)
        .unwrap_err();
    assert!(matches!(e, inc_sim::SimError::Config(_)), "{e}");
    assert!(!ranks[0].is_aborted());
}

/// The receive areas sit where the kernel puts them: after a call with epoch e, rank q's
/// half e % 2 holds every peer s's input at chunk offset `area(s, q) x C` (the other ranks
/// in rank order, q skipped: PROTOCOL.md "Areas"), and nothing after the W - 1 areas.
#[test]
fn cpu_one_shot_receive_areas_follow_the_kernel_layout() {
    let world = 3;
    let half = 4096;
    let (ranks, regions) = comm(world, half, Duration::from_secs(20));
    // 37 f32: 10 chunks, the last one partial.
    let count: usize = 37;
    let bytes = count * 4;
    let chunks = bytes.div_ceil(16);
    let ins: Vec<Vec<u8>> = (0..world)
        .map(|r| {
            (0..count)
                .flat_map(|i| ((r * 1000 + i) as f32).to_ne_bytes())
                .collect()
        })
        .collect();
    let calls: Vec<Call> = vec![(Algo::OneShot, DType::F32, ReduceOp::Sum, 2, ins.clone())];
    let res = run(&ranks, &calls);
    let refs: Vec<&[u8]> = ins.iter().map(Vec::as_slice).collect();
    let want = reference_allreduce(Algo::OneShot, DType::F32, ReduceOp::Sum, &refs, None).unwrap();
    for rr in &res {
        assert_eq!(rr[0], want);
    }
    // The first call has epoch 1: parity half 1.
    let layout = regions[0].layout();
    let h = layout.half_offset(1);
    for (q, reg) in regions.iter().enumerate() {
        for (s, inp) in ins.iter().enumerate().filter(|&(s, _)| s != q) {
            let mut got = vec![0u8; bytes];
            let area = if s > q { s - 1 } else { s };
            reg.read_bytes(h + area * chunks * 16, &mut got).unwrap();
            assert_eq!(&got, inp, "rank {q}'s R[{s}]");
        }
        let mut rest = vec![0u8; chunks * 16];
        reg.read_bytes(h + (world - 1) * chunks * 16, &mut rest)
            .unwrap();
        assert!(
            rest.iter().all(|&b| b == 0),
            "rank {q} wrote past its W - 1 areas"
        );
    }
    // Half 0 is untouched by call 1.
    let mut zero = vec![0u8; world * chunks * 16];
    regions[1]
        .read_bytes(layout.half_offset(0), &mut zero)
        .unwrap();
    assert!(zero.iter().all(|&b| b == 0));
}
