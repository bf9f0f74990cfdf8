//! Shrinking a violation to a short run: delta debugging over its recorded decisions
//! (crate docs, "Minimal traces").

use std::time::Instant;

use super::engine::{Family, Run};
use super::{Decision, Shrink, Violation, ViolationKind};
use crate::sched::Chooser;

/// Replays `script` stopping at the first violation of `kind`; returns it (its
/// `schedule` = the decisions actually taken up to it).
fn attempt<F: Family>(
    run: &mut Run<F>,
    script: Vec<Decision>,
    kind: ViolationKind,
) -> Option<Violation> {
    run.begin(Chooser::Replay { script, pos: 0 }, Some(kind));
    run.execute().into_iter().find(|v| v.kind == kind)
}

/// Action units of a script: `[start, end)` of each action decision and its values.
pub(super) fn units(script: &[Decision]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, d) in script.iter().enumerate() {
        match out.last_mut() {
            Some(u) if !d.is_action() => u.1 = i + 1,
            _ => out.push((i, i + 1)),
        }
    }
    out
}

/// Delta-debugging shrink of a violation: deletes chunks of action decisions (halving
/// the chunk size down to one), then the stale-value picks, keeping a change only when the
/// replay still shows the same kind of violation with no more trace events and fewer
/// decisions. Bounded by `shrink_runs` replays and `shrink_time`.
pub(super) fn shrink<F: Family>(run: &mut Run<F>, v: &mut Violation) {
    let (shrink_runs, shrink_time) = (run.set.shrink_runs, run.set.shrink_time);
    let kind = v.kind;
    let t0 = Instant::now();
    let mut runs = 1usize;
    // The found run, replayed from its own decisions (always reproduces it).
    let Some(mut best) = attempt(run, v.schedule.clone(), kind) else {
        return;
    };
    let original = (v.events, v.schedule.len());
    let budget_left = |runs: usize| runs < shrink_runs && t0.elapsed() < shrink_time;
    let better = |c: &Violation, b: &Violation| {
        c.events < b.events || (c.events == b.events && c.schedule.len() < b.schedule.len())
    };
    // Pass 1: delete chunks of actions (a second round was measured to gain nothing).
    let mut chunk = units(&best.schedule).len().div_ceil(2).max(1);
    'outer: loop {
        let mut start = 0;
        loop {
            let u = units(&best.schedule);
            if start >= u.len() {
                break;
            }
            if !budget_left(runs) {
                break 'outer;
            }
            let end = (start + chunk).min(u.len());
            let (a, b) = (
                u.get(start).map_or(0, |x| x.0),
                u.get(end - 1).map_or(0, |x| x.1),
            );
            let mut cand = best.schedule.clone();
            cand.drain(a..b);
            runs += 1;
            match attempt(run, cand, kind) {
                Some(c) if better(&c, &best) => best = c,
                _ => start += chunk,
            }
        }
        if chunk == 1 {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    // Pass 2: read the newest value where a stale one is not needed.
    let mut i = 0;
    while budget_left(runs) {
        let Some(pos) = best
            .schedule
            .iter()
            .skip(i)
            .position(|d| matches!(d, Decision::Value(n) if *n > 0))
        else {
            break;
        };
        let at = i + pos;
        let mut cand = best.schedule.clone();
        if let Some(d) = cand.get_mut(at) {
            *d = Decision::Value(0);
        }
        runs += 1;
        match attempt(run, cand, kind) {
            Some(c) if c.events <= best.events => best = c,
            _ => i = at + 1,
        }
    }
    if (best.events, best.schedule.len()) > original {
        return;
    }
    let info = Shrink {
        original_message: std::mem::take(&mut v.message),
        original_events: v.events,
        events: best.events,
        original_decisions: v.schedule.len(),
        runs,
    };
    v.message = best.message;
    v.trace = best.trace;
    v.schedule = best.schedule;
    v.events = best.events;
    v.focus = best.focus;
    v.shrink = Some(info);
}
