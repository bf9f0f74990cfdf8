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

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::error::SimError;
use crate::model::{MemOrder, Memory};
use crate::program::{self, PeerSet, Protocol, Step, CUBE_MESH_8};
use crate::sched::{Event as SchedEvent, Pct, Strategy};
use crate::types::{
    abort_word, call_sig, flag_epoch, flag_sig, flag_word, Algo, BarrierKind, DType, ReduceOp,
    CHUNK_BYTES, ERR_CALL_MISMATCH, ERR_PEER_ABORT, ERR_SEQ_MISMATCH, ERR_TIMEOUT, MAX_BLOCKS,
    MAX_RANKS,
};

/// An injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Fault {
    /// `rank` never makes call `call` (nor any later one).
    Kill {
        /// The dead rank.
        rank: usize,
        /// First call it misses.
        call: usize,
    },
    /// `rank` makes call `call` with one more element than the others.
    Mismatch {
        /// The odd rank.
        rank: usize,
        /// The call that differs.
        call: usize,
    },
    /// `rank` starts with its epoch `delta` ahead (as if it made calls alone).
    EpochSkew {
        /// The odd rank.
        rank: usize,
        /// Epochs ahead.
        delta: u32,
    },
}

/// A deliberate weakening of the inc protocol, to show the checker catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Weakening {
    /// Flags written and read relaxed instead of release/acquire.
    RelaxedFlags,
    /// One buffer instead of two parity halves, and no end barrier.
    NoRotation,
    /// two-shot without its mid barrier: Gather reads the gather area before the owners'
    /// stores of the reduced slices are known to be visible.
    NoMidBarrier,
    /// Zero-copy variants without their end barrier: a rank returns (and the user writes
    /// its next input) while peers may still read or store into its buffer.
    NoEndBarrier,
    /// No start barrier: readers may read a peer's buffer before its input of this call is
    /// there (or while the peer is still in the previous call).
    NoStartBarrier,
}

/// How schedules are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Scheduler {
    /// Seeded random schedules, drawn as [`SimConfig::random`] says: PCT (the default,
    /// [`RandomMode::Pct`]) or a uniform walk ([`RandomMode::Walk`]); loads read random
    /// allowed (stale) values half of the time.
    Random,
    /// Every interleaving and value choice among the first `depth` choice points
    /// (depth-first, loom-style); later choice points take the first option.
    Exhaustive {
        /// Choice points that branch.
        depth: usize,
    },
    /// Random, but `slow_rank` (and block `stall` = (rank, block), if any) only moves when
    /// nothing else can; loads read the newest value.
    Adversarial {
        /// The rank that lags.
        slow_rank: usize,
        /// A block that lags.
        stall: Option<(usize, usize)>,
    },
}

/// How [`Scheduler::Random`] draws a schedule.
///
/// (A mode of `Random` rather than a `Scheduler` variant of its own so that the push
/// checker, which maps every `Scheduler` variant, keeps compiling unchanged; it runs its
/// own uniform walk for `Random` in either mode until it adopts [`crate::sched::Pct`].)
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum RandomMode {
    /// PCT ([`crate::sched`]): random priorities per block and per store buffer,
    /// `depth - 1` priority change points; finds depth-`d` races with a probability that
    /// does not fall with the message size. The default (depth [`RandomMode::PCT_DEPTH`]).
    Pct {
        /// Bug depth targeted (>= 1); `depth - 1` change points.
        depth: usize,
    },
    /// Uniform random walk: every step picks uniformly among all enabled actions (each
    /// landable store counted alone). Finds shallow races at small sizes only.
    Walk,
}

impl RandomMode {
    /// The default PCT depth.
    pub const PCT_DEPTH: usize = 3;
}

/// One scenario to check.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Protocol set.
    pub protocol: Protocol,
    /// Algorithm.
    pub algo: Algo,
    /// Ranks, 1..=8 (8 for hcm).
    pub world: usize,
    /// Bytes per rank per call (f32 elements; 16-byte chunks, the tail may be partial).
    pub bytes: usize,
    /// Consecutive calls.
    pub calls: usize,
    /// Blocks launched per call (cycled when shorter than `calls`); each 1..=MAX_BLOCKS.
    pub blocks: Vec<usize>,
    /// Chunks per block in the grid-stride partition.
    pub threads_per_block: usize,
    /// The hcm table (defaults to [`CUBE_MESH_8`]).
    pub hcm: Option<[[usize; 4]; 8]>,
    /// Zero-copy variant (one buffer per rank, no parity halves, end barrier), inc and
    /// seed one-shot or inc two-shot. one-shot: the program is `inc::one_shot` with its
    /// CopyIn standing for the user's write of the input and its EndBarrier run. two-shot:
    /// [`program::inc::two_shot_zc`] (symmetric tensors, in place): at each launch the
    /// rank's input of that call is stored into its own buffer (the user's write, after
    /// its previous kernel completed; relaxed stores issued by the block that handles each
    /// chunk), and when the kernel completes every chunk of the own buffer is read back
    /// (after the kernel, by the user) and checked against the reference.
    pub zero_copy: bool,
    /// Injected fault.
    pub fault: Option<Fault>,
    /// Scheduler.
    pub scheduler: Scheduler,
    /// How [`Scheduler::Random`] draws schedules (default PCT).
    pub random: RandomMode,
    /// Deliberately weakened protocol (mutation testing of the checker).
    pub weaken: Option<Weakening>,
    /// Step budget of one schedule; exceeding it is a `timeout` violation (livelock).
    /// The checker uses at least [`SimConfig::auto_max_steps`], which grows with the size.
    pub max_steps: usize,
    /// Replays the shrinker may spend on the first violation of each kind (0 = do not
    /// shrink; the trace is then the found run's, cut to the involved ranks).
    pub shrink_runs: usize,
    /// Wall-clock bound of shrinking one violation (the result stays a valid, replayable
    /// schedule when it is hit, but may then depend on machine speed).
    pub shrink_time: Duration,
}

impl SimConfig {
    /// A fault-free random-scheduler scenario.
    pub fn new(protocol: Protocol, algo: Algo, world: usize, bytes: usize, calls: usize) -> Self {
        SimConfig {
            protocol,
            algo,
            world,
            bytes,
            calls,
            blocks: vec![2],
            threads_per_block: 1,
            hcm: None,
            zero_copy: false,
            fault: None,
            weaken: None,
            scheduler: Scheduler::Random,
            random: RandomMode::Pct {
                depth: RandomMode::PCT_DEPTH,
            },
            max_steps: 200_000,
            shrink_runs: 2_000,
            shrink_time: Duration::from_secs(2),
        }
    }

    /// A step budget that no correct run of this configuration comes near: 16 steps per
    /// chunk and 64 per barrier member, per rank, block and call.
    pub fn auto_max_steps(&self) -> usize {
        let chunks = (self.bytes + 4).div_ceil(CHUNK_BYTES);
        let g = self.blocks.iter().copied().max().unwrap_or(1);
        self.world
            .saturating_mul(self.calls)
            .saturating_mul(16 * chunks + 64 * g * self.world + 64)
    }

    fn validate(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::Config(m));
        if self.world == 0 || self.world > MAX_RANKS {
            return bad(format!("world {} must be 1..={MAX_RANKS}", self.world));
        }
        if self.algo == Algo::Hcm && self.world != 8 {
            return bad("hcm needs world 8".into());
        }
        if self.bytes == 0 || self.bytes % 4 != 0 || self.bytes > 1 << 20 {
            return bad(format!(
                "bytes {} must be a positive multiple of 4 up to 1 MiB",
                self.bytes
            ));
        }
        if self.calls == 0 || self.calls > 64 {
            return bad(format!("calls {} must be 1..=64", self.calls));
        }
        if self.blocks.is_empty() || self.blocks.iter().any(|&b| b == 0 || b > MAX_BLOCKS) {
            return bad(format!(
                "blocks {:?} must each be 1..={MAX_BLOCKS}",
                self.blocks
            ));
        }
        if self.threads_per_block == 0 {
            return bad("threads_per_block must be >= 1".into());
        }
        if self.zero_copy && program::zero_copy_steps(self.protocol, self.algo).is_empty() {
            return bad(format!(
                "{} {} has no zero-copy variant (one-shot, and the inc two-shot, have one)",
                self.protocol, self.algo
            ));
        }
        if let Some(t) = &self.hcm {
            crate::cpu::validate_hcm(t)?;
        }
        if let RandomMode::Pct { depth: 0 } = self.random {
            return bad("PCT depth must be >= 1".into());
        }
        if let Scheduler::Adversarial { slow_rank, .. } = self.scheduler {
            if slow_rank >= self.world {
                return bad(format!("slow rank {slow_rank} >= world {}", self.world));
            }
        }
        match self.fault {
            Some(Fault::Kill { rank, .. })
            | Some(Fault::Mismatch { rank, .. })
            | Some(Fault::EpochSkew { rank, .. })
                if rank >= self.world =>
            {
                bad(format!("fault rank {rank} >= world {}", self.world))
            }
            _ => Ok(()),
        }
    }
}

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
/// A schedule is the list of decisions a run took. [`replay`] feeds one back: each
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
    fn is_action(&self) -> bool {
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
    /// The decisions that replay the run shown in `trace` ([`replay`]).
    pub schedule: Vec<Decision>,
    /// Set when the trace was shrunk (the first violation of each kind in a report).
    pub shrink: Option<Shrink>,
    /// Trace events (all ranks) up to the violation in the run shown.
    pub events: usize,
    /// Focus ranks of the violation (internal: used when rendering a shrunk run).
    #[serde(skip)]
    focus: Option<(usize, usize)>,
}

impl Violation {
    /// A violation without a replayable schedule (the push checker's; see
    /// [`crate::push::check_push`]).
    pub(crate) fn unreplayable(kind: ViolationKind, message: String, trace: Vec<String>) -> Self {
        let events = trace.len();
        Violation {
            kind,
            message,
            seed: 0,
            trace,
            schedule: Vec::new(),
            shrink: None,
            events,
            focus: None,
        }
    }

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

/// Outcome of [`check`].
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

const KEEP: usize = 64;

fn chooser_for(cfg: &SimConfig, s: u64, dfs: &mut Dfs, pct_steps: u64) -> Chooser {
    match cfg.scheduler {
        Scheduler::Random => match cfg.random {
            RandomMode::Walk => Chooser::Random(Rng::new(s)),
            RandomMode::Pct { depth } => {
                let threads = cfg.world * cfg.blocks.iter().copied().max().unwrap_or(1);
                Chooser::Pct(Pct::new(s, threads, depth, pct_steps))
            }
        },
        Scheduler::Adversarial { slow_rank, stall } => Chooser::Adversarial {
            rng: Rng::new(s),
            slow_rank,
            stall,
        },
        Scheduler::Exhaustive { depth } => Chooser::Exhaustive {
            script: dfs.next_script(),
            pos: 0,
            depth,
            record: Vec::new(),
        },
    }
}

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

/// Replays `script` stopping at the first violation of `kind`; returns it (its
/// `schedule` = the decisions actually taken up to it).
fn attempt(run: &mut Run, script: Vec<Decision>, kind: ViolationKind) -> Option<Violation> {
    run.begin(Chooser::Replay { script, pos: 0 }, Some(kind));
    run.execute().into_iter().find(|v| v.kind == kind)
}

/// Action units of a script: `[start, end)` of each action decision and its values.
fn units(script: &[Decision]) -> Vec<(usize, usize)> {
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
fn shrink(run: &mut Run, v: &mut Violation) {
    let cfg = run.cfg;
    let kind = v.kind;
    let t0 = Instant::now();
    let mut runs = 1usize;
    // The found run, replayed from its own decisions (always reproduces it).
    let Some(mut best) = attempt(run, v.schedule.clone(), kind) else {
        return;
    };
    let original = (v.events, v.schedule.len());
    let budget_left = |runs: usize| runs < cfg.shrink_runs && t0.elapsed() < cfg.shrink_time;
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

/// Depth-first enumeration of choice sequences.
#[derive(Default)]
struct Dfs {
    /// The choice sequence to replay next.
    next: Vec<usize>,
    started: bool,
}

impl Dfs {
    fn next_script(&mut self) -> Vec<usize> {
        self.started = true;
        self.next.clone()
    }
    /// `record` = (choice, options) of the run just done; false when exhausted.
    fn advance(&mut self, record: Vec<(usize, usize)>) -> bool {
        let mut rec = record;
        while let Some((c, n)) = rec.pop() {
            if c + 1 < n {
                let mut s: Vec<usize> = rec.iter().map(|&(c, _)| c).collect();
                s.push(c + 1);
                self.next = s;
                return true;
            }
        }
        false
    }
}

/// xorshift64* seeded through splitmix64 (shared with the push checker).
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// An action picked by a [`Chooser`]: a block, or the `j`-th landable store (program
/// order) of a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pick {
    Block(usize),
    Land(usize, usize),
}

/// The enabled actions of one step: blocks (thread ids) and, per thread with landable
/// stores, `(thread, how many)`. Flat index order: blocks, then each group's stores.
struct Menu<'m> {
    blocks: &'m [usize],
    groups: &'m [(usize, usize)],
}

impl Menu<'_> {
    fn len(&self) -> usize {
        self.blocks.len() + self.groups.iter().map(|g| g.1).sum::<usize>()
    }
    /// The action at flat index `i` (the first one when out of range).
    fn flat(&self, i: usize) -> Pick {
        if let Some(&b) = self.blocks.get(i) {
            return Pick::Block(b);
        }
        let mut j = i - self.blocks.len();
        for &(t, c) in self.groups {
            if j < c {
                return Pick::Land(t, j);
            }
            j -= c;
        }
        self.first()
    }
    fn first(&self) -> Pick {
        match (self.blocks.first(), self.groups.first()) {
            (Some(&b), _) => Pick::Block(b),
            (None, Some(&(t, _))) => Pick::Land(t, 0),
            (None, None) => Pick::Block(0),
        }
    }
}

enum Chooser {
    Random(Rng),
    /// PCT ([`crate::sched`]).
    Pct(Pct),
    Adversarial {
        rng: Rng,
        slow_rank: usize,
        stall: Option<(usize, usize)>,
    },
    Exhaustive {
        script: Vec<usize>,
        pos: usize,
        depth: usize,
        record: Vec<(usize, usize)>,
    },
    /// Feeds back recorded [`Decision`]s (actions are matched by the run itself).
    Replay {
        script: Vec<Decision>,
        pos: usize,
    },
}

impl Chooser {
    fn exhaustive(
        script: &[usize],
        pos: &mut usize,
        depth: usize,
        record: &mut Vec<(usize, usize)>,
        n: usize,
    ) -> usize {
        let i = *pos;
        *pos += 1;
        if i >= depth {
            return 0;
        }
        let c = script.get(i).copied().unwrap_or(0).min(n.saturating_sub(1));
        record.push((c, n.max(1)));
        c
    }

    /// Picks an action of `menu` (non-empty); `g` = blocks per rank (thread t is block
    /// t % g of rank t / g); `events` is a reusable buffer.
    fn choose(&mut self, menu: &Menu, g: usize, events: &mut Vec<SchedEvent>) -> Pick {
        match self {
            Chooser::Random(rng) => menu.flat(rng.below(menu.len())),
            Chooser::Pct(pct) => {
                events.clear();
                events.extend(menu.blocks.iter().map(|&b| SchedEvent::Step(b)));
                events.extend(menu.groups.iter().map(|&(t, _)| SchedEvent::Land(t)));
                match events.get(pct.pick(events)) {
                    Some(&SchedEvent::Step(b)) => Pick::Block(b),
                    Some(&SchedEvent::Land(t)) => {
                        let n = menu.groups.iter().find(|x| x.0 == t).map_or(1, |x| x.1);
                        Pick::Land(t, pct.pick_store(n))
                    }
                    None => menu.first(),
                }
            }
            Chooser::Adversarial {
                rng,
                slow_rank,
                stall,
            } => {
                // Blocks are fast unless on the slow rank or the stalled block; stores
                // are fast unless the slow rank's.
                let fast_block = |b: usize| b / g != *slow_rank && *stall != Some((b / g, b % g));
                let fast_group = |t: usize| t / g != *slow_rank;
                let fb = menu.blocks.iter().filter(|&&b| fast_block(b)).count();
                let fl: usize = menu
                    .groups
                    .iter()
                    .filter(|x| fast_group(x.0))
                    .map(|x| x.1)
                    .sum();
                if fb + fl == 0 {
                    return menu.flat(rng.below(menu.len()));
                }
                let k = rng.below(fb + fl);
                if k < fb {
                    let b = menu.blocks.iter().filter(|&&b| fast_block(b)).nth(k);
                    return b.map_or(menu.first(), |&b| Pick::Block(b));
                }
                let mut j = k - fb;
                for &(t, c) in menu.groups.iter().filter(|x| fast_group(x.0)) {
                    if j < c {
                        return Pick::Land(t, j);
                    }
                    j -= c;
                }
                menu.first()
            }
            Chooser::Exhaustive {
                script,
                pos,
                depth,
                record,
            } => menu.flat(Self::exhaustive(script, pos, *depth, record, menu.len())),
            // Replay picks are made by `replay_pick`; this is its fallback.
            Chooser::Replay { .. } => menu.first(),
        }
    }

    /// Picks a load value: 0 = newest.
    fn value(&mut self, n: usize) -> usize {
        match self {
            Chooser::Random(rng) => {
                if n <= 1 || rng.below(2) == 0 {
                    0
                } else {
                    1 + rng.below(n - 1)
                }
            }
            Chooser::Adversarial { .. } => 0,
            Chooser::Pct(p) => p.value(n),
            Chooser::Exhaustive {
                script,
                pos,
                depth,
                record,
            } => Self::exhaustive(script, pos, *depth, record, n),
            Chooser::Replay { script, pos } => {
                if n <= 1 {
                    return 0;
                }
                match script.get(*pos) {
                    Some(Decision::Value(p)) => {
                        *pos += 1;
                        (*p).min(n - 1)
                    }
                    _ => 0,
                }
            }
        }
    }
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

// ---------------------------------------------------------------- the run

/// A simulated block's state (shared with the push checker).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BState {
    /// Not launched in the rank's current call.
    Idle,
    Running,
    Finished,
    Failed,
}

#[derive(Clone, Copy, Debug)]
struct Block {
    state: BState,
    /// Step index in the program.
    pc: usize,
    /// Position inside the step (peer index; grid-stride chunk index).
    cursor: usize,
    /// Barrier: signalling (false) or waiting (true).
    waiting: bool,
}

impl Block {
    const IDLE: Block = Block {
        state: BState::Idle,
        pc: 0,
        cursor: 0,
        waiting: false,
    };
}

/// How a rank's call ended: its output values, or its error code.
#[derive(Clone, Debug)]
pub(crate) enum CallOutcome {
    Ok(Vec<u64>),
    Err(u32),
}

impl CallOutcome {
    /// The outcome of a call whose blocks are all done: the rank's recorded error, else
    /// a peer abort when a block failed, else the output (unwritten values as 0).
    pub(crate) fn of(failed: bool, error: u32, out: &[Option<u64>]) -> Self {
        if failed || error != 0 {
            CallOutcome::Err(if error != 0 { error } else { ERR_PEER_ABORT })
        } else {
            CallOutcome::Ok(out.iter().map(|v| v.unwrap_or(0)).collect())
        }
    }
}

#[derive(Clone, Debug)]
struct RankState {
    /// Index of the current call (== calls when all done).
    call: usize,
    in_call: bool,
    killed: bool,
    epoch: u32,
    done: usize,
    grid: usize,
    /// First error code recorded on this rank (0 = none).
    error: u32,
    /// The current call's `call_sig` (cached at launch).
    sig: u32,
    out: Vec<Option<u64>>,
    results: Vec<CallOutcome>,
}

impl RankState {
    const INIT: RankState = RankState {
        call: 0,
        in_call: false,
        killed: false,
        epoch: 0,
        done: 0,
        grid: 0,
        error: 0,
        sig: 0,
        out: Vec::new(),
        results: Vec::new(),
    };
}

/// Event kinds of the trace (formatted only when a violation is reported). `Input`: the
/// user's write of this call's input into the rank's own buffer just before the launch
/// (zero-copy two-shot).
#[derive(Clone, Debug)]
enum Ev {
    Input { chunks: usize },
    Launch { grid: usize, epoch: u32 },
    StepDone { step: usize },
    Signal { peer: usize, val: u64 },
    Passed { peer: usize, val: u64 },
    Error { code: u32, peer: usize },
    Ended { ok: bool },
    Killed,
    BadRead { text: String },
}

#[derive(Clone, Debug)]
struct Event {
    n: u64,
    rank: usize,
    block: Option<usize>,
    call: usize,
    ev: Ev,
}

/// The recorded identity of an action.
fn decision_of(mem: &Memory, g: usize, a: Action) -> Decision {
    match a {
        Action::Block(i) => Decision::Block {
            rank: i / g,
            block: i % g,
        },
        Action::Land(t, i) => Decision::Land {
            rank: t / g,
            block: t % g,
            store: mem.pending_stamp(t, i).unwrap_or(0),
        },
    }
}

/// Replay: the next scripted action decision that `enabled` accepts (returns what it
/// made of it); decisions not enabled now, and their values, are dropped. None when the
/// script is used up (the caller then takes the first enabled action).
fn replay_pick<T>(
    script: &[Decision],
    pos: &mut usize,
    enabled: impl Fn(Decision) -> Option<T>,
) -> Option<T> {
    while let Some(&d) = script.get(*pos) {
        *pos += 1;
        if !d.is_action() {
            continue;
        }
        if let Some(k) = enabled(d) {
            return Some(k);
        }
        while script.get(*pos).is_some_and(|d| !d.is_action()) {
            *pos += 1;
        }
    }
    None
}

/// One schedule's state. Built once per [`check`] and reset by [`Run::begin`] for each
/// schedule, so the hot loop does not allocate.
struct Run<'a> {
    cfg: &'a SimConfig,
    steps_prog: Vec<Step>,
    hcm: [[usize; 4]; 8],
    mem: Memory,
    ranks: Vec<RankState>,
    blocks: Vec<Block>,
    max_g: usize,
    max_chunks: usize,
    chooser: Chooser,
    steps: u64,
    events: Vec<Event>,
    violations: Vec<Violation>,
    stop: bool,
    timeouts_fired: bool,
    /// The decisions taken so far (replayable with [`Chooser::Replay`]).
    trail: Vec<Decision>,
    /// Stop at the first violation of this kind (shrinking).
    stop_on: Option<ViolationKind>,
    /// Step budget ([`SimConfig::max_steps`], at least [`SimConfig::auto_max_steps`]).
    budget: u64,
    /// Reused per-step buffers: enabled blocks, landable-store groups, PCT events.
    actions: Vec<usize>,
    lands: Vec<(usize, usize)>,
    events_buf: Vec<SchedEvent>,
    /// Per block: running and productive (kept up to date incrementally).
    enabled: Vec<bool>,
    /// Per block: needs re-evaluation; `stale_list` lists those set.
    stale: Vec<bool>,
    stale_list: Vec<usize>,
    landed_buf: Vec<usize>,
}

#[derive(Clone, Copy, Debug)]
enum Action {
    Block(usize),
    Land(usize, usize),
}

impl<'a> Run<'a> {
    /// A run of `cfg` (validated by the caller); call [`Run::begin`] before executing.
    fn new(cfg: &'a SimConfig) -> Self {
        let max_g = cfg.blocks.iter().copied().max().unwrap_or(1);
        let max_chunks = (cfg.bytes + 4).div_ceil(CHUNK_BYTES);
        let n_threads = cfg.world * max_g;
        let n_locs = cfg.world
            * (Self::data_locs(max_chunks, cfg.world) + Self::flag_locs(max_g, cfg.world) + 1);
        Run {
            cfg,
            steps_prog: if cfg.zero_copy {
                program::zero_copy_steps(cfg.protocol, cfg.algo)
            } else {
                program::steps(cfg.protocol, cfg.algo)
            },
            hcm: cfg.hcm.unwrap_or(CUBE_MESH_8),
            mem: Memory::new(n_locs, n_threads),
            ranks: vec![RankState::INIT; cfg.world],
            blocks: vec![Block::IDLE; n_threads],
            max_g,
            max_chunks,
            chooser: Chooser::Replay {
                script: Vec::new(),
                pos: 0,
            },
            steps: 0,
            events: Vec::new(),
            violations: Vec::new(),
            stop: false,
            timeouts_fired: false,
            trail: Vec::new(),
            stop_on: None,
            budget: cfg.max_steps.max(cfg.auto_max_steps()) as u64,
            actions: Vec::new(),
            lands: Vec::new(),
            events_buf: Vec::new(),
            enabled: vec![false; n_threads],
            stale: vec![false; n_threads],
            stale_list: Vec::new(),
            landed_buf: Vec::new(),
        }
    }

    /// Resets every piece of state for a new schedule driven by `chooser`.
    fn begin(&mut self, chooser: Chooser, stop_on: Option<ViolationKind>) {
        self.mem.reset();
        for st in &mut self.ranks {
            let mut out = std::mem::take(&mut st.out);
            let mut results = std::mem::take(&mut st.results);
            out.clear();
            results.clear();
            *st = RankState {
                out,
                results,
                ..RankState::INIT
            };
        }
        if let Some(Fault::EpochSkew { rank, delta }) = self.cfg.fault {
            if let Some(r) = self.ranks.get_mut(rank) {
                r.epoch = delta;
            }
        }
        self.blocks.fill(Block::IDLE);
        self.chooser = chooser;
        self.steps = 0;
        self.events.clear();
        self.violations.clear();
        self.stop = false;
        self.timeouts_fired = false;
        self.trail.clear();
        self.stop_on = stop_on;
        self.enabled.fill(false);
        self.stale.fill(false);
        self.stale_list.clear();
    }

    // ---- location layout: per rank [data: parity(2) x half][flags: 3 x 2 x G x W][abort];
    // a half is 2 x chunks + W words: buf at 0 and the hcm partial at `chunks` (one-shot,
    // hcm, seed), or the two-shot receive areas R[s] at s x S and the gather area G at
    // W x S (W x S <= chunks + W - 1).
    fn half_locs(chunks: usize, w: usize) -> usize {
        2 * chunks + w
    }
    fn data_locs(chunks: usize, w: usize) -> usize {
        2 * Self::half_locs(chunks, w)
    }
    fn flag_locs(g: usize, w: usize) -> usize {
        3 * 2 * g * w
    }
    fn rank_base(&self, r: usize) -> usize {
        r * (Self::data_locs(self.max_chunks, self.cfg.world)
            + Self::flag_locs(self.max_g, self.cfg.world)
            + 1)
    }
    fn data_loc(&self, r: usize, parity: usize, partial: bool, c: usize) -> usize {
        self.half_loc(r, parity, usize::from(partial) * self.max_chunks + c)
    }
    /// Word `off` (in chunks) of rank r's parity half `parity`.
    fn half_loc(&self, r: usize, parity: usize, off: usize) -> usize {
        let hl = Self::half_locs(self.max_chunks, self.cfg.world);
        self.rank_base(r) + parity * hl + off.min(hl - 1)
    }
    fn flag_loc(&self, r: usize, kind: BarrierKind, parity: usize, b: usize, src: usize) -> usize {
        let k = match kind {
            BarrierKind::Start => 0,
            BarrierKind::Mid => 1,
            BarrierKind::End => 2,
        };
        self.rank_base(r)
            + Self::data_locs(self.max_chunks, self.cfg.world)
            + ((k * 2 + parity) * self.max_g + b) * self.cfg.world
            + src
    }
    fn abort_loc(&self, r: usize) -> usize {
        self.rank_base(r)
            + Self::data_locs(self.max_chunks, self.cfg.world)
            + Self::flag_locs(self.max_g, self.cfg.world)
    }
    fn tid(&self, r: usize, b: usize) -> usize {
        r * self.max_g + b
    }

    fn is_seed(&self) -> bool {
        self.cfg.protocol == Protocol::Seed
    }

    /// The zero-copy two-shot ([`program::inc::two_shot_zc`]): inputs and results live in
    /// each rank's own buffer (half 0), written by the user between calls.
    fn zc_two_shot(&self) -> bool {
        self.cfg.zero_copy && self.cfg.algo == Algo::TwoShot
    }

    /// Elements and chunks rank `r` uses in call `k`.
    fn count(&self, r: usize, k: usize) -> (u64, usize) {
        let mut n = (self.cfg.bytes / 4) as u64;
        if self.cfg.fault == Some(Fault::Mismatch { rank: r, call: k }) {
            n += 1;
        }
        (n, (n as usize * 4).div_ceil(CHUNK_BYTES))
    }
    fn grid(&self, k: usize) -> usize {
        let b = &self.cfg.blocks;
        b.get(k % b.len()).copied().unwrap_or(1)
    }
    fn epoch_of(&self, r: usize) -> u32 {
        self.ranks.get(r).map_or(0, |s| s.epoch.wrapping_add(1))
    }
    fn parity(&self, r: usize) -> usize {
        (self.epoch_of(r) % 2) as usize
    }
    fn data_parity(&self, r: usize) -> usize {
        if self.is_seed() || self.cfg.zero_copy || self.cfg.weaken == Some(Weakening::NoRotation) {
            0
        } else {
            self.parity(r)
        }
    }
    fn sig(&self, r: usize, k: usize) -> u32 {
        call_sig(self.cfg.algo, DType::F32, ReduceOp::Sum, self.count(r, k).0)
    }
    fn slice_len(&self, r: usize) -> usize {
        let k = self.ranks.get(r).map_or(0, |s| s.call);
        self.count(r, k).1.div_ceil(self.cfg.world).max(1)
    }
    /// The `idx`-th member of `set` for rank r, without allocating.
    fn nth_member(&self, r: usize, set: PeerSet, idx: usize) -> Option<usize> {
        let w = self.cfg.world;
        match set {
            PeerSet::Others => {
                let q = if idx < r { idx } else { idx + 1 };
                (q < w).then_some(q)
            }
            PeerSet::All => (idx < w).then_some(idx),
            PeerSet::Quad => (idx < 3).then(|| self.hcm.get(r).map(|h| h[idx])).flatten(),
            PeerSet::Relay => (idx == 0).then(|| self.hcm.get(r).map(|h| h[3])).flatten(),
        }
    }
    /// The `idx`-th chunk of block b of rank r in its current call (grid-stride).
    fn nth_chunk(&self, r: usize, b: usize, idx: usize) -> Option<usize> {
        let st = self.ranks.get(r)?;
        let chunks = self.count(r, st.call).1;
        let t = self.cfg.threads_per_block;
        let c = ((idx / t) * st.grid.max(1) + b) * t + idx % t;
        (c < chunks && b < st.grid).then_some(c)
    }
    fn members(&self, r: usize, set: PeerSet) -> Vec<usize> {
        set.members(r, self.cfg.world, self.hcm.get(r))
    }
    fn log(&mut self, rank: usize, block: Option<usize>, ev: Ev) {
        let call = self.ranks.get(rank).map_or(0, |s| s.call);
        self.events.push(Event {
            n: self.steps,
            rank,
            block,
            call,
            ev,
        });
    }

    /// Executes the schedule; returns the violations found.
    fn execute(&mut self) -> Vec<Violation> {
        let mut actions = std::mem::take(&mut self.actions);
        let mut lands = std::mem::take(&mut self.lands);
        while !self.stop {
            self.start_calls();
            if self
                .ranks
                .iter()
                .all(|s| s.killed || s.call >= self.cfg.calls)
            {
                break;
            }
            self.steps += 1;
            if self.steps > self.budget {
                self.violation(
                    ViolationKind::Timeout,
                    format!("step budget of {} exhausted (livelock)", self.budget),
                    None,
                );
                break;
            }
            actions.clear();
            self.refresh_enabled();
            for (i, &e) in self.enabled.iter().enumerate() {
                if e {
                    actions.push(i);
                }
            }
            lands.clear();
            for t in 0..self.blocks.len() {
                let c = self.mem.ready_len(t);
                if c > 0 {
                    lands.push((t, c));
                }
            }
            if actions.is_empty() && lands.is_empty() {
                self.stuck();
                continue;
            }
            let g = self.max_g;
            let menu = Menu {
                blocks: &actions,
                groups: &lands,
            };
            let act = if let Chooser::Replay { script, pos } = &mut self.chooser {
                let (mem, enabled) = (&self.mem, &self.enabled);
                replay_pick(script, pos, |d| match d {
                    Decision::Block { rank, block } => {
                        let i = rank * g + block;
                        (block < g && enabled.get(i) == Some(&true)).then_some(Action::Block(i))
                    }
                    Decision::Land { rank, block, store } => {
                        let t = rank * g + block;
                        if block >= g {
                            return None;
                        }
                        mem.landable_by_stamp(t, store).map(|s| Action::Land(t, s))
                    }
                    _ => None,
                })
            } else {
                None
            };
            let act = match act {
                Some(a) => a,
                None => {
                    let pick = if matches!(self.chooser, Chooser::Replay { .. }) {
                        menu.first()
                    } else {
                        self.chooser.choose(&menu, g, &mut self.events_buf)
                    };
                    match pick {
                        Pick::Block(i) => Action::Block(i),
                        Pick::Land(t, j) => match self.mem.ready_nth(t, j) {
                            Some(s) => Action::Land(t, s),
                            None => break,
                        },
                    }
                }
            };
            self.trail.push(decision_of(&self.mem, self.max_g, act));
            match act {
                Action::Block(i) => self.step_block(i),
                Action::Land(t, i) => {
                    self.mem.land(t, i);
                }
            }
        }
        if !self.stop {
            self.final_checks();
        }
        self.actions = actions;
        self.lands = lands;
        std::mem::take(&mut self.violations)
    }

    /// Launches the next call on ranks whose previous kernel has completed.
    fn start_calls(&mut self) {
        for r in 0..self.cfg.world {
            let st = &self.ranks[r];
            if st.in_call || st.killed || st.call >= self.cfg.calls {
                continue;
            }
            let k = st.call;
            if let Some(Fault::Kill { rank, call }) = self.cfg.fault {
                if rank == r && k >= call {
                    self.ranks[r].killed = true;
                    self.log(r, None, Ev::Killed);
                    continue;
                }
            }
            let grid = self.grid(k);
            let chunks = self.count(r, k).1;
            let sig = self.sig(r, k);
            // Stream order: the new kernel happens after every block of the previous one.
            for b in 0..grid {
                for b2 in 0..self.max_g {
                    let (t, t2) = (self.tid(r, b), self.tid(r, b2));
                    self.mem.sync_threads(t, t2);
                }
            }
            if self.zc_two_shot() {
                // The user writes this call's input into its own buffer after its previous
                // kernel completed (stream order). Each chunk is stored by the block that
                // handles it in this call, as a relaxed store that lands when the
                // scheduler decides (at the latest when that block releases a flag).
                let t = self.cfg.threads_per_block;
                for c in 0..chunks {
                    let tid = self.tid(r, (c / t) % grid);
                    let loc = self.data_loc(r, 0, false, c);
                    let (v, tg) = (input_value(r, k, c), tag(r, k, WHAT_INPUT));
                    self.mem.store(tid, loc, v, tg, MemOrder::Relaxed);
                }
                self.log(r, None, Ev::Input { chunks });
            }
            let st = &mut self.ranks[r];
            st.in_call = true;
            st.sig = sig;
            st.grid = grid;
            st.done = 0;
            st.out.clear();
            st.out.resize(chunks, None);
            for b in 0..grid {
                let t = self.tid(r, b);
                self.blocks[t] = Block {
                    state: BState::Running,
                    ..Block::IDLE
                };
            }
            let epoch = self.epoch_of(r);
            self.log(r, None, Ev::Launch { grid, epoch });
            self.invalidate_rank(r);
        }
    }

    /// The memory order of a flag access: `strong`, or relaxed under
    /// [`Weakening::RelaxedFlags`].
    fn flag_order(&self, strong: MemOrder) -> MemOrder {
        if self.cfg.weaken == Some(Weakening::RelaxedFlags) {
            MemOrder::Relaxed
        } else {
            strong
        }
    }

    /// Ends rank r's call when all its blocks are done.
    fn maybe_end_call(&mut self, r: usize) {
        self.invalidate_rank(r);
        let g = self.ranks[r].grid;
        let live = (0..g).any(|b| self.blocks[self.tid(r, b)].state == BState::Running);
        if live {
            return;
        }
        let failed = (0..g).any(|b| self.blocks[self.tid(r, b)].state == BState::Failed);
        for b in 0..self.max_g {
            let t = self.tid(r, b);
            // Kernel completion: its writes are performed.
            self.mem.flush(t);
            self.blocks[t].state = BState::Idle;
        }
        if self.zc_two_shot() && !failed && self.ranks[r].error == 0 {
            self.read_zc_output(r);
        }
        let st = &mut self.ranks[r];
        let outcome = CallOutcome::of(failed, st.error, &st.out);
        let ok = matches!(outcome, CallOutcome::Ok(_));
        st.results.push(outcome);
        let k = st.results.len() - 1;
        self.log(r, None, Ev::Ended { ok });
        self.check_outcome(r, k);
        let st = &mut self.ranks[r];
        st.in_call = false;
        st.call += 1;
    }

    /// Zero-copy two-shot: the user reads rank r's buffer after its kernel completed (a
    /// reader ordered after every block of the kernel); each chunk must be the reduced
    /// value of this call, stored by the owner of its slice.
    fn read_zc_output(&mut self, r: usize) {
        let t0 = self.tid(r, 0);
        for b in 1..self.max_g {
            let t = self.tid(r, b);
            self.mem.sync_threads(t0, t);
        }
        let k = self.ranks[r].call;
        let chunks = self.count(r, k).1;
        let s = self.slice_len(r);
        let w = self.cfg.world;
        for c in 0..chunks {
            let owner = (c / s).min(w - 1);
            let want = tag(owner, k, WHAT_REDUCED);
            let loc = self.data_loc(r, 0, false, c);
            let place = format!("own buf chunk {c}");
            let v = self.read_loc(t0, loc, owner, want, "output (after the kernel)", &place);
            if let Some(o) = self.ranks[r].out.get_mut(c) {
                *o = Some(v);
            }
            if self.stop {
                return;
            }
        }
    }

    fn cur_step(&self, i: usize) -> Option<Step> {
        self.steps_prog.get(self.blocks.get(i)?.pc).copied()
    }

    /// The barrier a block is in (kind, set); EndBarrier maps to (End, Others).
    fn barrier_of(step: Step) -> Option<(BarrierKind, PeerSet)> {
        match step {
            Step::Barrier { kind, set } => Some((kind, set)),
            Step::EndBarrier => Some((BarrierKind::End, PeerSet::Others)),
            _ => None,
        }
    }

    /// Whether running block i now can change anything (when waiting: whether a poll now
    /// would pass or fail rather than keep waiting).
    fn productive(&self, i: usize) -> bool {
        let Some(b) = self.blocks.get(i) else {
            return false;
        };
        // `waiting` is only set inside a barrier step that polls.
        if !b.waiting {
            return true;
        }
        self.poll_outcome(i).is_none_or(|(_, _, p)| p)
    }

    /// Marks block i for re-evaluation of [`Run::productive`] before the next step.
    fn invalidate(&mut self, i: usize) {
        if let Some(s) = self.stale.get_mut(i) {
            if !*s {
                *s = true;
                self.stale_list.push(i);
            }
        }
    }

    fn invalidate_rank(&mut self, r: usize) {
        for b in 0..self.max_g {
            self.invalidate(self.tid(r, b));
        }
    }

    /// A write landed at `loc`: re-evaluate the blocks whose polls read it. Block b of
    /// rank r polls only flags `[.][.][b][.]` of its own pad and its own abort word;
    /// productivity depends on nothing else in memory (data never), and on block state
    /// that changes only when the block acts or its rank starts or ends a call.
    fn on_landed(&mut self, loc: usize) {
        let w = self.cfg.world;
        let per = Self::data_locs(self.max_chunks, w) + Self::flag_locs(self.max_g, w) + 1;
        let (r, off) = (loc / per, loc % per);
        let Some(f) = off.checked_sub(Self::data_locs(self.max_chunks, w)) else {
            return;
        };
        if f >= Self::flag_locs(self.max_g, self.cfg.world) {
            self.invalidate_rank(r);
        } else {
            let b = (f / self.cfg.world) % self.max_g;
            self.invalidate(self.tid(r, b));
        }
    }

    /// Brings `enabled` up to date with everything that happened since the last step.
    fn refresh_enabled(&mut self) {
        let mut landed = std::mem::take(&mut self.landed_buf);
        self.mem.take_landed(&mut landed);
        for &loc in &landed {
            self.on_landed(loc);
        }
        self.landed_buf = landed;
        let mut stale = std::mem::take(&mut self.stale_list);
        for &i in &stale {
            let e = self
                .blocks
                .get(i)
                .is_some_and(|b| b.state == BState::Running)
                && self.productive(i);
            if let Some(x) = self.enabled.get_mut(i) {
                *x = e;
            }
            if let Some(x) = self.stale.get_mut(i) {
                *x = false;
            }
        }
        stale.clear();
        self.stale_list = stale;
    }

    /// For a waiting block: (polled location, abort location, whether a poll now would
    /// pass or fail rather than keep waiting). None when it is not polling.
    fn poll_outcome(&self, i: usize) -> Option<(usize, usize, bool)> {
        let step = self.cur_step(i)?;
        let b = &self.blocks[i];
        let (kind, set) = Self::barrier_of(step)?;
        if !b.waiting || (step == Step::EndBarrier && !self.cfg.zero_copy) {
            return None;
        }
        let r = i / self.max_g;
        let blk = i % self.max_g;
        let q = self.nth_member(r, set, b.cursor)?;
        if self.is_seed() {
            let loc = self.seed_sem_loc(r, kind, blk, q);
            return Some((loc, loc, self.mem.newest(i, loc).0 > 0));
        }
        let loc = self.flag_loc(r, kind, self.parity(r), blk, q);
        let aloc = self.abort_loc(r);
        let v = self.mem.newest(i, loc).0;
        let e = self.epoch_of(r);
        let want = flag_word(e, self.ranks[r].sig);
        let p = v == want
            || flag_epoch(v) == e
            || (flag_epoch(v).wrapping_sub(e) as i32) > 0
            || self.mem.newest(i, aloc).0 != 0;
        Some((loc, aloc, p))
    }

    fn seed_sem_loc(&self, r: usize, kind: BarrierKind, b: usize, src: usize) -> usize {
        // signals0 for start (and for both hcm barriers), signals1 for mid.
        let set = if kind == BarrierKind::Mid && self.cfg.algo != Algo::Hcm {
            BarrierKind::Mid
        } else {
            BarrierKind::Start
        };
        self.flag_loc(r, set, 0, b, src)
    }

    fn next_step(&mut self, i: usize) {
        let r = i / self.max_g;
        let step = self.cur_step(i);
        if let Some(s) = step {
            let idx = self.blocks[i].pc;
            let quiet =
                matches!(s, Step::Prologue) || (s == Step::EndBarrier && !self.cfg.zero_copy);
            if !quiet {
                self.log(r, Some(i % self.max_g), Ev::StepDone { step: idx });
            }
        }
        let b = &mut self.blocks[i];
        b.pc += 1;
        b.cursor = 0;
        b.waiting = false;
        if b.pc >= self.steps_prog.len() {
            b.state = BState::Finished;
            self.maybe_end_call(r);
        }
    }

    fn fail(&mut self, i: usize, code: u32, peer: usize) {
        self.invalidate(i);
        let r = i / self.max_g;
        self.log(r, Some(i % self.max_g), Ev::Error { code, peer });
        if self.ranks[r].error == 0 {
            self.ranks[r].error = code;
        }
        if code != ERR_PEER_ABORT {
            let word = u64::from(abort_word(r as u32, code));
            for q in 0..self.cfg.world {
                let loc = self.abort_loc(q);
                self.mem
                    .rmw(i, loc, |v| if v == 0 { Some((word, 0)) } else { None });
            }
        }
        self.blocks[i].state = BState::Failed;
        self.maybe_end_call(r);
    }

    fn pick_load(&mut self, i: usize, loc: usize, order: MemOrder) -> (u64, u64) {
        let (chooser, trail) = (&mut self.chooser, &mut self.trail);
        self.mem.load_with(i, loc, order, |n| {
            let pick = chooser.value(n);
            if n > 1 {
                trail.push(Decision::Value(pick));
            }
            pick
        })
    }

    /// Loads data word (rank q, region, chunk c) for block i and checks its tag.
    fn read_data(
        &mut self,
        i: usize,
        q: usize,
        partial: bool,
        c: usize,
        want: u64,
        what: &str,
    ) -> u64 {
        let r = i / self.max_g;
        let loc = self.data_loc(q, self.data_parity(r), partial, c);
        let place = format!("r{q}.{} chunk {c}", if partial { "partial" } else { "buf" });
        self.read_loc(i, loc, q, want, what, &place)
    }

    /// Loads data word `loc` for block i and checks its tag against `want` (written by
    /// rank `from`); `place` names the word in a report.
    fn read_loc(
        &mut self,
        i: usize,
        loc: usize,
        from: usize,
        want: u64,
        what: &str,
        place: &str,
    ) -> u64 {
        let r = i / self.max_g;
        let q = from;
        let order = if self.is_seed() {
            MemOrder::NonCoherent
        } else {
            MemOrder::Relaxed
        };
        let (val, t) = self.pick_load(i, loc, order);
        if t != want {
            let k = self.ranks[r].call;
            let how = if t != 0 && ((t >> 8) & 0xffff_ffff).wrapping_sub(1) > k as u64 {
                "overwritten by a later call"
            } else {
                "stale: the current call's data is not (yet) visible"
            };
            let text = format!(
                "{what} read {place}: found {}, expected {} ({how})",
                describe_tag(t),
                describe_tag(want)
            );
            self.log(r, Some(i % self.max_g), Ev::BadRead { text: text.clone() });
            let b = i % self.max_g;
            self.violation(
                ViolationKind::StaleRead,
                format!("r{r} b{b} call {k}: {text}"),
                Some((r, q)),
            );
        }
        val
    }

    fn expected_tag(&self, q: usize, r: usize, what: u64) -> u64 {
        tag(q, self.ranks[r].call, what)
    }

    /// Executes one action of block i.
    fn step_block(&mut self, i: usize) {
        self.invalidate(i);
        let Some(step) = self.cur_step(i) else {
            return;
        };
        let r = i / self.max_g;
        let b = i % self.max_g;
        let k = self.ranks[r].call;
        let w = self.cfg.world;
        let dp = self.data_parity(r);
        match step {
            Step::Prologue => {
                if !self.is_seed() {
                    let loc = self.abort_loc(r);
                    let (a, _) = self.pick_load(i, loc, MemOrder::Relaxed);
                    if a != 0 || self.ranks[r].error != 0 {
                        let code = if self.ranks[r].error != 0 {
                            self.ranks[r].error
                        } else {
                            ERR_PEER_ABORT
                        };
                        self.fail(i, code, crate::types::abort_rank(a as u32) as usize);
                        return;
                    }
                }
                self.next_step(i);
            }
            Step::CopyIn => {
                if let Some(c) = self.nth_chunk(r, b, self.blocks[i].cursor) {
                    let loc = self.data_loc(r, dp, false, c);
                    self.mem.store(
                        i,
                        loc,
                        input_value(r, k, c),
                        tag(r, k, WHAT_INPUT),
                        MemOrder::Relaxed,
                    );
                    self.blocks[i].cursor += 1;
                } else {
                    self.next_step(i);
                }
            }
            Step::Scatter => {
                // For my chunks c of every slice q != r: peer q's R[r][c - q*S] = input[c].
                let s = self.slice_len(r);
                let Some(c) = self.next_chunk_where(i, |c| c / s != r) else {
                    self.next_step(i);
                    return;
                };
                let q = (c / s).min(w - 1);
                let loc = self.half_loc(q, dp, r * s + c - q * s);
                self.mem.store(
                    i,
                    loc,
                    input_value(r, k, c),
                    tag(r, k, WHAT_INPUT),
                    MemOrder::Relaxed,
                );
            }
            Step::Barrier {
                kind: BarrierKind::Mid,
                ..
            } if self.cfg.weaken == Some(Weakening::NoMidBarrier) => self.next_step(i),
            Step::Barrier {
                kind: BarrierKind::Start,
                ..
            } if self.cfg.weaken == Some(Weakening::NoStartBarrier) => self.next_step(i),
            Step::EndBarrier if self.cfg.weaken == Some(Weakening::NoEndBarrier) => {
                self.next_step(i)
            }
            Step::Barrier { .. } | Step::EndBarrier => self.step_barrier(i, step),
            Step::ReduceStore => {
                // For my chunks c of my slice: v = fold over q of buf[q][c] (rank order),
                // then buf[q][c] = v for every rank q (my own included).
                let s = self.slice_len(r);
                let Some(c) = self.next_chunk_where(i, |c| (c / s).min(w - 1) == r) else {
                    self.next_step(i);
                    return;
                };
                let mut acc = None;
                for q in 0..w {
                    let loc = self.data_loc(q, 0, false, c);
                    let want = self.expected_tag(q, r, WHAT_INPUT);
                    let place = format!("r{q}.buf chunk {c}");
                    let x = self.read_loc(i, loc, q, want, "ReduceStore", &place);
                    acc = Some(acc.map_or(x, |a| mix(a, x)));
                }
                let v = acc.unwrap_or(0);
                for q in 0..w {
                    let loc = self.data_loc(q, 0, false, c);
                    self.mem
                        .store(i, loc, v, tag(r, k, WHAT_REDUCED), MemOrder::Relaxed);
                }
            }
            Step::ReduceAll => {
                let Some(c) = self.nth_chunk(r, b, self.blocks[i].cursor) else {
                    self.next_step(i);
                    return;
                };
                let v = self.fold_peers(i, c, "ReduceAll");
                if let Some(o) = self.ranks[r].out.get_mut(c) {
                    *o = Some(v);
                }
                self.blocks[i].cursor += 1;
            }
            Step::ReduceSlice if !self.is_seed() => {
                // v = fold over s of (s == r ? input[c] : own R[s][c - r*S]); out[c] = v;
                // every peer q's G[c] = v.
                let s = self.slice_len(r);
                let Some(c) = self.next_chunk_where(i, |c| c / s == r) else {
                    self.next_step(i);
                    return;
                };
                let j = c - r * s;
                let mut acc = None;
                for src in 0..w {
                    let x = if src == r {
                        input_value(r, k, c)
                    } else {
                        let loc = self.half_loc(r, dp, src * s + j);
                        let want = self.expected_tag(src, r, WHAT_INPUT);
                        let place = format!("own R[{src}][{j}] (chunk {c})");
                        self.read_loc(i, loc, src, want, "ReduceSlice", &place)
                    };
                    acc = Some(acc.map_or(x, |a| mix(a, x)));
                }
                let v = acc.unwrap_or(0);
                for q in (0..w).filter(|&q| q != r) {
                    let loc = self.half_loc(q, dp, w * s + c);
                    self.mem
                        .store(i, loc, v, tag(r, k, WHAT_REDUCED), MemOrder::Relaxed);
                }
                if let Some(o) = self.ranks[r].out.get_mut(c) {
                    *o = Some(v);
                }
            }
            Step::Gather if !self.is_seed() => {
                // out[c] = own G[c] for my chunks c of every slice q != r.
                let s = self.slice_len(r);
                let Some(c) = self.next_chunk_where(i, |c| c / s != r) else {
                    self.next_step(i);
                    return;
                };
                let q = (c / s).min(w - 1);
                let want = self.expected_tag(q, r, WHAT_REDUCED);
                let loc = self.half_loc(r, dp, w * s + c);
                let place = format!("own G[{c}]");
                let v = self.read_loc(i, loc, q, want, "Gather", &place);
                if let Some(o) = self.ranks[r].out.get_mut(c) {
                    *o = Some(v);
                }
            }
            Step::ReduceSlice => {
                let s = self.slice_len(r);
                let Some(c) = self.next_chunk_where(i, |c| c / s == r) else {
                    self.next_step(i);
                    return;
                };
                let v = self.fold_peers(i, c, "ReduceSlice");
                let loc = self.data_loc(r, dp, false, c);
                self.mem
                    .store(i, loc, v, tag(r, k, WHAT_REDUCED), MemOrder::Relaxed);
                if let Some(o) = self.ranks[r].out.get_mut(c) {
                    *o = Some(v);
                }
            }
            Step::Gather => {
                let s = self.slice_len(r);
                let Some(c) = self.next_chunk_where(i, |c| c / s != r) else {
                    self.next_step(i);
                    return;
                };
                let q = (c / s).min(w - 1);
                let want = self.expected_tag(q, r, WHAT_REDUCED);
                let v = self.read_data(i, q, false, c, want, "Gather");
                if let Some(o) = self.ranks[r].out.get_mut(c) {
                    *o = Some(v);
                }
            }
            Step::QuadReduce => {
                let Some(c) = self.nth_chunk(r, b, self.blocks[i].cursor) else {
                    self.next_step(i);
                    return;
                };
                let row = self.hcm.get(r).copied().unwrap_or([0; 4]);
                let mut quad = [r, row[0], row[1], row[2]];
                if !self.is_seed() {
                    quad.sort_unstable();
                }
                let mut acc = None;
                for q in quad {
                    let want = self.expected_tag(q, r, WHAT_INPUT);
                    let x = self.read_data(i, q, false, c, want, "QuadReduce");
                    acc = Some(acc.map_or(x, |a| mix(a, x)));
                }
                let v = acc.unwrap_or(0);
                let loc = self.data_loc(r, dp, true, c);
                self.mem
                    .store(i, loc, v, tag(r, k, WHAT_PARTIAL), MemOrder::Relaxed);
                self.blocks[i].cursor += 1;
            }
            Step::RelayReduce => {
                let Some(c) = self.nth_chunk(r, b, self.blocks[i].cursor) else {
                    self.next_step(i);
                    return;
                };
                let (first, second) = self.relay_order(r);
                let wa = self.expected_tag(first, r, WHAT_PARTIAL);
                let a = self.read_data(i, first, true, c, wa, "RelayReduce");
                let wb = self.expected_tag(second, r, WHAT_PARTIAL);
                let bb = self.read_data(i, second, true, c, wb, "RelayReduce");
                if let Some(o) = self.ranks[r].out.get_mut(c) {
                    *o = Some(mix(a, bb));
                }
                self.blocks[i].cursor += 1;
            }
            // push-one-shot is checked by crate::push (check() dispatches to it).
            Step::PushData | Step::PollReduce | Step::HdrCheck => self.next_step(i),
            Step::Epilogue => {
                let seed = self.is_seed();
                let st = &mut self.ranks[r];
                st.done += 1;
                if st.done == st.grid && !seed {
                    st.done = 0;
                    st.epoch = st.epoch.wrapping_add(1);
                }
                self.next_step(i);
            }
        }
    }

    /// Folds input chunk c of every rank (rank order 0..W; the seed's rotated order r,
    /// r+1, ...) as read by block i, checking each read's tag.
    fn fold_peers(&mut self, i: usize, c: usize, what: &str) -> u64 {
        let r = i / self.max_g;
        let w = self.cfg.world;
        let seed = self.is_seed();
        let mut acc = None;
        for j in 0..w {
            let q = if seed { (r + j) % w } else { j };
            let want = self.expected_tag(q, r, WHAT_INPUT);
            let x = self.read_data(i, q, false, c, want, what);
            acc = Some(acc.map_or(x, |a| mix(a, x)));
        }
        acc.unwrap_or(0)
    }

    /// The next chunk of block i (grid-stride order, from its cursor) that satisfies
    /// `keep`; advances the cursor past it. None when the block has no more.
    fn next_chunk_where(&mut self, i: usize, keep: impl Fn(usize) -> bool) -> Option<usize> {
        let r = i / self.max_g;
        let b = i % self.max_g;
        loop {
            let c = self.nth_chunk(r, b, self.blocks[i].cursor)?;
            self.blocks[i].cursor += 1;
            if keep(c) {
                return Some(c);
            }
        }
    }

    /// (first, second) rank whose partial is folded in RelayReduce.
    fn relay_order(&self, r: usize) -> (usize, usize) {
        let row = self.hcm.get(r).copied().unwrap_or([0; 4]);
        let relay = row[3];
        if self.is_seed() {
            return (r, relay);
        }
        let relay_row = self.hcm.get(relay).copied().unwrap_or([0; 4]);
        let min_mine = [r, row[0], row[1], row[2]].into_iter().min().unwrap_or(r);
        let min_theirs = [relay, relay_row[0], relay_row[1], relay_row[2]]
            .into_iter()
            .min()
            .unwrap_or(relay);
        if min_mine < min_theirs {
            (r, relay)
        } else {
            (relay, r)
        }
    }

    fn step_barrier(&mut self, i: usize, step: Step) {
        if step == Step::EndBarrier && !self.cfg.zero_copy {
            self.next_step(i);
            return;
        }
        let Some((kind, set)) = Self::barrier_of(step) else {
            self.next_step(i);
            return;
        };
        let r = i / self.max_g;
        let b = i % self.max_g;
        let cursor = self.blocks[i].cursor;
        if !self.blocks[i].waiting {
            // Signal phase: one peer per action.
            let Some(q) = self.nth_member(r, set, cursor) else {
                self.blocks[i].waiting = true;
                self.blocks[i].cursor = 0;
                return;
            };
            if self.is_seed() {
                let loc = self.seed_sem_loc(q, kind, b, r);
                self.mem.rmw(i, loc, |v| Some((v + 1, 0)));
                self.log(r, Some(b), Ev::Signal { peer: q, val: 1 });
            } else {
                let e = self.epoch_of(r);
                let val = flag_word(e, self.ranks[r].sig);
                let loc = self.flag_loc(q, kind, self.parity(r), b, r);
                let order = self.flag_order(MemOrder::Release);
                self.mem.store(i, loc, val, 0, order);
                self.log(r, Some(b), Ev::Signal { peer: q, val });
            }
            self.blocks[i].cursor += 1;
            return;
        }
        let Some(q) = self.nth_member(r, set, cursor) else {
            self.next_step(i);
            return;
        };
        if self.is_seed() {
            let loc = self.seed_sem_loc(r, kind, b, q);
            let old = self
                .mem
                .rmw(i, loc, |v| if v > 0 { Some((v - 1, 0)) } else { None });
            if old > 0 {
                self.log(r, Some(b), Ev::Passed { peer: q, val: old });
                self.blocks[i].cursor += 1;
            }
            return;
        }
        let e = self.epoch_of(r);
        let want = flag_word(e, self.ranks[r].sig);
        let loc = self.flag_loc(r, kind, self.parity(r), b, q);
        let order = self.flag_order(MemOrder::Acquire);
        let (v, _) = self.pick_load(i, loc, order);
        if v == want {
            self.log(r, Some(b), Ev::Passed { peer: q, val: v });
            self.blocks[i].cursor += 1;
            return;
        }
        if flag_epoch(v) == e && flag_sig(v) != flag_sig(want) {
            self.fail(i, ERR_CALL_MISMATCH, q);
            return;
        }
        if (flag_epoch(v).wrapping_sub(e) as i32) > 0 {
            self.fail(i, ERR_SEQ_MISMATCH, q);
            return;
        }
        let aloc = self.abort_loc(r);
        let (a, _) = self.pick_load(i, aloc, MemOrder::Relaxed);
        if a != 0 {
            self.fail(
                i,
                ERR_PEER_ABORT,
                crate::types::abort_rank(a as u32) as usize,
            );
        }
    }

    /// Nothing can run and no store can land.
    fn stuck(&mut self) {
        let waiting: Vec<usize> = (0..self.blocks.len())
            .filter(|&i| self.blocks[i].state == BState::Running)
            .collect();
        if waiting.is_empty() {
            // Ranks whose blocks are all done end their call in maybe_end_call; nothing
            // else can be pending. Avoid spinning forever.
            self.stop = true;
            return;
        }
        if self.is_seed() || self.cfg.fault.is_none() {
            let desc: Vec<String> = waiting
                .iter()
                .take(8)
                .map(|&i| {
                    let step = self.cur_step(i).map_or("?".into(), |s| s.describe());
                    let peers = self
                        .cur_step(i)
                        .and_then(Self::barrier_of)
                        .map(|(_, set)| self.members(i / self.max_g, set))
                        .unwrap_or_default();
                    let q = peers.get(self.blocks[i].cursor).copied().unwrap_or(0);
                    format!(
                        "r{} b{} {} waits on r{}",
                        i / self.max_g,
                        i % self.max_g,
                        step,
                        q
                    )
                })
                .collect();
            self.violation(
                ViolationKind::Deadlock,
                format!("all live blocks wait: {}", desc.join("; ")),
                None,
            );
            self.stop = true;
            return;
        }
        // Bounded waits: time passes, the scheduler picks who times out first.
        self.timeouts_fired = true;
        let g = self.max_g;
        let i = if let Chooser::Replay { script, pos } = &mut self.chooser {
            replay_pick(script, pos, |d| match d {
                Decision::Timeout { rank, block } => waiting
                    .iter()
                    .copied()
                    .find(|&i| block < g && i == rank * g + block),
                _ => None,
            })
            .or(waiting.first().copied())
        } else {
            let menu = Menu {
                blocks: &waiting,
                groups: &[],
            };
            match self.chooser.choose(&menu, g, &mut self.events_buf) {
                Pick::Block(i) => Some(i),
                Pick::Land(..) => None,
            }
        };
        let i = i.unwrap_or(0);
        self.trail.push(Decision::Timeout {
            rank: i / g,
            block: i % g,
        });
        let r = i / self.max_g;
        let peers = self
            .cur_step(i)
            .and_then(Self::barrier_of)
            .map(|(_, set)| self.members(r, set))
            .unwrap_or_default();
        let q = peers.get(self.blocks[i].cursor).copied().unwrap_or(r);
        self.fail(i, ERR_TIMEOUT, q);
    }

    fn violation(&mut self, kind: ViolationKind, message: String, focus: Option<(usize, usize)>) {
        if self.violations.iter().any(|v| v.kind == kind) {
            return;
        }
        let trace = self.render_trace(focus);
        self.violations.push(Violation {
            kind,
            message,
            seed: 0,
            trace,
            schedule: self.trail.clone(),
            shrink: None,
            events: self.events.len(),
            focus,
        });
        if self.stop_on == Some(kind) {
            self.stop = true;
        }
    }

    /// The events so far, one line each: every rank's when they fit in `MAX_LINES`,
    /// else only the `focus` ranks' (when given), and at most the last `MAX_LINES`.
    fn render_trace(&self, focus: Option<(usize, usize)>) -> Vec<String> {
        const MAX_LINES: usize = 60;
        let all = self.events.len() <= MAX_LINES;
        let keep = |e: &Event| all || focus.is_none_or(|(a, b)| e.rank == a || e.rank == b);
        let lines: Vec<String> = self
            .events
            .iter()
            .filter(|e| keep(e))
            .map(|e| {
                let who = match e.block {
                    Some(b) => format!("r{} b{}", e.rank, b),
                    None => format!("r{}   ", e.rank),
                };
                let what = match &e.ev {
                    Ev::Input { chunks } => {
                        format!("user writes its input into its own buffer ({chunks} chunks)")
                    }
                    Ev::Launch { grid, epoch } => {
                        if self.is_seed() {
                            format!("launch kernel ({grid} blocks)")
                        } else {
                            format!("launch kernel ({grid} blocks, epoch {epoch})")
                        }
                    }
                    Ev::StepDone { step } => {
                        let s = self
                            .steps_prog
                            .get(*step)
                            .map_or("?".into(), Step::describe);
                        format!("{step} {s} done")
                    }
                    Ev::Signal { peer, val } => {
                        if self.is_seed() {
                            format!("signal r{peer}: atomicAdd_system(+1)")
                        } else {
                            format!(
                                "signal r{peer}: st.release flag = epoch {} sig {:#010x}",
                                flag_epoch(*val),
                                flag_sig(*val)
                            )
                        }
                    }
                    Ev::Passed { peer, val } => {
                        if self.is_seed() {
                            format!("wait r{peer}: counter {val} -> CAS down, passed")
                        } else {
                            format!(
                                "wait r{peer}: ld.acquire saw epoch {}, passed",
                                flag_epoch(*val)
                            )
                        }
                    }
                    Ev::Error { code, peer } => {
                        format!(
                            "ERROR {} (peer r{peer})",
                            crate::types::error_code_name(*code)
                        )
                    }
                    Ev::Ended { ok } => {
                        format!("kernel complete ({})", if *ok { "ok" } else { "error" })
                    }
                    Ev::Killed => "rank killed (never calls again)".into(),
                    Ev::BadRead { text } => format!("!! {text}"),
                };
                format!("#{:<5} {who} call {}: {what}", e.n, e.call)
            })
            .collect();
        if lines.len() > MAX_LINES {
            let mut out = vec![format!(
                "... {} earlier events omitted",
                lines.len() - MAX_LINES
            )];
            out.extend(lines[lines.len() - MAX_LINES..].iter().cloned());
            out
        } else {
            lines
        }
    }

    /// Reference value of chunk c of call k on rank r.
    fn reference(&self, r: usize, k: usize, c: usize) -> u64 {
        let w = self.cfg.world;
        let inp = |q: usize| input_value(q, k, c);
        match (self.cfg.protocol, self.cfg.algo) {
            (Protocol::Inc, Algo::OneShot | Algo::TwoShot) => fold_over((0..w).map(inp)),
            (Protocol::Seed, Algo::OneShot) => fold_over((0..w).map(|j| inp((r + j) % w))),
            (Protocol::Seed, Algo::TwoShot) => {
                let chunks = self.count(r, k).1;
                let s = chunks.div_ceil(w).max(1);
                let owner = (c / s).min(w - 1);
                fold_over((0..w).map(|j| inp((owner + j) % w)))
            }
            // Checked by crate::push (check() dispatches before a Run exists).
            (_, Algo::PushOneShot) => fold_over((0..w).map(inp)),
            (_, Algo::Hcm) => {
                let quad = |x: usize| {
                    let row = self.hcm.get(x).copied().unwrap_or([0; 4]);
                    let mut q = vec![x, row[0], row[1], row[2]];
                    if !self.is_seed() {
                        q.sort_unstable();
                    }
                    fold_over(q.into_iter().map(inp))
                };
                let (a, b) = self.relay_order(r);
                mix(quad(a), quad(b))
            }
        }
    }

    /// Checks the outcome of call k of rank r as its kernel completes (so a violation's
    /// trace ends there): errors only where a fault explains them, results equal to the
    /// reference, and no completed call that a fault should have stopped.
    fn check_outcome(&mut self, r: usize, k: usize) {
        let fault = self.cfg.fault;
        let Some(res) = self.ranks.get_mut(r).and_then(|s| s.results.get_mut(k)) else {
            return;
        };
        let res = std::mem::replace(res, CallOutcome::Err(0));
        match &res {
            CallOutcome::Ok(out) => {
                let faulty_call = match fault {
                    Some(Fault::Kill { call, .. }) => k >= call,
                    Some(Fault::Mismatch { call, .. }) => k >= call,
                    Some(Fault::EpochSkew { .. }) => true,
                    None => false,
                };
                if faulty_call {
                    let (kind, what) = match fault {
                        Some(Fault::Kill { .. }) => (
                            ViolationKind::Timeout,
                            "completed although a rank it depends on is dead",
                        ),
                        _ => (
                            ViolationKind::SeqMismatch,
                            "completed a call the ranks disagree on, undetected",
                        ),
                    };
                    self.violation(kind, format!("r{r} call {k} {what}"), None);
                } else if let Some((c, v, want)) = out
                    .iter()
                    .enumerate()
                    .map(|(c, &v)| (c, v, self.reference(r, k, c)))
                    .find(|&(_, v, want)| v != want)
                {
                    self.violation(
                        ViolationKind::WrongResult,
                        format!("r{r} call {k} chunk {c}: got {v:#018x}, reference {want:#018x}"),
                        None,
                    );
                }
            }
            CallOutcome::Err(code) => {
                let expected = match fault {
                    // A rank still in an earlier (matched) call may see the abort word
                    // of a faster rank that already failed the faulty call: the comm is
                    // poisoned (PROTOCOL.md, barrier step 3), so its call ends with
                    // PEER_ABORT. The originating error is checked on its own rank.
                    Some(Fault::Kill { call, .. }) => {
                        *code == ERR_PEER_ABORT || (k >= call && *code == ERR_TIMEOUT)
                    }
                    Some(Fault::Mismatch { call, .. }) => k >= call || *code == ERR_PEER_ABORT,
                    Some(Fault::EpochSkew { .. }) => true,
                    None => false,
                };
                if !expected {
                    let kind = match *code {
                        ERR_SEQ_MISMATCH | ERR_CALL_MISMATCH => ViolationKind::SeqMismatch,
                        _ => ViolationKind::Timeout,
                    };
                    self.violation(
                        kind,
                        format!(
                            "r{r} call {k} failed with {}",
                            crate::types::error_code_name(*code)
                        ),
                        None,
                    );
                }
            }
        }
        if let Some(slot) = self.ranks.get_mut(r).and_then(|s| s.results.get_mut(k)) {
            *slot = res;
        }
    }

    fn final_checks(&mut self) {
        for r in 0..self.cfg.world {
            if !self.ranks[r].killed && self.ranks[r].results.len() < self.cfg.calls {
                self.violation(
                    ViolationKind::Deadlock,
                    format!("r{r} never finished call {}", self.ranks[r].results.len()),
                    None,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_is_order_sensitive() {
        assert_ne!(
            fold_over([1, 2, 3].into_iter()),
            fold_over([2, 1, 3].into_iter())
        );
        assert_eq!(describe_tag(tag(2, 5, WHAT_INPUT)), "r2 call 5 input");
        assert_eq!(describe_tag(0), "initial zero (never written)");
    }

    #[test]
    fn dfs_enumerates_all_sequences() {
        let mut d = Dfs::default();
        let mut seen = Vec::new();
        loop {
            let s = d.next_script();
            // A fake run with two choice points of 2 and 3 options.
            let c0 = s.first().copied().unwrap_or(0);
            let c1 = s.get(1).copied().unwrap_or(0);
            seen.push((c0, c1));
            if !d.advance(vec![(c0, 2), (c1, 3)]) {
                break;
            }
        }
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn replay_drops_decisions_that_are_not_enabled() {
        let b = |rank| Decision::Block { rank, block: 0 };
        let script = [b(1), Decision::Value(2), b(0), Decision::Value(1), b(2)];
        let units_of = units(&script);
        assert_eq!(units_of, [(0, 2), (2, 4), (4, 5)]);
        // Only rank 0 and 2 are enabled: b(1) and its value are dropped.
        let mut pos = 0;
        let enabled = |d: Decision| [b(0), b(2)].iter().position(|&x| x == d);
        assert_eq!(replay_pick(&script, &mut pos, enabled), Some(0));
        assert_eq!(pos, 3);
        let mut ch = Chooser::Replay {
            script: script.to_vec(),
            pos,
        };
        assert_eq!(ch.value(1), 0, "a single-valued load consumes nothing");
        assert_eq!(ch.value(5), 1);
        assert_eq!(ch.value(5), 0, "next is an action: newest");
        let Chooser::Replay { pos, .. } = ch else {
            unreachable!()
        };
        let mut pos = pos;
        assert_eq!(replay_pick(&script, &mut pos, enabled), Some(1));
        // Used up: the caller takes the first enabled action.
        assert_eq!(replay_pick(&script, &mut pos, enabled), None);
    }

    #[test]
    fn schedule_text_round_trips() {
        let d = vec![
            Decision::Block { rank: 1, block: 2 },
            Decision::Value(3),
            Decision::Land {
                rank: 0,
                block: 1,
                store: 17,
            },
            Decision::Timeout { rank: 7, block: 0 },
        ];
        let t = format_schedule(&d);
        assert_eq!(t, "b1.2 v3 l0.1@17 t7.0");
        assert_eq!(parse_schedule(&t).ok(), Some(d));
        assert!(parse_schedule("b1").is_err());
        assert!(parse_schedule("x1.2").is_err());
        assert!(parse_schedule("l1.2@").is_err());
    }

    #[test]
    fn bad_configs_are_rejected() {
        let mut c = SimConfig::new(Protocol::Inc, Algo::Hcm, 4, 64, 1);
        assert!(check(&c, 1, 0).is_err());
        c.world = 9;
        assert!(check(&c, 1, 0).is_err());
        let mut c = SimConfig::new(Protocol::Inc, Algo::OneShot, 2, 6, 1);
        assert!(check(&c, 1, 0).is_err());
        c.bytes = 64;
        c.blocks = vec![0];
        assert!(check(&c, 1, 0).is_err());
        c.blocks = vec![2];
        c.fault = Some(Fault::Kill { rank: 5, call: 0 });
        assert!(check(&c, 1, 0).is_err());
    }
}
