//! What a check reports: [`Violation`]s with their traces and replayable [`Decision`]
//! lists (and their one-line text form), shrinking information, the [`Report`].

use std::fmt::Write as _;

use crate::error::SimError;
use crate::program::Protocol;
use crate::types::Algo;

/// Kind of a violation (the JSON `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ViolationKind {
    /// A block read peer data that is not the current call's.
    #[serde(rename = "stale-read")]
    StaleRead,
    /// A result differs from the reference.
    #[serde(rename = "wrong-result")]
    WrongResult,
    /// All live blocks wait and nothing can change.
    #[serde(rename = "deadlock")]
    Deadlock,
    /// Mismatched calls were not detected, or were reported where there were none.
    #[serde(rename = "seq-mismatch")]
    SeqMismatch,
    /// A rank timed out without cause, did not stop after a peer died, or the step budget ran out.
    #[serde(rename = "timeout")]
    Timeout,
}

impl ViolationKind {
    /// The JSON / CLI name.
    pub const fn name(self) -> &'static str {
        match self {
            ViolationKind::StaleRead => "stale-read",
            ViolationKind::WrongResult => "wrong-result",
            ViolationKind::Deadlock => "deadlock",
            ViolationKind::SeqMismatch => "seq-mismatch",
            ViolationKind::Timeout => "timeout",
        }
    }
}

/// One scheduling decision of a run, as recorded for replay and shrinking.
///
/// A schedule is the list of decisions a run took. [`replay`](crate::check::replay) feeds one back: each
/// action decision is taken when that action is enabled at that point and dropped
/// otherwise; a `Value` belongs to the action before it. When the list runs out, the
/// lowest enabled action runs and loads read the newest value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Decision {
    /// Block `block` of rank `rank` takes its next action.
    Block {
        /// Rank.
        rank: usize,
        /// Block.
        block: usize,
    },
    /// A pending store of that block lands; `store` is the block's own clock at the store
    /// (its identity within the block).
    Land {
        /// Rank.
        rank: usize,
        /// Block.
        block: usize,
        /// Store identity.
        store: u32,
    },
    /// Nothing can move: the bounded wait of this block expires (TIMEOUT).
    Timeout {
        /// Rank.
        rank: usize,
        /// Block.
        block: usize,
    },
    /// The next load with several allowed values (of the action just decided) reads the
    /// `n`-th newest one (0 = newest; clamped).
    Value(usize),
}

impl Decision {
    pub(super) fn is_action(&self) -> bool {
        !matches!(self, Decision::Value(_))
    }
}

/// A schedule as one line of text: decisions separated by spaces, `b<rank>.<block>`
/// (block acts), `l<rank>.<block>@<store>` (store lands), `t<rank>.<block>` (timeout),
/// `v<n>` (load value). What `inc sim --json` writes and `inc sim --replay` reads.
pub fn format_schedule(schedule: &[Decision]) -> String {
    let mut s = String::with_capacity(schedule.len() * 5);
    for (i, d) in schedule.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = match d {
            Decision::Block { rank, block } => write!(s, "b{rank}.{block}"),
            Decision::Land { rank, block, store } => write!(s, "l{rank}.{block}@{store}"),
            Decision::Timeout { rank, block } => write!(s, "t{rank}.{block}"),
            Decision::Value(n) => write!(s, "v{n}"),
        };
    }
    s
}

/// Parses [`format_schedule`]'s text.
pub fn parse_schedule(text: &str) -> Result<Vec<Decision>, SimError> {
    let bad = |t: &str| SimError::Config(format!("bad schedule token {t:?}"));
    let num = |t: &str, x: &str| x.parse::<usize>().map_err(|_| bad(t));
    let pair = |t: &str, x: &str| -> Result<(usize, usize), SimError> {
        let (r, b) = x.split_once('.').ok_or_else(|| bad(t))?;
        Ok((num(t, r)?, num(t, b)?))
    };
    text.split_whitespace()
        .map(|t| {
            let (head, rest) = t.split_at(t.len().min(1));
            match head {
                "b" => pair(t, rest).map(|(rank, block)| Decision::Block { rank, block }),
                "t" => pair(t, rest).map(|(rank, block)| Decision::Timeout { rank, block }),
                "v" => num(t, rest).map(Decision::Value),
                "l" => {
                    let (rb, st) = rest.split_once('@').ok_or_else(|| bad(t))?;
                    let (rank, block) = pair(t, rb)?;
                    let store = st.parse::<u32>().map_err(|_| bad(t))?;
                    Ok(Decision::Land { rank, block, store })
                }
                _ => Err(bad(t)),
            }
        })
        .collect()
}

/// What shrinking did to a violation.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Shrink {
    /// The message of the run the seed found (before shrinking).
    pub original_message: String,
    /// Trace events (all ranks) up to the violation in the run the seed found.
    pub original_events: usize,
    /// Trace events (all ranks) up to the violation in the shrunk run.
    pub events: usize,
    /// Decisions of the found run up to the violation.
    pub original_decisions: usize,
    /// Replays spent.
    pub runs: usize,
}

/// One violation found in one schedule.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Violation {
    /// What went wrong.
    pub kind: ViolationKind,
    /// One-line description (of the run shown in `trace`).
    pub message: String,
    /// Seed of the schedule (Random/Adversarial: `check(cfg, 1, seed)` finds it again and
    /// shrinks it the same way, unless `shrink_time` cut shrinking short);
    /// Exhaustive: the schedule's index.
    pub seed: u64,
    /// The interleaving up to the violation, one event per line (rank/block/call/step/
    /// value); the shrunk run's when [`Violation::shrink`] is set.
    pub trace: Vec<String>,
    /// The decisions that replay the run shown in `trace` ([`replay`](crate::check::replay)).
    pub schedule: Vec<Decision>,
    /// Set when the trace was shrunk (the first violation of each kind in a report).
    pub shrink: Option<Shrink>,
    /// Trace events (all ranks) up to the violation in the run shown.
    pub events: usize,
    /// Focus ranks of the violation (internal: used when rendering a shrunk run).
    #[serde(skip)]
    pub(super) focus: Option<(usize, usize)>,
}

impl Violation {
    /// The trace as one printable block.
    pub fn render(&self) -> String {
        let mut s = format!("{}: {}\n", self.kind.name(), self.message);
        for l in &self.trace {
            let _ = writeln!(s, "  {l}");
        }
        if let Some(sh) = &self.shrink {
            let _ = writeln!(
                s,
                "  shrunk from {} to {} events ({} -> {} decisions, {} replays)",
                sh.original_events,
                sh.events,
                sh.original_decisions,
                self.schedule.len(),
                sh.runs,
            );
            if sh.original_message != self.message {
                let _ = writeln!(s, "  the seed's own run: {}", sh.original_message);
            }
        }
        let _ = writeln!(s, "  reproduce with schedule seed {}", self.seed);
        s
    }
}

/// Outcome of [`check`](crate::check::check).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// Protocol checked.
    pub protocol: Protocol,
    /// Algorithm checked.
    pub algo: Algo,
    /// World size.
    pub world: usize,
    /// Schedules run.
    pub schedules: u64,
    /// Schedules with at least one violation.
    pub failing_schedules: u64,
    /// Violations (at most one per kind per schedule; at most 64 kept).
    pub violations: Vec<Violation>,
    /// Total scheduler steps taken (shrinking replays not counted).
    pub steps: u64,
}
