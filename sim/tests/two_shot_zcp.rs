#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! two-shot, zero-copy, push form (symmetric tensors; PROTOCOL.md "two-shot, zero-copy",
//! program `inc::two_shot_zcp`, kernel `inc_two_shot_zcp`): each rank scatters its chunks
//! of every peer's slice, read from its own tensor, into that owner's receive area of the
//! call's parity half; start barrier; each owner folds its own tensor and its receive
//! areas and stores the result into every rank's tensor; end barrier. The checker
//! (`SimConfig { algo: TwoShot, zero_copy: true, zc_form: ZcForm::Push, .. }`) writes each
//! rank's input into its tensor at each launch and checks every rank's tensor against the
//! reference when its kernel completes. Clean at worlds 2..4 under PCT, exhaustive and
//! adversarial schedules and faults; dropping the end or the start barrier, relaxed flags
//! and a scatter after the start barrier are caught.
//!
//! Long run: `cargo test -p inc-sim --release --test two_shot_zcp -- --ignored --nocapture`.

use std::time::Instant;

use inc_sim::{
    check, replay, Algo, Fault, Protocol, Scheduler, SimConfig, ViolationKind, Weakening, ZcForm,
};

fn cfg(world: usize, bytes: usize, calls: usize) -> SimConfig {
    let mut c = SimConfig::new(Protocol::Inc, Algo::TwoShot, world, bytes, calls);
    c.zero_copy = true;
    c.zc_form = ZcForm::Push;
    c.blocks = vec![2, 1, 3];
    c
}

fn clean(c: &SimConfig, schedules: u64, seed: u64) -> inc_sim::Report {
    let r = check(c, schedules, seed).unwrap();
    if let Some(v) = r.violations.first() {
        panic!(
            "world {} bytes {} blocks {:?} fault {:?} scheduler {:?}\n{}",
            c.world,
            c.bytes,
            c.blocks,
            c.fault,
            c.scheduler,
            v.render()
        );
    }
    r
}

#[test]
fn two_shot_zcp_is_clean_under_pct_world_2_to_4() {
    for world in 2..=4 {
        // 1 chunk (empty slices), a partial tail chunk, a chunk count that is and is not
        // a multiple of the world.
        for bytes in [16, 100, 256] {
            for seed in [1u64, 1_000_003, 7_777_777] {
                let c = cfg(world, bytes, 4);
                clean(&c, 40, seed + (world * 1000 + bytes) as u64);
            }
        }
    }
}

#[test]
fn two_shot_zcp_is_clean_under_walk_and_other_grids() {
    for world in 2..=4 {
        for blocks in [vec![1], vec![3, 1], vec![4, 2, 1]] {
            let mut c = cfg(world, 160, 3);
            c.blocks = blocks;
            c.threads_per_block = 2;
            clean(&c, 30, 11);
            c.random = inc_sim::RandomMode::Walk;
            clean(&c, 30, 12);
        }
    }
}

/// Every interleaving and value choice among the first `depth` choice points, run to the
/// end (the enumeration finishes below the cap: 7876, 14832 and 21956 schedules).
#[test]
fn two_shot_zcp_is_clean_under_exhaustive_schedules() {
    for (world, depth) in [(2, 8), (3, 6), (4, 5)] {
        let mut c = cfg(world, 32, 2);
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

#[test]
fn two_shot_zcp_is_clean_with_a_slow_rank_or_block() {
    for world in 2..=4 {
        for slow in 0..world {
            let mut c = cfg(world, 200, 4);
            c.scheduler = Scheduler::Adversarial {
                slow_rank: slow,
                stall: Some(((slow + 1) % world, 0)),
            };
            clean(&c, 8, 5);
        }
    }
}

#[test]
fn two_shot_zcp_faults_are_detected() {
    // `clean` = every fault ends every affected call with the expected error on every
    // rank, and every other call is correct.
    for world in 2..=4 {
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

/// Drops `w` and expects a stale read or a wrong result at every world 2..4; the shrunk
/// violation replays to the same kind.
fn caught(w: Weakening) {
    for world in 2..=4 {
        let mut c = cfg(world, 256, 3);
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
            .unwrap_or_else(|| panic!("{w:?} world {world}: {:?}", r.violations));
        assert!(r.failing_schedules > 0);
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

#[test]
fn two_shot_zcp_without_end_barrier_is_caught() {
    caught(Weakening::NoEndBarrier);
}

#[test]
fn two_shot_zcp_without_start_barrier_is_caught() {
    caught(Weakening::NoStartBarrier);
}

/// The start flag's release is what publishes the user's input (stored relaxed at launch)
/// to the owners; relaxed flags let an owner read it before it landed.
#[test]
fn two_shot_zcp_with_relaxed_flags_is_caught() {
    caught(Weakening::RelaxedFlags);
}

/// The scatter moved after the start barrier: an owner may fold a receive area before my
/// chunk landed there, or store its result into my tensor before I read my chunk of its
/// slice (hazard (a) of PROTOCOL.md: the start flag I write after my scatter is what
/// orders an owner's stores into my tensor after my reads of it).
#[test]
fn two_shot_zcp_with_scatter_after_barrier_is_caught() {
    caught(Weakening::ScatterAfterBarrier);
}

/// Hazard (b), parity reuse of the receive areas: in this form the end barrier already
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
            let mut c = cfg(world, 256, 4);
            c.weaken = Some(Weakening::NoRotation);
            clean(&c, 60, seed + world as u64);
            c.blocks = vec![1, 3, 2];
            c.random = inc_sim::RandomMode::Walk;
            clean(&c, 60, seed + 100 + world as u64);
        }
    }
}

#[test]
fn zero_copy_two_shot_push_runs_the_zcp_program() {
    // The push form needs the inc zero-copy two-shot; it runs inc::two_shot_zcp, whose
    // trace names Scatter and ReduceStore.
    let mut c = cfg(2, 64, 1);
    c.protocol = Protocol::Seed;
    assert!(check(&c, 1, 0).is_err());
    let mut c = cfg(2, 64, 1);
    c.zero_copy = false;
    assert!(check(&c, 1, 0).is_err());
    let mut c = cfg(2, 64, 1);
    c.algo = Algo::OneShot;
    assert!(check(&c, 1, 0).is_err());
    let mut c = cfg(2, 64, 1);
    c.weaken = Some(Weakening::NoStartBarrier);
    c.shrink_runs = 0;
    let r = check(&c, 5, 0).unwrap();
    let v = r.violations.first().expect("a violation");
    assert!(
        v.trace.iter().any(|l| l.contains("Scatter")) && v.render().contains("own R["),
        "{}",
        v.render()
    );
}

#[test]
#[ignore = "long: cargo test -p inc-sim --release --test two_shot_zcp -- --ignored --nocapture"]
fn two_shot_zcp_is_clean_long() {
    let t = Instant::now();
    let (mut schedules, mut steps) = (0u64, 0u64);
    for world in 2..=8 {
        for (bytes, n) in [(100, 3000u64), (1024, 1000), (4096, 200)] {
            let mut c = cfg(world, bytes, 5);
            c.blocks = vec![2, 1, 3, 4];
            let r = clean(&c, n, 91 + world as u64);
            schedules += r.schedules;
            steps += r.steps;
        }
    }
    println!(
        "two-shot zero-copy, push form: {schedules} schedules, {steps} steps, clean, {:.1?}",
        t.elapsed()
    );
}
