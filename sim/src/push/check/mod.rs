//! The checker of the push one-shot (LL) protocol: every rank's blocks run the push steps
//! ([`super::PUSH_STEP_NAMES`]) under a scheduler and the weak-memory
//! [`model`](crate::model); every run is checked for exact results, stale reads
//! (provenance tags on every data word read), deadlock, undetected mismatched calls and
//! missing timeouts, like [`crate::check()`] does for the barrier protocols.
//!
//! What is modelled: every 8-byte half `{data, tag}` of a 16-byte line is one location,
//! and the two halves of one line store land as *separate* events (the protocol relies on
//! 8-byte single-copy atomicity only); a reader polls with relaxed loads that may return
//! any value the model allows (stale included) and accepts a chunk when all four tags of
//! its two lines equal the call's epoch; the header line `{sig, e, sig, e}` is two such
//! halves; `epoch`/`done` are block-shared rank state; kernel boundaries order a rank's
//! calls (stream order) and land its stores. Calls listed in
//! [`PushConfig::barrier_calls`] run the v1 one-shot instead (copy-in into the parity half,
//! release/acquire start barrier, read every peer's half), so mixing LL and v1 calls is
//! checked for both protocols' buffer-reuse arguments.
//!
//! Weakenings ([`PushWeakening`]) show that the checker catches a broken variant: one
//! buffer instead of two parities, no header check, 4-byte words landing separately
//! (no 8-byte atomicity), and a reader that checks one tag per line.
//!
//! Layout: `config` (the scenario: [`PushConfig`], faults, weakenings, schedulers), `run`
//! (one schedule's execution: `run::calls`, `run::steps`, `run::verdict`); this file runs
//! the schedules and holds the data tags and values every run checks.

mod config;
mod run;
#[cfg(test)]
mod tests;

use crate::error::SimError;
use crate::Report;

pub use config::{PushConfig, PushFault, PushScheduler, PushWeakening};
use run::Run;

/// Runs `schedules` schedules of the push protocol (schedule i uses seed + i).
pub fn check_push(cfg: &PushConfig, schedules: u64, seed: u64) -> Result<Report, SimError> {
    cfg.validate()?;
    let mut report = Report {
        protocol: crate::Protocol::Inc,
        algo: crate::Algo::PushOneShot,
        world: cfg.world,
        schedules: 0,
        failing_schedules: 0,
        violations: Vec::new(),
        steps: 0,
    };
    let mut run = Run::new(cfg);
    if let PushScheduler::Pct { .. } = cfg.scheduler {
        // PCT draws its change points from the length of one schedule: measure it once
        // (this calibration run's own result is not reported), so a seed alone replays.
        run.pct_steps = 10_000;
        run.reset(seed);
        let _ = run.execute();
        run.pct_steps = run.steps.max(1);
    }
    for i in 0..schedules {
        let s = seed.wrapping_add(i);
        run.reset(s);
        let found = run.execute();
        report.steps += run.steps;
        report.schedules += 1;
        if !found.is_empty() {
            report.failing_schedules += 1;
        }
        for mut v in found {
            v.seed = s;
            if report.violations.len() < 64 {
                report.violations.push(v);
            }
        }
    }
    Ok(report)
}

/// Provenance of a data word of an LL line.
const WHAT_LINE: u64 = 1;
/// Provenance of a header half.
const WHAT_HDR: u64 = 2;
/// Provenance of a v1 parity-half chunk (barrier calls).
const WHAT_HALF: u64 = 3;
/// Provenance of a v1 barrier flag.
const WHAT_FLAG: u64 = 4;

/// 8-byte halves per user chunk (lines A and B, two halves each).
const HALVES: usize = 4;

fn describe_tag(t: u64) -> String {
    if t == 0 {
        return "the initial zero (never written)".into();
    }
    let rank = (t >> 40).wrapping_sub(1);
    let call = ((t >> 8) & 0xffff_ffff).wrapping_sub(1);
    match t & 0xff {
        WHAT_LINE => format!("r{rank} call {call} line data"),
        WHAT_HDR => format!("r{rank} call {call} header"),
        WHAT_HALF => format!("r{rank} call {call} parity-half data"),
        WHAT_FLAG => format!("r{rank} call {call} barrier flag"),
        _ => "?".into(),
    }
}

/// The data word of half `h` of chunk `c` that rank `q` sends in call `k` (never 0).
fn half_value(q: usize, k: usize, c: usize, h: usize) -> u32 {
    let mut z = ((q as u64) << 48) ^ ((k as u64) << 24) ^ ((c as u64) << 3) ^ h as u64;
    z = (z ^ (z >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((z ^ (z >> 29)) as u32) | 1
}

fn chunk_value(halves: &[u32]) -> u64 {
    halves
        .iter()
        .fold(0u64, |a, &h| a.rotate_left(13).wrapping_add(u64::from(h)))
}

/// A modelled 8-byte half `{data, tag}`: tag in the low word (the checker's encoding).
fn half_word(data: u32, tag32: u32) -> u64 {
    (u64::from(data) << 32) | u64::from(tag32)
}
