//! The checker: executes a protocol's step lists for every rank and block under a
//! scheduler and the weak-memory [`model`](crate::model), and checks every run.
//!
//! Checks: results equal the reference fold (exactly); no block reads peer data that is
//! not the current call's (`stale-read`, from data tags, even when values match); no
//! deadlock (all live blocks waiting, no store left to land); calls that disagree are
//! detected (`seq-mismatch`); a killed rank makes every other rank stop with an error
//! (`timeout`). A violation carries a readable trace, the seed that reproduces it and its
//! replayable [`Decision`] list; the first of each kind is shrunk to a short run (see the
//! crate docs, "Minimal traces").
//!
//! Layout: `config` (the scenario), `report` (violations, decisions, reports), `run` (one
//! schedule's execution: `run::steps`, `run::calls`, `run::verdict`), `shrink`; how each
//! step is picked lives in [`crate::sched`]; this file runs the schedules and holds the
//! data tags and values every run checks.

mod config;
mod report;
mod run;
mod shrink;
#[cfg(test)]
mod tests;

use crate::error::SimError;
use crate::types::Algo;

use crate::sched::{chooser_for, Chooser, Dfs};
pub use config::{Fault, RandomMode, Scheduler, SimConfig, Weakening};
pub use report::{
    format_schedule, parse_schedule, Decision, Report, Shrink, Violation, ViolationKind,
};
use run::Run;
pub(crate) use run::{BState, CallOutcome};
use shrink::shrink;

const KEEP: usize = 64;

/// Runs `schedules` schedules of `cfg` starting at `seed` (schedule i uses seed + i) and
/// reports every violation found. The first violation of each kind is shrunk (see
/// [`SimConfig::shrink_runs`]): its trace is a minimal-effort shortest run that shows the
/// same kind of violation.
pub fn check(cfg: &SimConfig, schedules: u64, seed: u64) -> Result<Report, SimError> {
    if cfg.algo == Algo::PushOneShot {
        return crate::push::check_push(&crate::push::PushConfig::from_sim(cfg)?, schedules, seed);
    }
    cfg.validate()?;
    let mut report = Report {
        protocol: cfg.protocol,
        algo: cfg.algo,
        world: cfg.world,
        schedules: 0,
        failing_schedules: 0,
        violations: Vec::new(),
        steps: 0,
    };
    let mut dfs = Dfs::default();
    let mut run = Run::new(cfg);
    let mut shrinker: Option<Run> = None;
    let pct_steps = if cfg.scheduler == Scheduler::Random
        && matches!(cfg.random, RandomMode::Pct { .. })
        && schedules > 0
    {
        pct_steps(&mut run)
    } else {
        0
    };
    for i in 0..schedules {
        let s = seed.wrapping_add(i);
        run.begin(chooser_for(cfg, s, &mut dfs, pct_steps), None);
        let found = run.execute();
        report.steps += run.steps;
        report.schedules += 1;
        let tag = if matches!(cfg.scheduler, Scheduler::Exhaustive { .. }) {
            i
        } else {
            s
        };
        if !found.is_empty() {
            report.failing_schedules += 1;
        }
        for mut v in found {
            v.seed = tag;
            if report.violations.len() >= KEEP {
                continue;
            }
            let first = !report.violations.iter().any(|w| w.kind == v.kind);
            if first && cfg.shrink_runs > 0 {
                let sh = shrinker.get_or_insert_with(|| Run::new(cfg));
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
    Ok(report)
}

/// PCT's `k` for a configuration: the length of one deterministic schedule (always the
/// lowest enabled action: blocks in order, stores only when no block can move), so a
/// seed's schedule does not depend on which schedules ran before it.
fn pct_steps(run: &mut Run) -> u64 {
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

/// Runs one schedule of `cfg` given as decisions (a [`Violation::schedule`]) and reports
/// its violations (seed 0, not shrunk). Replaying a violation's schedule shows the same
/// kind of violation with the same trace.
pub fn replay(cfg: &SimConfig, schedule: &[Decision]) -> Result<Report, SimError> {
    cfg.validate()?;
    let mut run = Run::new(cfg);
    run.begin(
        Chooser::Replay {
            script: schedule.to_vec(),
            pos: 0,
        },
        None,
    );
    let violations = run.execute();
    Ok(Report {
        protocol: cfg.protocol,
        algo: cfg.algo,
        world: cfg.world,
        schedules: 1,
        failing_schedules: u64::from(!violations.is_empty()),
        violations,
        steps: run.steps,
    })
}

// ---------------------------------------------------------------- data tags and values

const WHAT_INPUT: u64 = 1;
const WHAT_REDUCED: u64 = 2;
const WHAT_PARTIAL: u64 = 3;

/// A value's provenance: who wrote it in which call, and what (`WHAT_*` of the checker).
pub(crate) fn tag(rank: usize, call: usize, what: u64) -> u64 {
    ((rank as u64 + 1) << 40) | ((call as u64 + 1) << 8) | what
}

fn describe_tag(t: u64) -> String {
    if t == 0 {
        return "initial zero (never written)".into();
    }
    let rank = (t >> 40).wrapping_sub(1);
    let call = ((t >> 8) & 0xffff_ffff).wrapping_sub(1);
    let what = match t & 0xff {
        WHAT_INPUT => "input",
        WHAT_REDUCED => "reduced",
        WHAT_PARTIAL => "partial",
        _ => "?",
    };
    format!("r{rank} call {call} {what}")
}

fn input_value(rank: usize, call: usize, chunk: usize) -> u64 {
    let mut z = ((rank as u64) << 48) ^ ((call as u64) << 24) ^ chunk as u64;
    z = (z ^ (z >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z ^ (z >> 29)
}

/// Order-sensitive fold: a different summation order gives a different value.
pub(crate) fn mix(acc: u64, x: u64) -> u64 {
    (acc.rotate_left(7) ^ x).wrapping_mul(0x0100_0000_01B3)
}

fn fold_over(vals: impl Iterator<Item = u64>) -> u64 {
    let mut acc = None;
    for v in vals {
        acc = Some(match acc {
            None => v,
            Some(a) => mix(a, v),
        });
    }
    acc.unwrap_or(0)
}
