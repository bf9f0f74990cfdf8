//! The checker: one engine executes a protocol family's steps for every rank and block
//! under a scheduler ([`crate::sched`]) and the weak-memory [`model`](crate::model), and
//! checks every run. The families: the barrier (pull) protocols of [`SimConfig`]
//! ([`check()`]), the LL push one-shot ([`crate::push::check_push`]; [`check()`]
//! dispatches `Algo::PushOneShot` to it) and the two-shot of lines
//! ([`crate::lines::check_lines`]; [`check()`] dispatches `Algo::TwoShot` with
//! [`SimConfig::lines`] to it, through [`crate::lines::LinesConfig::from_sim`]).
//!
//! Checks: results equal the reference fold (exactly); no block reads peer data that is
//! not the current call's (`stale-read`, from data tags, even when values match); no
//! deadlock (all live blocks waiting, no store left to land); calls that disagree are
//! detected (`seq-mismatch`); a killed rank makes every other rank stop with an error
//! (`timeout`). A violation carries a readable trace, the seed that reproduces it and its
//! replayable [`Decision`] list; the first of each kind is shrunk to a short run (see the
//! crate docs, "Minimal traces").
//!
//! Layout: `config` (the pull scenario), `report` (violations, decisions, reports),
//! `oracle` (data tags and values, the verdict on every call), `engine` (one schedule of
//! any protocol family: the `engine::Family` trait and the run), `shrink`, one module
//! per protocol family: `pull` (the barrier protocols), `push` (the LL push one-shot) and
//! `lines` (the two-shot of lines);
//! how each step is picked lives in [`crate::sched`]. This file runs the schedules.

mod config;
mod engine;
pub(crate) mod lines;
mod oracle;
mod pull;
pub(crate) mod push;
mod report;
mod shrink;
#[cfg(test)]
mod tests;

use crate::error::SimError;
use crate::sched::{chooser_for, Chooser, Dfs};
use crate::types::Algo;

pub use config::{Fault, RandomMode, Scheduler, SimConfig, Weakening};
pub(crate) use engine::Setup;
use engine::{Family, Run};
use pull::Pull;
pub use report::{
    format_schedule, parse_schedule, Decision, Report, Shrink, Violation, ViolationKind,
};
use shrink::shrink;

const KEEP: usize = 64;

/// Runs `schedules` schedules of `cfg` starting at `seed` (schedule i uses seed + i) and
/// reports every violation found. The first violation of each kind is shrunk (see
/// [`SimConfig::shrink_runs`]): its trace is a minimal-effort shortest run that shows the
/// same kind of violation. [`SimConfig::lines`] runs the lines family
/// ([`crate::lines::LinesConfig::from_sim`]; it needs the inc two-shot), `Algo::PushOneShot`
/// the push family ([`crate::push::PushConfig::from_sim`]), anything else the barrier
/// family.
pub fn check(cfg: &SimConfig, schedules: u64, seed: u64) -> Result<Report, SimError> {
    if cfg.lines {
        return lines::check_lines(&lines::LinesConfig::from_sim(cfg)?, schedules, seed);
    }
    if cfg.algo == Algo::PushOneShot {
        return push::check_push(&push::PushConfig::from_sim(cfg)?, schedules, seed);
    }
    Ok(check_family(Pull::new(cfg)?, schedules, seed))
}

/// Runs one schedule of `cfg` given as decisions (a [`Violation::schedule`]) and reports
/// its violations (seed 0, not shrunk). Replaying a violation's schedule shows the same
/// kind of violation with the same trace. The family is [`check()`]'s.
pub fn replay(cfg: &SimConfig, schedule: &[Decision]) -> Result<Report, SimError> {
    if cfg.lines {
        return lines::replay_lines(&lines::LinesConfig::from_sim(cfg)?, schedule);
    }
    if cfg.algo == Algo::PushOneShot {
        return push::replay_push(&push::PushConfig::from_sim(cfg)?, schedule);
    }
    Ok(replay_family(Pull::new(cfg)?, schedule))
}

fn report(set: &Setup) -> Report {
    Report {
        protocol: set.protocol,
        algo: set.algo,
        world: set.world,
        schedules: 0,
        failing_schedules: 0,
        violations: Vec::new(),
        steps: 0,
    }
}

/// [`check`] of any family, given as its constructor's (family, set-up) pair.
fn check_family<F: Family>((fam, set): (F, Setup), schedules: u64, seed: u64) -> Report {
    let mut report = report(&set);
    let mut dfs = Dfs::default();
    let exhaustive = matches!(set.scheduler, Scheduler::Exhaustive { .. });
    let pct = set.scheduler == Scheduler::Random && matches!(set.random, RandomMode::Pct { .. });
    let mut run = Run::new(fam, set);
    let mut shrinker: Option<Run<F>> = None;
    let pct_steps = if pct && schedules > 0 {
        pct_steps(&mut run)
    } else {
        0
    };
    for i in 0..schedules {
        let s = seed.wrapping_add(i);
        run.begin(chooser_for(&run.set, s, &mut dfs, pct_steps), None);
        let found = run.execute();
        report.steps += run.steps;
        report.schedules += 1;
        if !found.is_empty() {
            report.failing_schedules += 1;
        }
        for mut v in found {
            v.seed = if exhaustive { i } else { s };
            if report.violations.len() >= KEEP {
                continue;
            }
            let first = !report.violations.iter().any(|w| w.kind == v.kind);
            if first && run.set.shrink_runs > 0 {
                let sh = shrinker.get_or_insert_with(|| Run::new(run.fam.clone(), run.set.clone()));
                shrink(sh, &mut v);
            }
            report.violations.push(v);
        }
        if let Chooser::Exhaustive { record, .. } = &mut run.chooser {
            if !dfs.advance(std::mem::take(record)) {
                break;
            }
        }
    }
    report
}

/// PCT's `k` for a configuration: the length of one deterministic schedule (always the
/// lowest enabled action: blocks in order, stores only when no block can move), so a
/// seed's schedule does not depend on which schedules ran before it.
fn pct_steps<F: Family>(run: &mut Run<F>) -> u64 {
    run.begin(
        Chooser::Replay {
            script: Vec::new(),
            pos: 0,
        },
        None,
    );
    let _ = run.execute();
    run.steps.max(1)
}

/// [`replay`] of any family, given as its constructor's (family, set-up) pair.
fn replay_family<F: Family>((fam, set): (F, Setup), schedule: &[Decision]) -> Report {
    let mut report = report(&set);
    let mut run = Run::new(fam, set);
    run.begin(
        Chooser::Replay {
            script: schedule.to_vec(),
            pos: 0,
        },
        None,
    );
    report.violations = run.execute();
    report.schedules = 1;
    report.failing_schedules = u64::from(!report.violations.is_empty());
    report.steps = run.steps;
    report
}
