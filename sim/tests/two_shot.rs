#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! two-shot, push form (PROTOCOL.md "two-shot"): scatter by remote stores into the
//! owners' receive areas, start barrier, local reduce of my slice stored into every peer's
//! gather area, mid barrier, local gather. The checker (PCT, the default) is clean for
//! worlds 2..8 and under faults; weakenings are caught; the CPU backend is bit-identical
//! to the reference when two-shot calls are mixed with one-shot, push and hcm calls.
//!
//! Long run: `cargo test -p inc-sim --release --test two_shot -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use inc_sim::cpu::{reference_allreduce, CpuConfig, CpuRank};
use inc_sim::program::CUBE_MESH_8;
use inc_sim::{
    check, Algo, DType, Fault, Protocol, ReduceOp, Scheduler, SimConfig, ViolationKind, Weakening,
    ERR_CALL_MISMATCH, ERR_TIMEOUT,
};

mod common;
use common::{clean, cpu_ranks, faults_clean, local_regions, random_input, run_all, Call, Rng};

fn cfg(world: usize, bytes: usize, calls: usize) -> SimConfig {
    let mut c = SimConfig::new(Protocol::Inc, Algo::TwoShot, world, bytes, calls);
    c.blocks = vec![2, 1, 3];
    c
}

#[test]
fn two_shot_is_clean_under_pct_world_2_to_8() {
    for world in 2..=8 {
        // Sizes whose chunk count is and is not a multiple of the world (empty slices at
        // 1 chunk; a partial tail chunk at 100 bytes).
        for bytes in [16, 100, 256] {
            let c = cfg(world, bytes, 4);
            let n = if world > 5 { 30 } else { 80 };
            clean(&c, n, (world * 1000 + bytes) as u64);
        }
    }
}

/// Also in pieces (`deferred_gather`: each call's Gather left to the next call).
#[test]
fn two_shot_is_clean_with_threads_per_block_and_a_slow_rank() {
    for (world, deferred) in [2, 3, 5].into_iter().flat_map(|w| [(w, false), (w, true)]) {
        for slow in 0..world {
            let mut c = cfg(world, 200, 4);
            c.deferred_gather = deferred;
            c.threads_per_block = 2;
            c.scheduler = Scheduler::Adversarial {
                slow_rank: slow,
                stall: Some(((slow + 1) % world, 0)),
            };
            clean(&c, 8, 5);
        }
    }
}

/// Also in pieces: every fault ends every affected call with the expected error on every
/// rank, and every other call (deferred outputs included) is correct.
#[test]
fn two_shot_faults_are_detected() {
    for (world, deferred) in [2, 3, 4].into_iter().flat_map(|w| [(w, false), (w, true)]) {
        let mut c = cfg(world, 96, 3);
        c.deferred_gather = deferred;
        faults_clean(&c);
    }
}

#[test]
fn two_shot_weakenings_are_caught() {
    for (w, world) in [
        (Weakening::NoMidBarrier, 2),
        (Weakening::NoMidBarrier, 3),
        (Weakening::RelaxedFlags, 2),
        (Weakening::RelaxedFlags, 3),
        (Weakening::NoStartBarrier, 3),
        (Weakening::RelaxedFlags, 4),
    ] {
        let mut c = cfg(world, 256, 2);
        c.weaken = Some(w);
        c.shrink_runs = 200;
        let r = check(&c, 200, 9).unwrap();
        let v = r
            .violations
            .iter()
            .find(|v| v.kind == ViolationKind::StaleRead)
            .unwrap_or_else(|| panic!("{w:?} world {world}: {:?}", r.violations));
        println!(
            "{w:?} world {world}: {} of 200 schedules fail\n{}",
            r.failing_schedules,
            v.render()
        );
    }
}

/// The push form needs no parity halves for its own reuse: a peer's remote writes of call
/// e+1 into my receive area come after it finished call e (so after my mid flag of e,
/// written after my reads of R), and into my gather area after my start flag of e+1
/// (written after my kernel e). One buffer alone is clean; the halves are there for
/// mixing with one-shot/hcm calls that share the data area.
#[test]
fn two_shot_push_one_buffer_alone_is_clean() {
    for world in [2, 3] {
        let mut c = cfg(world, 256, 4);
        c.weaken = Some(Weakening::NoRotation);
        clean(&c, 100, 13);
    }
}

#[test]
#[ignore = "long: cargo test -p inc-sim --release --test two_shot -- --ignored --nocapture"]
fn two_shot_is_clean_long() {
    let t = Instant::now();
    let mut schedules = 0u64;
    let mut steps = 0u64;
    for world in 2..=8 {
        for (bytes, n) in [(100, 3000u64), (1024, 1000), (4096, 200)] {
            let mut c = cfg(world, bytes, 5);
            c.blocks = vec![2, 1, 3, 4];
            let r = check(&c, n, 77 + world as u64).unwrap();
            if let Some(v) = r.violations.first() {
                panic!("world {world} bytes {bytes}\n{}", v.render());
            }
            schedules += r.schedules;
            steps += r.steps;
        }
        for call in [0, 2] {
            for fault in [
                Fault::Kill {
                    rank: world - 1,
                    call,
                },
                Fault::Mismatch { rank: 0, call },
            ] {
                let mut c = cfg(world, 160, 4);
                c.fault = Some(fault);
                let r = check(&c, 300, 5).unwrap();
                if let Some(v) = r.violations.first() {
                    panic!("world {world} {fault:?}\n{}", v.render());
                }
                schedules += r.schedules;
                steps += r.steps;
            }
        }
        println!(
            "world {world} done: {schedules} schedules, {steps} steps so far, {:.1}s",
            t.elapsed().as_secs_f64()
        );
    }
    println!(
        "two-shot long: {schedules} PCT schedules, {steps} steps, 0 violations, {:.1}s",
        t.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------- CPU backend

fn ranks(world: usize, half: usize, timeout: Duration) -> Vec<CpuRank> {
    let cfg = CpuConfig {
        blocks: 3,
        threads_per_block: 2,
        timeout,
    };
    cpu_ranks(&local_regions(world, half), cfg, world == 8)
}

#[test]
fn cpu_two_shot_mixed_with_one_shot_push_and_hcm_is_bit_identical() {
    let mut rng = Rng(0x5eed_2051);
    for world in 2..=8 {
        let rs = ranks(world, 16 << 10, Duration::from_secs(20));
        let cap = rs[0].max_bytes(Algo::TwoShot);
        // a receive and a gather slice per other rank (PROTOCOL.md "Areas")
        assert_eq!(cap, (16 << 10) / 16 / (2 * (world - 1)) * world * 16);
        let mut algos = vec![
            Algo::TwoShot,
            Algo::OneShot,
            Algo::TwoShot,
            Algo::PushOneShot,
        ];
        if world == 8 {
            algos.push(Algo::Hcm);
        }
        let mut calls: Vec<Call> = Vec::new();
        for i in 0..24 {
            let algo = algos[i % algos.len()];
            let dtype = DType::ALL[i % 3];
            let op = ReduceOp::ALL[(i / 3) % 4];
            let max = match algo {
                Algo::TwoShot => cap,
                Algo::Hcm => 4096,
                // W - 1 receive areas of the whole input in a half.
                Algo::OneShot => rs[0].max_bytes(Algo::OneShot).min(8192),
                _ => 8192,
            } / dtype.size();
            // Small counts too: fewer chunks than ranks (empty slices).
            let count = if i % 5 == 0 {
                1 + rng.below(12) as usize
            } else {
                1 + rng.below(max as u64) as usize
            };
            let blocks = 1 + rng.below(4) as usize;
            let ins = (0..world)
                .map(|_| random_input(&mut rng, dtype, count, 32.0))
                .collect();
            calls.push((algo, dtype, op, blocks, ins));
        }
        let res = run_all(&rs, &calls, None);
        for (i, (algo, dtype, op, _, ins)) in calls.iter().enumerate() {
            let refs: Vec<&[u8]> = ins.iter().map(Vec::as_slice).collect();
            let table = (world == 8).then_some(&CUBE_MESH_8);
            let want = reference_allreduce(*algo, *dtype, *op, &refs, table).unwrap();
            for (r, rr) in res.iter().enumerate() {
                let got = rr[i]
                    .as_ref()
                    .unwrap_or_else(|e| panic!("w{world} r{r} call {i} {algo}: {e}"));
                assert_eq!(got, &want, "w{world} r{r} call {i} {algo} {dtype} {op}");
            }
        }
    }
}

#[test]
fn cpu_two_shot_capacity_and_faults() {
    let rs = ranks(3, 4096, Duration::from_millis(300));
    let cap = rs[0].max_bytes(Algo::TwoShot);
    assert_eq!(cap, 256 / 4 * 3 * 16);
    // Too large for 2 x (W - 1) slices: refused before anything is written.
    let big = vec![0u8; cap + 16];
    let mut out = vec![0u8; big.len()];
    assert!(rs[0]
        .allreduce(Algo::TwoShot, DType::F32, ReduceOp::Sum, 1, &big, &mut out)
        .is_err());
    // A mismatched count on one rank: every rank fails with CALL_MISMATCH (or a peer
    // abort raised by the rank that saw it first).
    let errs = std::thread::scope(|s| {
        let hs: Vec<_> = rs
            .iter()
            .map(|rank| {
                s.spawn(move || {
                    let n = if rank.rank() == 1 { 37 } else { 36 };
                    let inp = vec![0u8; n * 4];
                    let mut out = vec![0u8; n * 4];
                    rank.allreduce(Algo::TwoShot, DType::F32, ReduceOp::Sum, 2, &inp, &mut out)
                        .map_err(|_| rank.error_record())
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert!(errs.iter().all(Result::is_err), "{errs:?}");
    assert!(errs
        .iter()
        .any(|e| e.as_ref().err().map(|r| r.code) == Some(ERR_CALL_MISMATCH)));
    // A dead peer: the survivors time out instead of hanging.
    let rs = ranks(2, 4096, Duration::from_millis(200));
    let inp = vec![0u8; 400];
    let mut out = vec![0u8; 400];
    let e = rs[0].allreduce(Algo::TwoShot, DType::F32, ReduceOp::Sum, 2, &inp, &mut out);
    assert!(e.is_err());
    assert_eq!(rs[0].error_record().code, ERR_TIMEOUT);
}
