#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! two-shot, zero-copy (symmetric tensors; PROTOCOL.md "two-shot, zero-copy"), both forms:
//!
//! - pull (`inc::two_shot_zc`, kernel `inc_two_shot_zc`): start barrier, each owner folds
//!   its slice from every rank's tensor and stores the result into every rank's tensor,
//!   end barrier;
//! - push (`inc::two_shot_zcp`, kernel `inc_two_shot_zcp`): each rank scatters its chunks
//!   of every peer's slice, read from its own tensor, into that owner's receive area of the
//!   call's parity half; start barrier; each owner folds its own tensor and its receive
//!   areas and stores the result into its own tensor and rank r + 1's; Forward copies it
//!   from its own tensor into every other rank's; end barrier.
//!
//! The checker (`SimConfig { algo: TwoShot, zero_copy: true, zc_form, .. }`) writes each
//! rank's input into its own tensor at each launch (after its previous kernel) and checks
//! every rank's tensor against the reference when its kernel completes. Both forms are
//! clean at worlds 2..4 under PCT, exhaustive and adversarial schedules and faults;
//! dropping the end or the start barrier and relaxed flags are caught, and in the push form
//! a scatter after the start barrier too.
//!
//! Long run: `cargo test -p inc-sim --release --test two_shot_zc -- --ignored --nocapture`.

use std::time::Instant;

use inc_sim::{
    check, replay, Algo, Protocol, Scheduler, SimConfig, ViolationKind, Weakening, ZcForm,
};

const FORMS: [ZcForm; 2] = [ZcForm::Pull, ZcForm::Push];

mod common;
use common::{clean, faults_clean};

fn cfg(form: ZcForm, world: usize, bytes: usize, calls: usize) -> SimConfig {
    let mut c = SimConfig::new(Protocol::Inc, Algo::TwoShot, world, bytes, calls);
    c.zero_copy = true;
    c.zc_form = form;
    c.blocks = vec![2, 1, 3];
    c
}

#[test]
fn two_shot_zc_is_clean_under_pct_world_2_to_4() {
    for form in FORMS {
        for world in 2..=4 {
            // 1 chunk (empty slices), a partial tail chunk, a chunk count that is and is
            // not a multiple of the world.
            for bytes in [16, 100, 256] {
                for seed in [1u64, 1_000_003, 7_777_777] {
                    let c = cfg(form, world, bytes, 4);
                    clean(&c, 40, seed + (world * 1000 + bytes) as u64);
                }
            }
        }
    }
}

#[test]
fn two_shot_zc_is_clean_under_walk_and_other_grids() {
    for form in FORMS {
        for world in 2..=4 {
            for blocks in [vec![1], vec![3, 1], vec![4, 2, 1]] {
                let mut c = cfg(form, world, 160, 3);
                c.blocks = blocks;
                c.threads_per_block = 2;
                clean(&c, 30, 11);
                c.random = inc_sim::RandomMode::Walk;
                clean(&c, 30, 12);
            }
        }
    }
}

/// Every interleaving and value choice among the first `depth` choice points, run to the
/// end (the enumeration finishes below the cap: pull 12380, 18702 and 22956 schedules,
/// push 7876, 14832 and 21956).
#[test]
fn two_shot_zc_is_clean_under_exhaustive_schedules() {
    for form in FORMS {
        for (world, depth) in [(2, 8), (3, 6), (4, 5)] {
            let mut c = cfg(form, world, 32, 2);
            c.blocks = vec![1];
            c.scheduler = Scheduler::Exhaustive { depth };
            let cap = 100_000;
            let r = clean(&c, cap, 0);
            assert!(
                r.schedules > 1000 && r.schedules < cap,
                "{form:?} world {world}: {} schedules",
                r.schedules
            );
            println!(
                "{form:?} world {world} depth {depth}: {} schedules",
                r.schedules
            );
        }
    }
}

#[test]
fn two_shot_zc_is_clean_with_a_slow_rank_or_block() {
    for form in FORMS {
        for world in 2..=4 {
            for slow in 0..world {
                let mut c = cfg(form, world, 200, 4);
                c.scheduler = Scheduler::Adversarial {
                    slow_rank: slow,
                    stall: Some(((slow + 1) % world, 0)),
                };
                clean(&c, 8, 5);
            }
        }
    }
}

#[test]
fn two_shot_zc_faults_are_detected() {
    // `clean` = every fault ends every affected call with the expected error on every
    // rank, and every other call is correct.
    for form in FORMS {
        for world in 2..=4 {
            faults_clean(&cfg(form, world, 96, 3));
        }
    }
}

/// Drops `w` from `form` and expects a stale read or a wrong result at every world 2..4;
/// the shrunk violation replays to the same kind.
fn caught(form: ZcForm, w: Weakening) {
    caught_at(form, w, 2..=4);
}

fn caught_at(form: ZcForm, w: Weakening, worlds: std::ops::RangeInclusive<usize>) {
    for world in worlds {
        let mut c = cfg(form, world, 256, 3);
        c.weaken = Some(w);
        c.shrink_runs = 200;
        let r = check(&c, 100, 9).unwrap();
        let v = r
            .violations
            .iter()
            .find(|v| {
                matches!(
                    v.kind,
                    ViolationKind::StaleRead | ViolationKind::WrongResult
                )
            })
            .unwrap_or_else(|| panic!("{form:?} {w:?} world {world}: {:?}", r.violations));
        assert!(r.failing_schedules > 0);
        let again = replay(&c, &v.schedule).unwrap();
        assert!(
            again.violations.iter().any(|x| x.kind == v.kind),
            "{form:?} {w:?} world {world}: replay lost the {:?}",
            v.kind
        );
        println!(
            "{form:?} {w:?} world {world}: {} of {} schedules fail\n{}",
            r.failing_schedules,
            r.schedules,
            v.render()
        );
    }
}

#[test]
fn two_shot_zc_without_end_barrier_is_caught() {
    for form in FORMS {
        caught(form, Weakening::NoEndBarrier);
    }
}

#[test]
fn two_shot_zc_without_start_barrier_is_caught() {
    for form in FORMS {
        caught(form, Weakening::NoStartBarrier);
    }
}

/// The start flag's release is what publishes the user's input (stored relaxed at launch)
/// to the owners; relaxed flags let an owner read it before it landed.
#[test]
fn two_shot_zc_with_relaxed_flags_is_caught() {
    for form in FORMS {
        caught(form, Weakening::RelaxedFlags);
    }
}

/// Push form: the scatter moved after the start barrier: an owner may fold a receive area
/// before my chunk landed there, or store its result into my tensor before I read my chunk
/// of its slice (hazard (a) of PROTOCOL.md: the start flag I write after my scatter is what
/// orders an owner's stores into my tensor after my reads of it).
/// The push form's Forward (the owner's result, read back from its own tensor, into every
/// rank's but its own and r + 1's) must come before the end barrier: moved after it, a
/// rank's tensor misses forwarded chunks when its kernel completes (worlds 3 and 4; at 2
/// Forward stores nothing).
#[test]
fn two_shot_zcp_with_forward_after_end_barrier_is_caught() {
    caught_at(ZcForm::Push, Weakening::ForwardAfterEndBarrier, 3..=4);
    let mut c = cfg(ZcForm::Push, 2, 256, 3);
    c.weaken = Some(Weakening::ForwardAfterEndBarrier);
    clean(&c, 40, 5);
}

#[test]
fn two_shot_zcp_with_scatter_after_barrier_is_caught() {
    caught(ZcForm::Push, Weakening::ScatterAfterBarrier);
}

/// Push form, hazard (b), parity reuse of the receive areas: the end barrier already
/// orders every owner's reads of its receive areas in call k before any sender's scatter
/// of call k+1 (a sender starts call k+1 only after its end barrier of call k, which waits
/// for every owner's end flag, written after that owner's ReduceStore). So one receive
/// area for both parities (`NoRotation`; the end barrier still runs in zero-copy mode) is
/// clean too (as for the copy-in two-shot alone); the parity halves stay because one-shot
/// and hcm calls share the comm's data area and rely on them.
#[test]
fn two_shot_zcp_with_one_receive_area_is_still_clean() {
    for world in 2..=4 {
        for seed in [3u64, 33] {
            let mut c = cfg(ZcForm::Push, world, 256, 4);
            c.weaken = Some(Weakening::NoRotation);
            clean(&c, 60, seed + world as u64);
            c.blocks = vec![1, 3, 2];
            c.random = inc_sim::RandomMode::Walk;
            clean(&c, 60, seed + 100 + world as u64);
        }
    }
}

#[test]
fn zero_copy_two_shot_runs_the_zc_programs() {
    // The seed has no zero-copy two-shot; the inc one runs inc::two_shot_zc (pull: its
    // trace names ReduceStore) or inc::two_shot_zcp (push: Scatter into own R areas too).
    for form in FORMS {
        let mut c = cfg(form, 2, 64, 1);
        c.protocol = Protocol::Seed;
        assert!(check(&c, 1, 0).is_err());
        let mut c = cfg(form, 2, 64, 1);
        c.weaken = Some(Weakening::NoStartBarrier);
        c.shrink_runs = 0;
        let r = check(&c, 5, 0).unwrap();
        let v = r.violations.first().expect("a violation");
        let seen = match form {
            ZcForm::Pull => v.trace.iter().any(|l| l.contains("ReduceStore")),
            ZcForm::Push => {
                v.trace.iter().any(|l| l.contains("Scatter")) && v.render().contains("own R[")
            }
        };
        assert!(seen, "{form:?}: {}", v.render());
    }
    // The push form needs the inc zero-copy two-shot.
    let mut c = cfg(ZcForm::Push, 2, 64, 1);
    c.zero_copy = false;
    assert!(check(&c, 1, 0).is_err());
    let mut c = cfg(ZcForm::Push, 2, 64, 1);
    c.algo = Algo::OneShot;
    assert!(check(&c, 1, 0).is_err());
}

#[test]
#[ignore = "long: cargo test -p inc-sim --release --test two_shot_zc -- --ignored --nocapture"]
fn two_shot_zc_is_clean_long() {
    for form in FORMS {
        let t = Instant::now();
        let (mut schedules, mut steps) = (0u64, 0u64);
        for world in 2..=8 {
            for (bytes, n) in [(100, 3000u64), (1024, 1000), (4096, 200)] {
                let mut c = cfg(form, world, bytes, 5);
                c.blocks = vec![2, 1, 3, 4];
                let r = clean(&c, n, 91 + world as u64);
                schedules += r.schedules;
                steps += r.steps;
            }
        }
        println!(
            "two-shot zero-copy, {form:?} form: {schedules} schedules, {steps} steps, clean, {:.1?}",
            t.elapsed()
        );
    }
}
