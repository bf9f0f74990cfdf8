#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The checker: the seed's missing end barrier is found; the inc protocol is clean.

use inc_sim::{check, Algo, Fault, Protocol, Scheduler, SimConfig, ViolationKind};

fn cfg(p: Protocol, a: Algo, world: usize, bytes: usize, calls: usize) -> SimConfig {
    let mut c = SimConfig::new(p, a, world, bytes, calls);
    c.blocks = vec![1];
    c
}

fn kinds(r: &inc_sim::Report) -> Vec<ViolationKind> {
    let mut k: Vec<_> = r.violations.iter().map(|v| v.kind).collect();
    k.sort_by_key(|k| k.name());
    k.dedup();
    k
}

#[test]
fn seed_one_shot_race_found_by_adversarial_schedule() {
    for algo in [Algo::OneShot, Algo::TwoShot] {
        let mut c = cfg(Protocol::Seed, algo, 2, 64, 2);
        c.scheduler = Scheduler::Adversarial {
            slow_rank: 1,
            stall: None,
        };
        let r = check(&c, 1, 7).unwrap();
        let v = r
            .violations
            .iter()
            .find(|v| v.kind == ViolationKind::StaleRead)
            .unwrap_or_else(|| panic!("{algo}: {:?}", r.violations));
        assert!(
            v.message.contains("overwritten by a later call"),
            "{}",
            v.message
        );
        println!("{algo}\n{}", v.render());
    }
}

#[test]
fn seed_race_found_by_random_schedules() {
    for algo in [Algo::OneShot, Algo::TwoShot] {
        let c = cfg(Protocol::Seed, algo, 2, 64, 2);
        let r = check(&c, 500, 1).unwrap();
        assert!(
            kinds(&r).contains(&ViolationKind::StaleRead),
            "{algo}: {:?}",
            kinds(&r)
        );
        assert!(r.failing_schedules > 0);
        // The reported seed replays the same violation.
        let v = r
            .violations
            .iter()
            .find(|v| v.kind == ViolationKind::StaleRead)
            .unwrap();
        let again = check(&c, 1, v.seed).unwrap();
        assert!(again
            .violations
            .iter()
            .any(|w| w.kind == ViolationKind::StaleRead && w.message == v.message));
    }
}

#[test]
fn seed_hcm_race_found() {
    let mut c = cfg(Protocol::Seed, Algo::Hcm, 8, 32, 2);
    c.scheduler = Scheduler::Adversarial {
        slow_rank: 4,
        stall: None,
    };
    let r = check(&c, 20, 3).unwrap();
    assert!(
        kinds(&r).contains(&ViolationKind::StaleRead),
        "{:?}",
        kinds(&r)
    );
}

#[test]
fn inc_is_clean_under_adversarial_and_random_schedules() {
    for algo in [Algo::OneShot, Algo::TwoShot, Algo::Hcm] {
        let world = if algo == Algo::Hcm { 8 } else { 3 };
        for slow in 0..world.min(3) {
            let mut c = cfg(Protocol::Inc, algo, world, 100, 3);
            c.blocks = vec![2, 1, 3];
            c.scheduler = Scheduler::Adversarial {
                slow_rank: slow,
                stall: Some(((slow + 1) % world, 0)),
            };
            let r = check(&c, 10, 11).unwrap();
            assert!(
                r.violations.is_empty(),
                "{algo} slow {slow}: {}",
                r.violations[0].render()
            );
        }
        let mut c = cfg(Protocol::Inc, algo, world, 68, 3);
        c.blocks = vec![1, 2];
        let r = check(&c, 100, 5).unwrap();
        assert!(
            r.violations.is_empty(),
            "{algo}: {}",
            r.violations[0].render()
        );
    }
}

#[test]
fn zero_copy_variant_with_end_barrier_is_clean() {
    // hcm, and the seed's two-shot, have no zero-copy variant.
    for (p, algo, world) in [
        (Protocol::Inc, Algo::Hcm, 8),
        (Protocol::Seed, Algo::TwoShot, 3),
    ] {
        let c = cfg(p, algo, world, 48, 3);
        assert!(check(
            &SimConfig {
                zero_copy: true,
                ..c
            },
            1,
            0
        )
        .is_err());
    }
    // one-shot (CopyIn = the user's write, end barrier) and the two-shot's zero-copy
    // program (`inc::two_shot_zc`; more in tests/two_shot_zc.rs).
    for algo in [Algo::OneShot, Algo::TwoShot] {
        let mut c = cfg(Protocol::Inc, algo, 3, 48, 3);
        c.zero_copy = true;
        let r = check(&c, 200, 9).unwrap();
        assert!(
            r.violations.is_empty(),
            "{algo}: {}",
            r.violations[0].render()
        );
        c.scheduler = Scheduler::Adversarial {
            slow_rank: 2,
            stall: None,
        };
        let r = check(&c, 5, 9).unwrap();
        assert!(
            r.violations.is_empty(),
            "{algo}: {}",
            r.violations[0].render()
        );
    }
}

#[test]
fn exhaustive_tiny_cases() {
    let mut c = cfg(Protocol::Inc, Algo::OneShot, 2, 16, 2);
    c.scheduler = Scheduler::Exhaustive { depth: 14 };
    let r = check(&c, 20_000, 0).unwrap();
    assert!(r.violations.is_empty(), "{}", r.violations[0].render());
    assert!(r.schedules > 100, "{}", r.schedules);
    let mut c = cfg(Protocol::Seed, Algo::OneShot, 2, 16, 2);
    c.scheduler = Scheduler::Exhaustive { depth: 40 };
    let r = check(&c, 20_000, 0).unwrap();
    assert!(
        kinds(&r).contains(&ViolationKind::StaleRead),
        "{} schedules: {:?}",
        r.schedules,
        kinds(&r)
    );
}

#[test]
fn killed_rank_makes_every_other_rank_time_out() {
    for algo in [Algo::OneShot, Algo::TwoShot, Algo::Hcm] {
        let world = if algo == Algo::Hcm { 8 } else { 3 };
        let mut c = cfg(Protocol::Inc, algo, world, 64, 3);
        c.fault = Some(Fault::Kill { rank: 1, call: 1 });
        let r = check(&c, 30, 2).unwrap();
        assert!(
            r.violations.is_empty(),
            "{algo}: {}",
            r.violations[0].render()
        );
        let mut c = cfg(Protocol::Seed, algo, world, 64, 3);
        c.fault = Some(Fault::Kill { rank: 1, call: 1 });
        let r = check(&c, 5, 2).unwrap();
        assert!(
            kinds(&r).contains(&ViolationKind::Deadlock),
            "seed {algo}: {:?}",
            kinds(&r)
        );
    }
}

#[test]
fn mismatched_calls_are_detected_by_inc_not_by_seed() {
    for algo in [Algo::OneShot, Algo::TwoShot, Algo::Hcm] {
        let world = if algo == Algo::Hcm { 8 } else { 4 };
        let mut c = cfg(Protocol::Inc, algo, world, 64, 2);
        c.fault = Some(Fault::Mismatch { rank: 2, call: 1 });
        let r = check(&c, 30, 4).unwrap();
        assert!(
            r.violations.is_empty(),
            "{algo}: {}",
            r.violations[0].render()
        );
        c.fault = Some(Fault::EpochSkew { rank: 0, delta: 2 });
        let r = check(&c, 30, 4).unwrap();
        assert!(
            r.violations.is_empty(),
            "{algo}: {}",
            r.violations[0].render()
        );
        let mut c = cfg(Protocol::Seed, algo, world, 64, 2);
        c.fault = Some(Fault::Mismatch { rank: 2, call: 1 });
        let r = check(&c, 30, 4).unwrap();
        assert!(
            kinds(&r).contains(&ViolationKind::SeqMismatch),
            "seed {algo}: {:?}",
            kinds(&r)
        );
    }
}

#[test]
fn weakened_inc_protocols_are_caught() {
    use inc_sim::Weakening;
    let mut c = cfg(Protocol::Inc, Algo::OneShot, 2, 64, 2);
    c.weaken = Some(Weakening::NoRotation);
    c.scheduler = Scheduler::Adversarial {
        slow_rank: 1,
        stall: None,
    };
    let r = check(&c, 1, 0).unwrap();
    assert!(
        kinds(&r).contains(&ViolationKind::StaleRead),
        "{:?}",
        kinds(&r)
    );
    for algo in [Algo::OneShot, Algo::TwoShot] {
        let mut c = cfg(Protocol::Inc, algo, 2, 64, 1);
        c.weaken = Some(Weakening::RelaxedFlags);
        let r = check(&c, 300, 0).unwrap();
        let v = r
            .violations
            .iter()
            .find(|v| v.kind == ViolationKind::StaleRead)
            .unwrap_or_else(|| panic!("{algo}: {:?}", kinds(&r)));
        assert!(v.message.contains("not (yet) visible"), "{}", v.message);
    }
}

/// Large runs: `cargo test --release -p inc-sim -- --ignored --nocapture`.
#[test]
#[ignore]
fn large_inc_runs_are_clean_and_fast() {
    for algo in [Algo::OneShot, Algo::TwoShot, Algo::Hcm] {
        let mut c = SimConfig::new(Protocol::Inc, algo, 8, 256, 2);
        c.blocks = vec![4];
        let t = std::time::Instant::now();
        let n = 5_000;
        let r = check(&c, n, 1000).unwrap();
        let secs = t.elapsed().as_secs_f64();
        println!("{algo}: {n} schedules world 8, 4 blocks, 256 B, 2 calls: {secs:.1}s = {:.0} schedules/s", n as f64 / secs);
        assert!(
            r.violations.is_empty(),
            "{algo}: {}",
            r.violations[0].render()
        );
    }
}
