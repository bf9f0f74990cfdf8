#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The two-shot of lines: protocol checker (clean over many schedules, worlds 2..5, slow
//! ranks, faults; each weakening caught within a bounded number of schedules; violations
//! shrunk and replayable; reached through `inc_sim::check`/`replay` with
//! `SimConfig::lines`).
//!
//! Long runs: `cargo test -p inc-sim --release --test lines -- --ignored --nocapture`.

use std::time::Duration;

use inc_sim::lines::{
    check_lines, replay_lines, LinesConfig, LinesFault, LinesScheduler, LinesWeakening,
    SLICE_LINES_ALIGN, STEP_NAMES,
};
use inc_sim::{Algo, ViolationKind};

fn clean(cfg: &LinesConfig, schedules: u64, seed: u64) {
    let r = check_lines(cfg, schedules, seed).unwrap();
    assert_eq!(r.schedules, schedules);
    if let Some(v) = r.violations.first() {
        panic!("{cfg:?}\n{}", v.render());
    }
}

/// Bytes for `calls` consecutive calls that vary (1..=2W lines, not always whole lines).
fn sizes(world: usize, calls: usize, salt: usize) -> Vec<u64> {
    (0..calls)
        .map(|i| {
            let lines = 1 + (i * 5 + salt * 3) % (2 * world);
            (120 * lines - 4 * ((i + salt) % 3)) as u64
        })
        .collect()
}

#[test]
fn lines_is_clean_world_2_to_5() {
    for world in 2..=5 {
        for calls in [1, 4, 6] {
            let mut cfg = LinesConfig::new(world, sizes(world, calls, world));
            cfg.blocks = vec![1 + world % 2, 2, 1];
            clean(&cfg, 40, (world * 100 + calls) as u64);
        }
    }
}

#[test]
fn lines_is_clean_at_the_protocol_alignment() {
    // Slices of 4 lines (the protocol's cut): most lines of a slice are zero padding.
    for world in 2..=5 {
        let mut cfg = LinesConfig::new(world, sizes(world, 4, 1));
        cfg.slice_align = SLICE_LINES_ALIGN;
        cfg.blocks = vec![2, 3, 1];
        clean(&cfg, 15, 300 + world as u64);
        cfg.threads_per_block = 2;
        clean(&cfg, 10, 400 + world as u64);
    }
}

#[test]
fn lines_is_clean_with_a_slow_rank_and_under_a_random_walk() {
    for world in 2..=5 {
        for slow in 0..world {
            let mut cfg = LinesConfig::new(world, sizes(world, 4, slow));
            cfg.scheduler = LinesScheduler::Adversarial { slow_rank: slow };
            clean(&cfg, 8, 7);
        }
        let mut cfg = LinesConfig::new(world, sizes(world, 4, 2));
        cfg.scheduler = LinesScheduler::Random;
        cfg.blocks = vec![1, 2];
        clean(&cfg, 20, 11);
    }
    // Every interleaving and value choice of the first choice points (2 ranks, 3 calls).
    let mut cfg = LinesConfig::new(2, vec![240; 3]);
    cfg.blocks = vec![1];
    cfg.scheduler = LinesScheduler::Exhaustive { depth: 8 };
    let r = check_lines(&cfg, 3000, 0).unwrap();
    assert!(r.schedules > 100, "{} schedules", r.schedules);
    assert!(r.violations.is_empty(), "{}", r.violations[0].render());
}

/// Every fault on worlds 2..5: the run's own checks require each surviving rank to end
/// the faulty call (and every later one) with an error the fault explains — for a
/// mismatched call CALL_MISMATCH or PEER_ABORT (the library's unit test
/// `mismatched_calls_end_in_call_mismatch_or_peer_abort_everywhere` checks that exactly)
/// — no completed call the ranks disagree on, no hang, no timeout without a dead rank.
#[test]
fn lines_faults_are_detected() {
    for world in 2..=5 {
        let bytes = vec![120 * world as u64, 240, 120 * world as u64 + 120, 360];
        let faults = [
            LinesFault::Kill {
                rank: world - 1,
                call: 1,
            },
            LinesFault::Kill { rank: 0, call: 3 },
            LinesFault::Mismatch {
                rank: 0,
                call: 0,
                more: true,
            },
            LinesFault::Mismatch {
                rank: world - 1,
                call: 2,
                more: false,
            },
            LinesFault::OtherDtype {
                rank: world / 2,
                call: 3,
            },
            LinesFault::EpochSkew { rank: 1, delta: 1 },
            LinesFault::EpochSkew { rank: 0, delta: 2 },
        ];
        for (i, fault) in faults.into_iter().enumerate() {
            let mut cfg = LinesConfig::new(world, bytes.clone());
            cfg.blocks = vec![2, 1];
            cfg.fault = Some(fault);
            clean(&cfg, 12, 50 + i as u64);
        }
    }
}

/// Schedules until the first violation of `cfg` from `seed` (at most `max`): None when
/// not found; also the kinds found and the first message.
fn runs_until_caught(cfg: &LinesConfig, max: u64, seed: u64) -> (Option<u64>, Vec<ViolationKind>) {
    let mut cfg = cfg.clone();
    cfg.shrink_runs = 0;
    let r = check_lines(&cfg, max, seed).unwrap();
    let first = r.violations.iter().map(|v| v.seed - seed + 1).min();
    let mut kinds: Vec<ViolationKind> = r.violations.iter().map(|v| v.kind).collect();
    kinds.sort_by_key(|k| k.name());
    kinds.dedup();
    (first, kinds)
}

/// Each weakening is caught on worlds 2..4 from 5 seeds, within `MAX` PCT schedules
/// (depth 3, 4 calls, slices of one line, one block), the first violation of the expected
/// kind; the unweakened protocol is clean on the same schedules. Prints the schedules
/// until caught (median / worst of the 5 seeds).
#[test]
fn weakened_lines_protocols_are_caught() {
    const MAX: u64 = 400;
    let cases = [
        (LinesWeakening::SplitLine, ViolationKind::StaleRead),
        (LinesWeakening::OneParity, ViolationKind::Deadlock),
        (LinesWeakening::NoClear, ViolationKind::StaleRead),
    ];
    for world in 2..=4 {
        let mut base = LinesConfig::new(world, vec![240 * world as u64 / 2; 4]);
        base.blocks = vec![1];
        clean(&base, 100, 1);
        for (w, kind) in cases {
            let mut cfg = base.clone();
            cfg.weaken = Some(w);
            let mut until = Vec::new();
            for i in 0..5 {
                let (first, kinds) = runs_until_caught(&cfg, MAX, 1 + 100_000 * i);
                let n = first.unwrap_or_else(|| panic!("{w:?} world {world}: not caught"));
                assert!(kinds.contains(&kind), "{w:?} world {world}: {kinds:?}");
                until.push(n);
            }
            until.sort_unstable();
            eprintln!(
                "{w:?} world {world}: caught after {until:?} schedules (median {}, worst {})",
                until[2], until[4]
            );
        }
    }
    // The "clear what you took" check is what catches NoClear (nothing else can: with two
    // parities an old flag never equals a later call's).
    let mut cfg = LinesConfig::new(3, vec![360; 3]);
    cfg.weaken = Some(LinesWeakening::NoClear);
    let r = check_lines(&cfg, 1, 1).unwrap();
    assert!(
        r.violations[0].message.contains("clear what you took"),
        "{}",
        r.violations[0].message
    );
}

/// Lines violations are shrunk like the other families': the first of each kind is
/// replaced by a run no longer than the one the seed found, which replays to the same
/// violation and trace; the seed alone finds and shrinks it again.
#[test]
fn lines_violations_are_shrunk_and_replay() {
    let mut shrunk_somewhere = false;
    for (w, kind) in [
        (LinesWeakening::SplitLine, ViolationKind::StaleRead),
        (LinesWeakening::OneParity, ViolationKind::Deadlock),
    ] {
        let mut cfg = LinesConfig::new(2, vec![240; 4]);
        cfg.blocks = vec![1];
        cfg.weaken = Some(w);
        // Deterministic in the run budget, not cut by the clock on a loaded machine.
        cfg.shrink_runs = 300;
        cfg.shrink_time = Duration::from_secs(60);
        let r = check_lines(&cfg, 200, 1).unwrap();
        assert_eq!(r.algo, Algo::TwoShot);
        let v = r
            .violations
            .iter()
            .find(|v| v.kind == kind)
            .unwrap_or_else(|| panic!("{w:?}: no {kind:?}"));
        let sh = v
            .shrink
            .as_ref()
            .unwrap_or_else(|| panic!("{w:?}: not shrunk"));
        assert!(v.events <= sh.original_events, "{w:?}");
        assert!(v.schedule.len() <= sh.original_decisions, "{w:?}");
        shrunk_somewhere |= v.events < sh.original_events;
        let again = replay_lines(&cfg, &v.schedule).unwrap();
        let x = again
            .violations
            .iter()
            .find(|x| x.kind == v.kind)
            .unwrap_or_else(|| panic!("{w:?}: replay lost the violation"));
        assert_eq!((&x.message, &x.trace), (&v.message, &v.trace), "{w:?}");
        let b = check_lines(&cfg, 1, v.seed).unwrap();
        let y = b.violations.iter().find(|y| y.kind == v.kind).unwrap();
        assert_eq!((&y.trace, &y.schedule), (&v.trace, &v.schedule), "{w:?}");
        println!("{w:?}:\n{}", v.render());
    }
    assert!(shrunk_somewhere, "shrinking never removed an event");
}

#[test]
fn step_names_are_inc_protos() {
    assert_eq!(
        STEP_NAMES,
        ["Prologue", "Scatter", "ReduceStore", "Gather", "Epilogue"]
    );
    let names: Vec<&str> = inc_sim::program::inc::two_shot_lines()
        .iter()
        .map(|s| s.name())
        .collect();
    assert_eq!(names, STEP_NAMES);
}

#[test]
#[ignore = "long: cargo test -p inc-sim --release --test lines -- --ignored --nocapture"]
fn lines_is_clean_long() {
    let start = std::time::Instant::now();
    let mut total = 0u64;
    for world in 2..=5 {
        for calls in [1, 4, 7] {
            for salt in 0..3 {
                let mut cfg = LinesConfig::new(world, sizes(world, calls, salt));
                cfg.blocks = vec![1, 3, 2];
                if salt == 1 {
                    cfg.slice_align = SLICE_LINES_ALIGN;
                }
                if salt == 2 {
                    cfg.threads_per_block = 2;
                }
                clean(&cfg, 2000, salt as u64 * 1000 + world as u64);
                total += 2000;
            }
        }
        eprintln!(
            "world {world} done: {total} schedules, {:?}",
            start.elapsed()
        );
    }
}

#[test]
#[ignore = "long: cargo test -p inc-sim --release --test lines -- --ignored --nocapture"]
fn lines_faults_long() {
    let start = std::time::Instant::now();
    let mut total = 0u64;
    for world in 2..=5 {
        let bytes = sizes(world, 5, 1);
        let faults = [
            LinesFault::Kill {
                rank: world - 1,
                call: 1,
            },
            LinesFault::Kill { rank: 0, call: 3 },
            LinesFault::Mismatch {
                rank: 0,
                call: 1,
                more: true,
            },
            LinesFault::Mismatch {
                rank: world - 1,
                call: 3,
                more: false,
            },
            LinesFault::OtherDtype {
                rank: world / 2,
                call: 4,
            },
            LinesFault::EpochSkew { rank: 1, delta: 1 },
            LinesFault::EpochSkew { rank: 0, delta: 2 },
        ];
        for (i, fault) in faults.into_iter().enumerate() {
            let mut cfg = LinesConfig::new(world, bytes.clone());
            if matches!(fault, LinesFault::Mismatch { more: false, .. }) && bytes[3] <= 120 {
                continue;
            }
            cfg.blocks = vec![2, 1, 3];
            cfg.fault = Some(fault);
            clean(&cfg, 1000, i as u64 * 7919 + world as u64);
            total += 1000;
        }
    }
    eprintln!(
        "lines faults long: {total} schedules in {:?}",
        start.elapsed()
    );
}

/// `inc_sim::check`/`replay` (what `inc sim` and `inc sim --replay` call) run the lines
/// family for `SimConfig::lines`: the same runs as `check_lines` of
/// `LinesConfig::from_sim`, not the barrier form's; `NoRotation` (one parity) is caught and
/// its schedule replays to the same violation; what has no lines counterpart is rejected.
#[test]
fn check_and_replay_dispatch_the_form_of_lines() {
    use inc_sim::{check, replay, Fault, Protocol, Scheduler, SimConfig, SimError, Weakening};
    let mut c = SimConfig::new(Protocol::Inc, Algo::TwoShot, 3, 240, 4);
    c.lines = true;
    c.blocks = vec![2, 1];
    let r = check(&c, 30, 5).unwrap();
    assert_eq!((r.algo, r.world, r.schedules), (Algo::TwoShot, 3, 30));
    if let Some(v) = r.violations.first() {
        panic!("{}", v.render());
    }
    let lc = LinesConfig::from_sim(&c).unwrap();
    assert_eq!(lc.bytes, vec![240; 4]);
    assert_eq!((lc.world, lc.slice_align, &lc.blocks), (3, 1, &c.blocks));
    assert_eq!(check_lines(&lc, 30, 5).unwrap().steps, r.steps);
    let barrier = SimConfig {
        lines: false,
        ..c.clone()
    };
    assert_ne!(
        check(&barrier, 30, 5).unwrap().steps,
        r.steps,
        "not dispatched"
    );

    // One parity instead of two: a line lost, a hang (deadlock), replayable.
    let mut w = SimConfig::new(Protocol::Inc, Algo::TwoShot, 2, 240, 4);
    w.lines = true;
    w.blocks = vec![1];
    w.weaken = Some(Weakening::NoRotation);
    w.shrink_runs = 300;
    w.shrink_time = Duration::from_secs(60);
    assert_eq!(
        LinesConfig::from_sim(&w).unwrap().weaken,
        Some(LinesWeakening::OneParity)
    );
    let r = check(&w, 200, 1).unwrap();
    let v = r
        .violations
        .iter()
        .find(|v| v.kind == ViolationKind::Deadlock)
        .unwrap_or_else(|| panic!("one parity not caught: {:?}", r.violations));
    let again = replay(&w, &v.schedule).unwrap();
    let x = again
        .violations
        .iter()
        .find(|x| x.kind == v.kind)
        .unwrap_or_else(|| panic!("replay lost the deadlock"));
    assert_eq!((&x.message, &x.trace), (&v.message, &v.trace));
    assert!(!replay(
        &SimConfig {
            weaken: None,
            ..w.clone()
        },
        &v.schedule
    )
    .unwrap()
    .violations
    .iter()
    .any(|x| x.kind == v.kind));

    // Faults map; the adversarial scheduler keeps its slow rank.
    let mut f = c.clone();
    f.fault = Some(Fault::Mismatch { rank: 1, call: 2 });
    f.scheduler = Scheduler::Adversarial {
        slow_rank: 2,
        stall: Some((0, 0)),
    };
    let lf = LinesConfig::from_sim(&f).unwrap();
    assert_eq!(
        lf.fault,
        Some(LinesFault::Mismatch {
            rank: 1,
            call: 2,
            more: true
        })
    );
    assert_eq!(lf.scheduler, LinesScheduler::Adversarial { slow_rank: 2 });
    assert!(check(&f, 5, 0).unwrap().violations.is_empty());

    let rejected = [
        (
            SimConfig {
                algo: Algo::OneShot,
                ..c.clone()
            },
            "two-shot",
        ),
        (
            SimConfig {
                algo: Algo::PushOneShot,
                ..c.clone()
            },
            "two-shot",
        ),
        (
            SimConfig {
                protocol: Protocol::Seed,
                ..c.clone()
            },
            "seed",
        ),
        (
            SimConfig {
                zero_copy: true,
                ..c.clone()
            },
            "zero-copy",
        ),
        (
            SimConfig {
                deferred_gather: true,
                ..c.clone()
            },
            "deferred",
        ),
        (
            SimConfig {
                weaken: Some(Weakening::RelaxedFlags),
                ..c.clone()
            },
            "RelaxedFlags",
        ),
        (
            SimConfig {
                world: 1,
                ..c.clone()
            },
            "world",
        ),
        (
            SimConfig {
                bytes: 120 * 64,
                ..c.clone()
            },
            "bytes",
        ),
        (
            SimConfig {
                calls: 0,
                ..c.clone()
            },
            "calls",
        ),
    ];
    for (bad, want) in rejected {
        for e in [
            check(&bad, 1, 0).unwrap_err(),
            replay(&bad, &[]).unwrap_err(),
        ] {
            match e {
                SimError::Config(m) => assert!(m.contains(want), "{m:?} lacks {want:?}"),
                e => panic!("{e}"),
            }
        }
    }
}

/// A lagging rank or a faulty rank outside the world is a configuration error (lines and
/// push checkers alike: they share the validation), before any schedule runs.
#[test]
fn ranks_outside_the_world_are_rejected() {
    let check_both = |slow: Option<usize>, fault: Option<usize>, want: &str| {
        let mut l = LinesConfig::new(2, vec![240; 2]);
        let mut p = inc_sim::push::PushConfig::new(2, vec![64; 2]);
        if let Some(r) = slow {
            l.scheduler = LinesScheduler::Adversarial { slow_rank: r };
            p.scheduler = LinesScheduler::Adversarial { slow_rank: r };
        }
        if let Some(rank) = fault {
            l.fault = Some(LinesFault::Kill { rank, call: 0 });
            p.fault = Some(inc_sim::push::PushFault::Kill { rank, call: 0 });
        }
        for e in [
            check_lines(&l, 1, 0).unwrap_err(),
            replay_lines(&l, &[]).unwrap_err(),
            inc_sim::push::check_push(&p, 1, 0).unwrap_err(),
        ] {
            assert!(e.to_string().contains(want), "{e} lacks {want:?}");
        }
    };
    check_both(Some(2), None, "slow rank 2 >= world 2");
    check_both(None, Some(5), "fault rank 5 >= world 2");
    // the slow rank is checked first
    check_both(Some(3), Some(4), "slow rank 3");
}
