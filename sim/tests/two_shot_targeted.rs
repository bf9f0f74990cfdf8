#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Targeted barriers for the copy-in two-shot (PROTOCOL.md "Targeted barriers", proposed,
//! not in the kernel): at the start barrier block b signals only the owners of its chunks
//! and waits for every peer only when it owns some; at the mid barrier an owner signals
//! every peer and a block waits only for the other owners. The checker decides whether
//! the proposal is safe before any kernel takes it.

use inc_sim::{check, Algo, Fault, Protocol, Scheduler, SimConfig, ViolationKind, Weakening};

mod common;
use common::clean;

fn cfg(world: usize, bytes: usize, calls: usize) -> SimConfig {
    let mut c = SimConfig::new(Protocol::Inc, Algo::TwoShot, world, bytes, calls);
    c.blocks = vec![2, 1, 3];
    c.targeted_barriers = true;
    c
}

/// Blocks whose chunks lie in one slice, in several, or in none (tiny calls), and a grid
/// that changes from call to call.
#[test]
fn targeted_two_shot_is_clean_under_pct() {
    for world in 2..=5 {
        for bytes in [16, 100, 256, 1024] {
            for tpb in [1, 2, 4] {
                let mut c = cfg(world, bytes, 4);
                c.threads_per_block = tpb;
                clean(&c, 40, (world * 1000 + bytes + tpb) as u64);
            }
        }
    }
}

#[test]
fn targeted_two_shot_is_clean_with_a_slow_rank_and_in_pieces() {
    for (world, deferred) in [2, 3, 4].into_iter().flat_map(|w| [(w, false), (w, true)]) {
        for slow in 0..world {
            let mut c = cfg(world, 256, 4);
            c.deferred_gather = deferred;
            c.threads_per_block = 2;
            c.scheduler = Scheduler::Adversarial {
                slow_rank: slow,
                stall: Some(((slow + 1) % world, 0)),
            };
            clean(&c, 8, 5);
        }
        let mut c = cfg(world, 256, 4);
        c.deferred_gather = deferred;
        clean(&c, 60, 6);
    }
}

/// Every fault ends every affected call with the expected error on every rank.
#[test]
fn targeted_two_shot_faults_are_detected() {
    for world in [2, 3, 4] {
        for call in 0..3 {
            let mut c = cfg(world, 96, 3);
            c.fault = Some(Fault::Kill {
                rank: world - 1,
                call,
            });
            clean(&c, 20, 3);
            c.fault = Some(Fault::Mismatch { rank: 0, call });
            clean(&c, 20, 4);
        }
        let mut c = cfg(world, 96, 3);
        c.fault = Some(Fault::EpochSkew { rank: 1, delta: 1 });
        clean(&c, 20, 5);
    }
}

/// The checker still sees the targeted barriers' work: without the mid barrier, or with
/// relaxed flags, a reader reads the gather area too early.
#[test]
fn targeted_two_shot_weakenings_are_caught() {
    for (w, world) in [
        (Weakening::NoMidBarrier, 3),
        (Weakening::NoStartBarrier, 3),
        (Weakening::RelaxedFlags, 4),
    ] {
        let mut c = cfg(world, 256, 2);
        c.weaken = Some(w);
        c.shrink_runs = 200;
        let r = check(&c, 200, 9).unwrap();
        assert!(
            r.violations
                .iter()
                .any(|v| v.kind == ViolationKind::StaleRead),
            "{w:?} world {world}: {:?}",
            r.violations
        );
    }
}

#[test]
fn targeted_barriers_are_a_copy_in_two_shot_option_only() {
    let mut c = SimConfig::new(Protocol::Inc, Algo::OneShot, 2, 64, 1);
    c.targeted_barriers = true;
    assert!(check(&c, 1, 1).is_err());
    let mut c = cfg(2, 64, 1);
    c.zero_copy = true;
    assert!(check(&c, 1, 1).is_err());
}
