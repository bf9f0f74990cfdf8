#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! two-shot in pieces (PROTOCOL.md "Deferred gather"): the checker's
//! `SimConfig::deferred_gather` runs the `calls` calls as consecutive pieces of one call;
//! every piece but the last skips its Gather, the next piece's GatherPrev reads its gather
//! area in the other parity half (with its layout and tags) before its mid barrier, and
//! its output is read from there when its kernel completes (so the oracle sees it whole).
//! Clean at worlds 2..4 under PCT, walk and exhaustive schedules (adversarial schedules and
//! faults: `tests/two_shot.rs`, with and without pieces); a GatherPrev of the current half
//! and a missing mid barrier are caught.
//!
//! Long run: `cargo test -p inc-sim --release --test two_shot_deferred -- --ignored
//! --nocapture`.

use std::time::Instant;

use inc_sim::{
    check, replay, Algo, Fault, Protocol, RandomMode, Scheduler, SimConfig, ViolationKind,
    Weakening,
};

mod common;
use common::clean;

fn cfg(world: usize, bytes: usize, calls: usize) -> SimConfig {
    let mut c = SimConfig::new(Protocol::Inc, Algo::TwoShot, world, bytes, calls);
    c.deferred_gather = true;
    c.blocks = vec![2, 1, 3];
    c
}

#[test]
fn deferred_gather_is_clean_under_pct_world_2_to_4() {
    for world in 2..=4 {
        // 1 chunk (empty slices), a partial tail chunk, a chunk count that is and is not a
        // multiple of the world.
        for bytes in [16, 100, 256] {
            for blocks in [vec![2, 1, 3], vec![4, 2]] {
                for seed in [1u64, 1_000_003] {
                    let mut c = cfg(world, bytes, 5);
                    c.blocks = blocks.clone();
                    clean(&c, 40, seed + (world * 1000 + bytes) as u64);
                }
            }
        }
    }
}

#[test]
fn deferred_gather_is_clean_under_walk_and_threads_per_block() {
    for world in 2..=4 {
        for blocks in [vec![1], vec![3, 1], vec![4, 2, 1]] {
            let mut c = cfg(world, 160, 4);
            c.blocks = blocks;
            c.threads_per_block = 2;
            clean(&c, 30, 11);
            c.random = RandomMode::Walk;
            clean(&c, 30, 12);
        }
    }
}

/// Every interleaving and value choice among the first `depth` choice points, run to the
/// end (three pieces: the middle one both defers its Gather and runs a GatherPrev; the
/// enumeration finishes below the cap: 15462, 4488 and 3682 schedules).
#[test]
fn deferred_gather_is_clean_under_exhaustive_schedules() {
    for (world, depth) in [(2, 12), (3, 9), (4, 8)] {
        let mut c = cfg(world, 32, 3);
        c.blocks = vec![1];
        c.scheduler = Scheduler::Exhaustive { depth };
        let cap = 100_000;
        let r = clean(&c, cap, 0);
        assert!(
            r.schedules > 1000 && r.schedules < cap,
            "world {world}: {} schedules",
            r.schedules
        );
        println!("world {world} depth {depth}: {} schedules", r.schedules);
    }
}

/// Applies `w` with the deferred gather on and expects a stale read at every world in
/// `worlds`; the shrunk violation replays to the same kind.
fn caught(w: Weakening, worlds: &[usize], what: &str) {
    for &world in worlds {
        let mut c = cfg(world, 256, 3);
        c.weaken = Some(w);
        c.shrink_runs = 200;
        let r = check(&c, 200, 9).unwrap();
        let v = r
            .violations
            .iter()
            .find(|v| v.kind == ViolationKind::StaleRead)
            .unwrap_or_else(|| panic!("{w:?} world {world}: {:?}", r.violations));
        assert!(
            r.violations.iter().any(|v| v.message.contains(what)),
            "{w:?} world {world}: no stale read by {what}: {:?}",
            r.violations
        );
        let again = replay(&c, &v.schedule).unwrap();
        assert!(
            again.violations.iter().any(|x| x.kind == v.kind),
            "{w:?} world {world}: replay lost the {:?}",
            v.kind
        );
        println!(
            "{w:?} world {world}: {} of {} schedules fail\n{}",
            r.failing_schedules,
            r.schedules,
            v.render()
        );
    }
}

/// GatherPrev reading the current call's half finds the call before the previous one's
/// reduced slices (or nothing), never the previous call's: caught on every schedule.
#[test]
fn deferred_gather_prev_same_parity_is_caught() {
    caught(
        Weakening::GatherPrevSameParity,
        &[2, 3, 4],
        "GatherPrev read",
    );
    let mut c = cfg(2, 64, 2);
    c.weaken = Some(Weakening::GatherPrevSameParity);
    c.shrink_runs = 0;
    let r = check(&c, 20, 1).unwrap();
    assert_eq!(r.failing_schedules, r.schedules);
}

/// Without the mid barrier a deferred piece's gather area is read (at its kernel end, or
/// in the last piece's Gather) before the owners' stores are known to be visible.
#[test]
fn deferred_gather_without_mid_barrier_is_caught() {
    caught(Weakening::NoMidBarrier, &[2, 3], "Gather");
}

/// The deferred pieces are clean with one buffer too (GatherPrev reads before the start
/// flag that lets the owners store into the gather area again), and with the relaxed-flags
/// weakening the reduce still reads the scatter too early.
#[test]
fn deferred_gather_with_other_weakenings() {
    // The parity halves carry the deferred gather: with one buffer, the owners' G stores
    // of piece k+1 (after its start barrier) land where piece k's GatherPrev still has to
    // read (before its mid flag). The copy-in two-shot alone is clean without rotation
    // (`two_shot_push_one_buffer_alone_is_clean`); in pieces it is not.
    caught(Weakening::NoRotation, &[2, 3], "GatherPrev read");
    caught(Weakening::RelaxedFlags, &[2], "read");
}

#[test]
fn deferred_gather_needs_the_inc_copy_in_two_shot() {
    let c = cfg(2, 64, 2);
    for bad in [
        SimConfig {
            protocol: Protocol::Seed,
            ..c.clone()
        },
        SimConfig {
            algo: Algo::OneShot,
            ..c.clone()
        },
        SimConfig {
            algo: Algo::PushOneShot,
            ..c.clone()
        },
        SimConfig {
            zero_copy: true,
            ..c.clone()
        },
        SimConfig {
            deferred_gather: false,
            weaken: Some(Weakening::GatherPrevSameParity),
            ..c.clone()
        },
    ] {
        let e = check(&bad, 1, 0).unwrap_err();
        assert!(matches!(e, inc_sim::SimError::Config(_)), "{e}");
    }
    assert!(check(&c, 1, 0).unwrap().violations.is_empty());
}

#[test]
#[ignore = "long: cargo test -p inc-sim --release --test two_shot_deferred -- --ignored --nocapture"]
fn deferred_gather_is_clean_long() {
    let t = Instant::now();
    let (mut schedules, mut steps) = (0u64, 0u64);
    for world in 2..=8 {
        for (bytes, n) in [(100, 2000u64), (1024, 500)] {
            let mut c = cfg(world, bytes, 5);
            c.blocks = vec![2, 1, 3, 4];
            let r = clean(&c, n, 77 + world as u64);
            schedules += r.schedules;
            steps += r.steps;
        }
        for call in [0, 1, 3] {
            for fault in [
                Fault::Kill {
                    rank: world - 1,
                    call,
                },
                Fault::Mismatch { rank: 0, call },
            ] {
                let mut c = cfg(world, 160, 4);
                c.fault = Some(fault);
                let r = clean(&c, 200, 5);
                schedules += r.schedules;
                steps += r.steps;
            }
        }
        println!(
            "world {world} done: {schedules} schedules, {steps} steps so far, {:.1}s",
            t.elapsed().as_secs_f64()
        );
    }
}
