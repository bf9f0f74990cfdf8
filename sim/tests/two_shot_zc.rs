#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! two-shot, zero-copy (symmetric tensors; PROTOCOL.md "two-shot, zero-copy", program
//! `inc::two_shot_zc`): every rank's tensor lives in its own peer-mapped buffer and the
//! call is in place. Start barrier, each owner folds its slice from every rank's buffer and
//! stores the result into every rank's buffer, end barrier. The checker
//! (`SimConfig { algo: TwoShot, zero_copy: true, .. }`) writes each rank's input into its
//! own buffer at each launch (after its previous kernel) and checks every rank's buffer
//! against the reference when its kernel completes. Clean at worlds 2..4 under PCT,
//! exhaustive and adversarial schedules and faults; dropping the end or the start barrier
//! is caught.
//!
//! Long run: `cargo test -p inc-sim --release --test two_shot_zc -- --ignored --nocapture`.

use std::time::Instant;

use inc_sim::{
    check, replay, Algo, Fault, Protocol, Scheduler, SimConfig, ViolationKind, Weakening,
};

fn cfg(world: usize, bytes: usize, calls: usize) -> SimConfig {
    let mut c = SimConfig::new(Protocol::Inc, Algo::TwoShot, world, bytes, calls);
    c.zero_copy = true;
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
fn two_shot_zc_is_clean_under_pct_world_2_to_4() {
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
fn two_shot_zc_is_clean_under_walk_and_other_grids() {
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
/// end (the enumeration finishes below the cap: 12380, 18702 and 22956 schedules).
#[test]
fn two_shot_zc_is_clean_under_exhaustive_schedules() {
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
fn two_shot_zc_is_clean_with_a_slow_rank_or_block() {
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
fn two_shot_zc_faults_are_detected() {
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
fn two_shot_zc_without_end_barrier_is_caught() {
    caught(Weakening::NoEndBarrier);
}

#[test]
fn two_shot_zc_without_start_barrier_is_caught() {
    caught(Weakening::NoStartBarrier);
}

/// The start flag's release is what publishes the user's input (stored relaxed at launch)
/// to the owners; relaxed flags let an owner read it before it landed.
#[test]
fn two_shot_zc_with_relaxed_flags_is_caught() {
    caught(Weakening::RelaxedFlags);
}

#[test]
fn zero_copy_two_shot_runs_the_zc_program() {
    // The seed has no zero-copy two-shot; the inc one runs inc::two_shot_zc, whose trace
    // names ReduceStore.
    let mut c = cfg(2, 64, 1);
    c.protocol = Protocol::Seed;
    assert!(check(&c, 1, 0).is_err());
    let mut c = cfg(2, 64, 1);
    c.weaken = Some(Weakening::NoStartBarrier);
    c.shrink_runs = 0;
    let r = check(&c, 5, 0).unwrap();
    let v = r.violations.first().expect("a violation");
    assert!(
        v.trace.iter().any(|l| l.contains("ReduceStore")),
        "{}",
        v.render()
    );
}

#[test]
#[ignore = "long: cargo test -p inc-sim --release --test two_shot_zc -- --ignored --nocapture"]
fn two_shot_zc_is_clean_long() {
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
        "two-shot zero-copy: {schedules} schedules, {steps} steps, clean, {:.1?}",
        t.elapsed()
    );
}
