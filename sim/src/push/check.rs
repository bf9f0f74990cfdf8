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

use crate::check::{mix, tag, BState, CallOutcome, Rng};
use crate::error::SimError;
use crate::model::{MemOrder, Memory};
use crate::sched::{Event, Pct, Strategy};
use crate::types::{
    abort_rank, abort_word, flag_epoch, flag_sig, flag_word, DType, ReduceOp, CHUNK_BYTES,
    ERR_CALL_MISMATCH, ERR_PEER_ABORT, ERR_SEQ_MISMATCH, ERR_TIMEOUT, MAX_BLOCKS, MAX_RANKS,
};
use crate::{Report, Violation, ViolationKind};

use super::{push_call_sig, tag_is_newer, PUSH_STEP_NAMES};

/// A fault injected into a push run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum PushFault {
    /// `rank` never makes call `call` (nor any later one).
    Kill {
        /// The dead rank.
        rank: usize,
        /// First call it misses.
        call: usize,
    },
    /// `rank` makes call `call` with one chunk more (`more`) or one chunk less (the call
    /// must then have at least two chunks) than the others.
    Mismatch {
        /// The odd rank.
        rank: usize,
        /// The call that differs.
        call: usize,
        /// One chunk more (true) or less (false).
        more: bool,
    },
    /// `rank` makes call `call` with the same bytes but another reduction op (so another
    /// call signature; a different dtype with the same bytes behaves the same way).
    OtherOp {
        /// The odd rank.
        rank: usize,
        /// The call that differs.
        call: usize,
    },
    /// `rank` starts with its epoch `delta` ahead.
    EpochSkew {
        /// The odd rank.
        rank: usize,
        /// Epochs ahead.
        delta: u32,
    },
}

impl PushFault {
    fn rank(&self) -> usize {
        match *self {
            PushFault::Kill { rank, .. }
            | PushFault::Mismatch { rank, .. }
            | PushFault::OtherOp { rank, .. }
            | PushFault::EpochSkew { rank, .. } => rank,
        }
    }
}

/// A deliberate weakening of the push protocol (mutation testing of the checker).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum PushWeakening {
    /// One receive buffer for every call instead of two parities: a fast peer's lines of
    /// call e+1 overwrite lines of call e that the reader has not consumed yet.
    OneBuffer,
    /// Skip the header check (step 3): a peer that sends more chunks, or the same bytes
    /// with another dtype/op, goes unnoticed.
    NoHdrCheck,
    /// No 8-byte single-copy atomicity: the data word and the tag word of a half land
    /// separately (the reader may see the new tag with old data).
    SplitWords,
    /// The reader checks only the tag of the first half of each line while the two halves
    /// land separately (trusting 16-byte atomicity).
    OneTagPerLine,
}

/// How push schedules are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum PushScheduler {
    /// Seeded uniform random walk over the enabled actions and random allowed (possibly
    /// stale) load values.
    Random,
    /// PCT ([`crate::sched::Pct`]): random priorities per block and per store buffer,
    /// `depth - 1` priority change points; what [`crate::RandomMode::Pct`] selects.
    Pct {
        /// Bug depth targeted (>= 1).
        depth: usize,
    },
    /// Random, but `slow_rank` only moves when nothing else can; loads read the newest.
    Adversarial {
        /// The rank that lags.
        slow_rank: usize,
    },
}

/// One push scenario.
#[derive(Clone, Debug)]
pub struct PushConfig {
    /// Ranks, 1..=8.
    pub world: usize,
    /// Bytes per rank of each consecutive call (multiples of 4, 4..=4096); its length is
    /// the number of calls.
    pub bytes: Vec<usize>,
    /// Blocks per call (cycled), each 1..=MAX_BLOCKS.
    pub blocks: Vec<usize>,
    /// Chunks per block in the grid-stride partition.
    pub threads_per_block: usize,
    /// Calls (indices into `bytes`) made with the v1 one-shot (copy-in, start barrier,
    /// read every peer's parity half): they advance the epoch like any call.
    pub barrier_calls: Vec<usize>,
    /// Injected fault.
    pub fault: Option<PushFault>,
    /// Weakened protocol.
    pub weaken: Option<PushWeakening>,
    /// Scheduler.
    pub scheduler: PushScheduler,
    /// Step budget of one schedule (exceeding it is a `timeout` violation).
    pub max_steps: usize,
}

impl PushConfig {
    /// A fault-free scenario under the default scheduler (PCT): `world` ranks, one call per
    /// entry of `bytes`.
    pub fn new(world: usize, bytes: Vec<usize>) -> Self {
        PushConfig {
            world,
            bytes,
            blocks: vec![2],
            threads_per_block: 1,
            barrier_calls: Vec::new(),
            fault: None,
            weaken: None,
            scheduler: PushScheduler::Pct {
                depth: crate::RandomMode::PCT_DEPTH,
            },
            max_steps: 400_000,
        }
    }

    /// The push scenario of a [`crate::SimConfig`] with `algo = PushOneShot` (what
    /// [`crate::check()`] runs): `calls` calls of `bytes` each; `Mismatch` becomes one chunk
    /// more; `NoRotation` becomes [`PushWeakening::OneBuffer`]. The seed protocol, the
    /// exhaustive scheduler, zero-copy and `RelaxedFlags` have no push counterpart (error).
    pub fn from_sim(cfg: &crate::SimConfig) -> Result<Self, SimError> {
        use crate::{Fault, Scheduler, Weakening};
        let no = |what: &str| Err(SimError::Config(format!("push-one-shot has no {what}")));
        if cfg.protocol == crate::Protocol::Seed {
            return no("seed variant (the seed has no push algorithm)");
        }
        if cfg.zero_copy {
            return no("zero-copy variant");
        }
        let scheduler = match cfg.scheduler {
            Scheduler::Random => match cfg.random {
                crate::RandomMode::Walk => PushScheduler::Random,
                crate::RandomMode::Pct { depth } => PushScheduler::Pct { depth },
            },
            Scheduler::Adversarial { slow_rank, .. } => PushScheduler::Adversarial { slow_rank },
            Scheduler::Exhaustive { .. } => return no("exhaustive scheduler (use random)"),
        };
        let weaken = match cfg.weaken {
            None => None,
            Some(Weakening::NoRotation) => Some(PushWeakening::OneBuffer),
            Some(Weakening::RelaxedFlags) => return no("relaxed-flags weakening"),
            Some(Weakening::NoMidBarrier) => return no("no-mid-barrier weakening"),
            Some(Weakening::NoEndBarrier) => return no("no-end-barrier weakening"),
            Some(Weakening::NoStartBarrier) => return no("no-start-barrier weakening"),
        };
        let fault = cfg.fault.map(|f| match f {
            Fault::Kill { rank, call } => PushFault::Kill { rank, call },
            Fault::Mismatch { rank, call } => PushFault::Mismatch {
                rank,
                call,
                more: true,
            },
            Fault::EpochSkew { rank, delta } => PushFault::EpochSkew { rank, delta },
        });
        if cfg.calls == 0 || cfg.calls > 64 {
            return Err(SimError::Config(format!(
                "calls {} must be 1..=64",
                cfg.calls
            )));
        }
        Ok(PushConfig {
            world: cfg.world,
            bytes: vec![cfg.bytes; cfg.calls],
            blocks: cfg.blocks.clone(),
            threads_per_block: cfg.threads_per_block,
            barrier_calls: Vec::new(),
            fault,
            weaken,
            scheduler,
            max_steps: cfg.max_steps,
        })
    }

    fn validate(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::Config(m));
        if self.world == 0 || self.world > MAX_RANKS {
            return bad(format!("world {} must be 1..={MAX_RANKS}", self.world));
        }
        if self.bytes.is_empty() || self.bytes.len() > 64 {
            return bad(format!("{} calls, must be 1..=64", self.bytes.len()));
        }
        if let Some(b) = self
            .bytes
            .iter()
            .find(|&&b| b == 0 || b % 4 != 0 || b > 4096)
        {
            return bad(format!("bytes {b} must be a multiple of 4 in 4..=4096"));
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
        if let Some(k) = self.barrier_calls.iter().find(|&&k| k >= self.bytes.len()) {
            return bad(format!("barrier call {k} >= calls {}", self.bytes.len()));
        }
        if let Some(PushFault::Mismatch { call, .. } | PushFault::OtherOp { call, .. }) = self.fault
        {
            if self.barrier_calls.contains(&call) {
                return bad(format!("mismatch fault on barrier call {call}"));
            }
        }
        if let PushScheduler::Adversarial { slow_rank } = self.scheduler {
            if slow_rank >= self.world {
                return bad(format!("slow rank {slow_rank} >= world {}", self.world));
            }
        }
        let rank = self.fault.map_or(0, |f| f.rank());
        if rank >= self.world {
            return bad(format!("fault rank {rank} >= world {}", self.world));
        }
        if let Some(PushFault::Mismatch {
            call, more: false, ..
        }) = self.fault
        {
            if self.bytes.get(call).is_some_and(|&b| b <= CHUNK_BYTES) {
                return bad("a 'less' mismatch needs a call of at least two chunks".into());
            }
        }
        Ok(())
    }
}

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

#[derive(Clone, Debug)]
struct Block {
    state: BState,
    pc: usize,
    /// Position inside the step.
    cursor: usize,
}

#[derive(Clone, Debug)]
struct RankState {
    call: usize,
    in_call: bool,
    killed: bool,
    epoch: u32,
    done: usize,
    grid: usize,
    error: u32,
    /// `flag(e, sig)` of the current call (set at launch).
    want: u64,
    out: Vec<Option<u64>>,
    results: Vec<CallOutcome>,
}

impl RankState {
    const FRESH: RankState = RankState {
        call: 0,
        in_call: false,
        killed: false,
        epoch: 0,
        done: 0,
        grid: 0,
        error: 0,
        want: 0,
        out: Vec::new(),
        results: Vec::new(),
    };
}

/// Location layout of one rank (indices relative to the rank's base).
#[derive(Clone, Copy, Debug)]
struct Geo {
    world: usize,
    max_g: usize,
    max_chunks: usize,
    /// Receive buffers (2, or 1 with `OneBuffer`).
    bufs: usize,
    /// Locations per half (1, or 2 with `SplitWords`: data word, tag word).
    words: usize,
    slots: usize,
    hdr: usize,
    flags: usize,
    halves: usize,
    abort: usize,
    per_rank: usize,
}

impl Geo {
    fn new(cfg: &PushConfig) -> Self {
        let world = cfg.world;
        let max_g = cfg.blocks.iter().copied().max().unwrap_or(1);
        let max_chunks = cfg
            .bytes
            .iter()
            .copied()
            .max()
            .unwrap_or(4)
            .div_ceil(CHUNK_BYTES)
            + 1;
        let bufs = if cfg.weaken == Some(PushWeakening::OneBuffer) {
            1
        } else {
            2
        };
        let words = if cfg.weaken == Some(PushWeakening::SplitWords) {
            2
        } else {
            1
        };
        let slots = 0;
        let hdr = slots + bufs * world * max_chunks * HALVES * words;
        let flags = hdr + 2 * world * 2;
        let halves = flags + 2 * max_g * world;
        let abort = halves + 2 * max_chunks;
        Geo {
            world,
            max_g,
            max_chunks,
            bufs,
            words,
            slots,
            hdr,
            flags,
            halves,
            abort,
            per_rank: abort + 1,
        }
    }
    /// Word `w` (0 = data or whole half, 1 = tag) of half `h` of chunk `c` in
    /// `r.slot[p][q]`.
    fn slot(&self, r: usize, p: usize, q: usize, c: usize, h: usize, w: usize) -> usize {
        let p = p % self.bufs;
        r * self.per_rank
            + self.slots
            + (((p * self.world + q) * self.max_chunks + c) * HALVES + h) * self.words
            + w
    }
    fn hdr(&self, r: usize, p: usize, q: usize, h: usize) -> usize {
        r * self.per_rank + self.hdr + (p * self.world + q) * 2 + h
    }
    fn flag(&self, r: usize, p: usize, b: usize, q: usize) -> usize {
        r * self.per_rank + self.flags + (p * self.max_g + b) * self.world + q
    }
    fn half(&self, r: usize, p: usize, c: usize) -> usize {
        r * self.per_rank + self.halves + p * self.max_chunks + c
    }
    fn abort(&self, r: usize) -> usize {
        r * self.per_rank + self.abort
    }
}

struct Run<'a> {
    cfg: &'a PushConfig,
    geo: Geo,
    rng: Rng,
    /// The PCT strategy of this schedule ([`PushScheduler::Pct`]).
    pct: Option<Pct>,
    /// Steps of one calibration schedule (PCT's change points are drawn from them).
    pct_steps: u64,
    mem: Memory,
    ranks: Vec<RankState>,
    blocks: Vec<Block>,
    max_g: usize,
    steps: u64,
    trace: Vec<String>,
    violations: Vec<Violation>,
    stop: bool,
    /// Cached [`Run::productive`] answer per block, valid while its rank is not dirty.
    prod: Vec<bool>,
    /// Ranks whose blocks' `prod` must be recomputed (a write landed in the rank's memory,
    /// one of its blocks acted, a call started or ended, or the abort word was raised).
    dirty: Vec<bool>,
}

/// What a poll of one (chunk, writer) found.
enum Poll {
    /// Every checked tag is `e`: the data words read and their provenance tags.
    Ready([u32; HALVES], [u64; HALVES]),
    /// A checked tag is newer than `e`.
    Newer,
    /// Not yet.
    Wait,
}

impl<'a> Run<'a> {
    fn new(cfg: &'a PushConfig) -> Self {
        let geo = Geo::new(cfg);
        let max_g = geo.max_g;
        Run {
            cfg,
            geo,
            rng: Rng::new(0),
            pct: None,
            pct_steps: 1,
            mem: Memory::new(cfg.world * geo.per_rank, cfg.world * max_g),
            ranks: Vec::new(),
            blocks: Vec::new(),
            max_g,
            steps: 0,
            trace: Vec::new(),
            violations: Vec::new(),
            stop: false,
            prod: Vec::new(),
            dirty: Vec::new(),
        }
    }

    fn reset(&mut self, seed: u64) {
        self.rng = Rng::new(seed);
        self.pct = match self.cfg.scheduler {
            PushScheduler::Pct { depth } => Some(Pct::new(
                seed,
                self.cfg.world * self.max_g,
                depth,
                self.pct_steps,
            )),
            _ => None,
        };
        self.mem.reset();
        self.ranks = vec![RankState::FRESH; self.cfg.world];
        if let Some(PushFault::EpochSkew { rank, delta }) = self.cfg.fault {
            if let Some(r) = self.ranks.get_mut(rank) {
                r.epoch = delta;
            }
        }
        self.blocks = vec![
            Block {
                state: BState::Idle,
                pc: 0,
                cursor: 0,
            };
            self.cfg.world * self.max_g
        ];
        self.steps = 0;
        self.trace.clear();
        self.violations.clear();
        self.stop = false;
        self.prod = vec![false; self.cfg.world * self.max_g];
        self.dirty = vec![true; self.cfg.world];
    }

    fn all_dirty(&mut self) {
        self.dirty.iter_mut().for_each(|d| *d = true);
    }

    fn epoch_of(&self, r: usize) -> u32 {
        self.ranks.get(r).map_or(0, |s| s.epoch.wrapping_add(1))
    }
    fn is_barrier_call(&self, k: usize) -> bool {
        self.cfg.barrier_calls.contains(&k)
    }
    fn chunks(&self, r: usize, k: usize) -> usize {
        let base = self
            .cfg
            .bytes
            .get(k)
            .copied()
            .unwrap_or(4)
            .div_ceil(CHUNK_BYTES);
        match self.cfg.fault {
            Some(PushFault::Mismatch { rank, call, more }) if rank == r && call == k => {
                if more {
                    base + 1
                } else {
                    base.saturating_sub(1).max(1)
                }
            }
            _ => base,
        }
    }
    fn sig(&self, r: usize, k: usize) -> u32 {
        let n = self.chunks(r, k) as u64;
        if self.is_barrier_call(k) {
            return crate::call_sig(crate::Algo::OneShot, DType::F32, ReduceOp::Sum, n * 4);
        }
        let op = match self.cfg.fault {
            Some(PushFault::OtherOp { rank, call }) if rank == r && call == k => ReduceOp::Max,
            _ => ReduceOp::Sum,
        };
        push_call_sig(DType::F32, op, n * 4)
    }
    fn want(&self, r: usize) -> u64 {
        self.ranks.get(r).map_or(0, |s| s.want)
    }
    fn grid(&self, k: usize) -> usize {
        let b = &self.cfg.blocks;
        b.get(k % b.len()).copied().unwrap_or(1)
    }
    fn tid(&self, r: usize, b: usize) -> usize {
        r * self.max_g + b
    }
    /// The idx-th chunk of block b (grid-stride) among `n` chunks, for rank r's grid.
    fn nth_chunk(&self, r: usize, b: usize, idx: usize, n: usize) -> Option<usize> {
        let g = self.ranks.get(r)?.grid.max(1);
        let t = self.cfg.threads_per_block;
        let c = ((idx / t) * g + b) * t + idx % t;
        (c < n && b < g).then_some(c)
    }
    /// The j-th peer of r (ranks other than r, ascending).
    fn peer(&self, r: usize, j: usize) -> usize {
        if j >= r {
            j + 1
        } else {
            j
        }
    }
    fn log(&mut self, r: usize, b: Option<usize>, text: String) {
        let call = self.ranks.get(r).map_or(0, |s| s.call);
        let who = match b {
            Some(b) => format!("r{r} b{b}"),
            None => format!("r{r}   "),
        };
        self.trace
            .push(format!("#{:<6} {who} call {call}: {text}", self.steps));
    }

    fn execute(&mut self) -> Vec<Violation> {
        let mut lands = Vec::new();
        let mut acts: Vec<(usize, Option<usize>)> = Vec::new();
        let mut events: Vec<Event> = Vec::new();
        while !self.stop {
            self.start_calls();
            if self
                .ranks
                .iter()
                .all(|s| s.killed || s.call >= self.cfg.bytes.len())
            {
                break;
            }
            self.steps += 1;
            if self.steps > self.cfg.max_steps as u64 {
                self.violation(
                    ViolationKind::Timeout,
                    format!("step budget of {} exhausted (livelock)", self.cfg.max_steps),
                );
                break;
            }
            for r in 0..self.cfg.world {
                if std::mem::take(&mut self.dirty[r]) {
                    for b in 0..self.max_g {
                        let i = self.tid(r, b);
                        self.prod[i] =
                            self.blocks[i].state == BState::Running && self.productive(i);
                    }
                }
            }
            acts.clear();
            acts.extend(
                (0..self.blocks.len())
                    .filter(|&i| self.prod[i])
                    .map(|i| (i, None)),
            );
            // One entry per thread with pending stores (its first pending store can always
            // land); the store is picked when the entry is: O(threads) per step instead of
            // O(pending stores).
            for t in 0..self.blocks.len() {
                if self.mem.has_pending(t) {
                    acts.push((t, Some(0)));
                }
            }
            if acts.is_empty() {
                self.stuck();
                continue;
            }
            let pick = match self.cfg.scheduler {
                PushScheduler::Random => self.rng.below(acts.len()),
                PushScheduler::Pct { .. } => {
                    events.clear();
                    events.extend(acts.iter().map(|&(i, st)| match st {
                        None => Event::Step(i),
                        Some(_) => Event::Land(i),
                    }));
                    match self.pct.as_mut() {
                        Some(p) => p.pick(&events),
                        None => self.rng.below(acts.len()),
                    }
                }
                PushScheduler::Adversarial { slow_rank } => {
                    let g = self.max_g;
                    let fast: Vec<usize> = (0..acts.len())
                        .filter(|&j| acts.get(j).is_some_and(|a| a.0 / g != slow_rank))
                        .collect();
                    if fast.is_empty() {
                        self.rng.below(acts.len())
                    } else {
                        let f = self.rng.below(fast.len());
                        fast.get(f).copied().unwrap_or(0)
                    }
                }
            };
            match acts.get(pick).copied() {
                Some((i, None)) => {
                    self.dirty[i / self.max_g] = true;
                    self.step_block(i);
                }
                Some((t, Some(_))) => {
                    lands.clear();
                    self.mem.landable_of(t, &mut lands);
                    let j = match self.pct.as_mut() {
                        Some(p) => p.pick_store(lands.len().max(1)),
                        None => self.rng.below(lands.len().max(1)),
                    };
                    if let Some(&(t, idx)) = lands.get(j) {
                        if let Some(loc) = self.mem.land(t, idx) {
                            if let Some(d) = self.dirty.get_mut(loc / self.geo.per_rank) {
                                *d = true;
                            }
                        }
                    }
                }
                None => break,
            }
        }
        if !self.stop {
            self.final_checks();
        }
        std::mem::take(&mut self.violations)
    }

    fn start_calls(&mut self) {
        for r in 0..self.cfg.world {
            let st = &self.ranks[r];
            if st.in_call || st.killed || st.call >= self.cfg.bytes.len() {
                continue;
            }
            let k = st.call;
            if let Some(PushFault::Kill { rank, call }) = self.cfg.fault {
                if rank == r && k >= call {
                    self.ranks[r].killed = true;
                    self.log(r, None, "rank killed (never calls again)".into());
                    continue;
                }
            }
            let grid = self.grid(k);
            let chunks = self.chunks(r, k);
            // Stream order: everything the previous kernel did happens-before every block.
            for b in 0..grid {
                for b2 in 0..self.max_g {
                    let (t, t2) = (self.tid(r, b), self.tid(r, b2));
                    self.mem.sync_threads(t, t2);
                }
            }
            self.dirty[r] = true;
            let want = flag_word(self.epoch_of(r), self.sig(r, k));
            let st = &mut self.ranks[r];
            st.want = want;
            st.in_call = true;
            st.grid = grid;
            st.done = 0;
            st.out = vec![None; chunks];
            for b in 0..grid {
                let t = self.tid(r, b);
                self.blocks[t] = Block {
                    state: BState::Running,
                    pc: 0,
                    cursor: 0,
                };
            }
            let e = self.epoch_of(r);
            let what = if self.is_barrier_call(k) {
                "v1 one-shot"
            } else {
                "LL push"
            };
            self.log(
                r,
                None,
                format!("launch {what} ({grid} blocks, epoch {e}, {chunks} chunks)"),
            );
        }
    }

    fn maybe_end_call(&mut self, r: usize) {
        let g = self.ranks[r].grid;
        if (0..g).any(|b| self.blocks[self.tid(r, b)].state == BState::Running) {
            return;
        }
        let failed = (0..g).any(|b| self.blocks[self.tid(r, b)].state == BState::Failed);
        // Flushing lands stores in every rank's memory.
        self.all_dirty();
        for b in 0..self.max_g {
            let t = self.tid(r, b);
            self.mem.flush(t);
            self.blocks[t].state = BState::Idle;
        }
        let st = &mut self.ranks[r];
        let outcome = CallOutcome::of(failed, st.error, &st.out);
        let ok = matches!(outcome, CallOutcome::Ok(_));
        st.results.push(outcome);
        self.log(
            r,
            None,
            format!("kernel complete ({})", if ok { "ok" } else { "error" }),
        );
        let st = &mut self.ranks[r];
        st.in_call = false;
        st.call += 1;
    }

    /// Whether the newest value of a flag-like word (`flag(e, sig)` from peer q) lets a
    /// waiter move: the awaited value, the same epoch with another signature, or a newer
    /// epoch.
    fn flag_moves(&self, r: usize, v: u64) -> bool {
        let e = self.epoch_of(r);
        flag_epoch(v) == e || tag_is_newer(flag_epoch(v), e)
    }

    /// Whether the newest header line of writer q (both halves) lets a waiter move: in
    /// HdrCheck (`awaited`) its arrival does; in the poll's slow path only an error does
    /// (a newer epoch, or epoch e with another signature).
    fn hdr_moves(&self, r: usize, q: usize, awaited: bool) -> bool {
        let e = self.epoch_of(r);
        let p = e as usize % 2;
        let v = [0, 1].map(|h| self.mem.newest_landed(self.geo.hdr(r, p, q, h)).0);
        if v.iter().any(|&x| tag_is_newer(flag_epoch(x), e)) {
            return true;
        }
        let want = self.ranks[r].want;
        v.iter().all(|&x| flag_epoch(x) == e) && (awaited || v.iter().any(|&x| x != want))
    }

    /// Whether running block i now can change anything (a poll that can only read what it
    /// read before, with no mismatch or abort visible, cannot).
    fn productive(&self, i: usize) -> bool {
        let r = i / self.max_g;
        let b = i % self.max_g;
        let blk = &self.blocks[i];
        if self.mem.newest_landed(self.geo.abort(r)).0 != 0 {
            return true;
        }
        let k = self.ranks[r].call;
        let w = self.cfg.world;
        let e = self.epoch_of(r);
        let p = e as usize % 2;
        let barrier = self.is_barrier_call(k);
        match blk.pc {
            2 if barrier => {
                if blk.cursor >= w - 1 {
                    return true;
                }
                let q = self.peer(r, blk.cursor);
                let v = self.mem.newest_landed(self.geo.flag(r, p, b, q)).0;
                self.flag_moves(r, v)
            }
            2 => {
                let n = self.chunks(r, k);
                let Some(c) = self.nth_chunk(r, b, blk.cursor / w, n) else {
                    return true;
                };
                let q = blk.cursor % w;
                if q == r {
                    return true;
                }
                let tw = self.geo.words - 1;
                let mut all = true;
                for h in 0..HALVES {
                    let t = self.mem.newest_landed(self.geo.slot(r, p, q, c, h, tw)).0 as u32;
                    if tag_is_newer(t, e) {
                        return true;
                    }
                    all &= t == e;
                }
                all || self.hdr_moves(r, q, false)
            }
            3 if !barrier => {
                if blk.cursor >= w - 1 {
                    return true;
                }
                let q = self.peer(r, blk.cursor);
                self.hdr_moves(r, q, true)
            }
            _ => true,
        }
    }

    fn load(&mut self, i: usize, loc: usize, order: MemOrder) -> (u64, u64) {
        let n = self.mem.load_choices(i, loc, order);
        let pick = match self.cfg.scheduler {
            PushScheduler::Random => {
                if n <= 1 || self.rng.below(2) == 0 {
                    0
                } else {
                    1 + self.rng.below(n - 1)
                }
            }
            PushScheduler::Pct { .. } => match self.pct.as_mut() {
                Some(p) => p.value(n),
                None => 0,
            },
            PushScheduler::Adversarial { .. } => 0,
        };
        self.mem.load(i, loc, order, pick)
    }

    fn next_step(&mut self, i: usize) {
        let r = i / self.max_g;
        let b = &mut self.blocks[i];
        let done = b.pc;
        b.pc += 1;
        b.cursor = 0;
        if let Some(name) = PUSH_STEP_NAMES.get(done) {
            if done != 0 {
                self.log(r, Some(i % self.max_g), format!("{done} {name} done"));
            }
        }
        if self.blocks[i].pc >= PUSH_STEP_NAMES.len() {
            self.blocks[i].state = BState::Finished;
            self.maybe_end_call(r);
        }
    }

    fn fail(&mut self, i: usize, code: u32, peer: usize) {
        let r = i / self.max_g;
        self.log(
            r,
            Some(i % self.max_g),
            format!("ERROR {} (peer r{peer})", crate::error_code_name(code)),
        );
        if self.ranks[r].error == 0 {
            self.ranks[r].error = code;
        }
        if code != ERR_PEER_ABORT {
            self.all_dirty();
            let word = u64::from(abort_word(r as u32, code));
            for q in 0..self.cfg.world {
                let loc = self.geo.abort(q);
                self.mem
                    .rmw(i, loc, |v| if v == 0 { Some((word, 0)) } else { None });
            }
        }
        self.blocks[i].state = BState::Failed;
        self.maybe_end_call(r);
    }

    /// Checks a flag-like value `v` (`flag(epoch, sig)`) read from writer q against this
    /// call; returns true when the block failed.
    fn flag_error(&mut self, i: usize, q: usize, v: u64) -> bool {
        let r = i / self.max_g;
        let e = self.epoch_of(r);
        let want = self.want(r);
        if v == want {
            return false;
        }
        if flag_epoch(v) == e && flag_sig(v) != flag_sig(want) {
            self.fail(i, ERR_CALL_MISMATCH, q);
            return true;
        }
        if tag_is_newer(flag_epoch(v), e) {
            self.fail(i, ERR_SEQ_MISMATCH, q);
            return true;
        }
        false
    }

    /// Reads writer q's header line (both halves). `Ok(true)`: both halves carry this
    /// call's epoch and signature. `Ok(false)`: not there yet. `Err(())`: the block failed
    /// (another signature at epoch e -> CALL_MISMATCH, a newer epoch -> SEQ_MISMATCH).
    fn read_hdr(&mut self, i: usize, q: usize) -> Result<bool, ()> {
        let r = i / self.max_g;
        let e = self.epoch_of(r);
        let p = e as usize % 2;
        let mut v = [0u64; 2];
        for (h, x) in v.iter_mut().enumerate() {
            let loc = self.geo.hdr(r, p, q, h);
            *x = self.load(i, loc, MemOrder::Relaxed).0;
        }
        if let Some(&n) = v.iter().find(|&&x| tag_is_newer(flag_epoch(x), e)) {
            if self.flag_error(i, q, n) {
                return Err(());
            }
        }
        if v.iter().all(|&x| flag_epoch(x) == e) {
            if v[0] == self.want(r) && v[1] == v[0] {
                return Ok(true);
            }
            let odd = if v[0] == self.want(r) { v[1] } else { v[0] };
            if self.flag_error(i, q, odd) {
                return Err(());
            }
        }
        Ok(false)
    }

    fn abort_seen(&mut self, i: usize) -> bool {
        let r = i / self.max_g;
        let loc = self.geo.abort(r);
        let (a, _) = self.load(i, loc, MemOrder::Relaxed);
        if a != 0 {
            self.fail(i, ERR_PEER_ABORT, abort_rank(a as u32) as usize);
            return true;
        }
        false
    }

    fn step_block(&mut self, i: usize) {
        let r = i / self.max_g;
        let k = self.ranks[r].call;
        let barrier = self.is_barrier_call(k);
        match self.blocks[i].pc {
            0 => {
                // Prologue: exit if aborted (or this rank's comm is poisoned by an
                // earlier error: the host refuses the call).
                let poisoned = self.ranks[r].error;
                if poisoned != 0 {
                    self.fail(i, poisoned, r);
                    return;
                }
                if self.abort_seen(i) {
                    return;
                }
                self.next_step(i);
            }
            1 if barrier => self.copy_in_and_signal(i),
            1 => self.push_data(i),
            2 if barrier => self.barrier_and_reduce(i),
            2 => self.poll(i),
            3 if barrier || self.cfg.weaken == Some(PushWeakening::NoHdrCheck) => self.next_step(i),
            3 => {
                // HdrCheck: every peer's header line of call e, with the barrier's rules.
                let cursor = self.blocks[i].cursor;
                if cursor + 1 >= self.cfg.world {
                    self.next_step(i);
                    return;
                }
                let q = self.peer(r, cursor);
                match self.read_hdr(i, q) {
                    Err(()) => {}
                    Ok(true) => self.blocks[i].cursor += 1,
                    Ok(false) => {
                        self.abort_seen(i);
                    }
                }
            }
            4 => {
                let st = &mut self.ranks[r];
                st.done += 1;
                if st.done == st.grid {
                    st.done = 0;
                    st.epoch = st.epoch.wrapping_add(1);
                }
                self.next_step(i);
            }
            _ => {}
        }
    }

    /// PushData: block 0 first stores the header line at every peer (one action per
    /// peer); then one action per (chunk, peer, line): one 16-byte store whose two 8-byte
    /// halves (four 4-byte words with `SplitWords`) land separately.
    fn push_data(&mut self, i: usize) {
        let r = i / self.max_g;
        let b = i % self.max_g;
        let k = self.ranks[r].call;
        let e = self.epoch_of(r);
        let p = e as usize % 2;
        let peers = self.cfg.world - 1;
        let mut idx = self.blocks[i].cursor;
        if b == 0 {
            if idx < peers {
                let q = self.peer(r, idx);
                let v = self.want(r);
                for h in 0..2 {
                    let loc = self.geo.hdr(q, p, r, h);
                    self.mem
                        .store(i, loc, v, tag(r, k, WHAT_HDR), MemOrder::Relaxed);
                }
                self.blocks[i].cursor += 1;
                return;
            }
            idx -= peers;
        }
        let n = self.chunks(r, k);
        let per = 2 * peers;
        let Some(c) = (per > 0)
            .then(|| self.nth_chunk(r, b, idx / per.max(1), n))
            .flatten()
        else {
            self.next_step(i);
            return;
        };
        let q = self.peer(r, (idx % per) / 2);
        let line = idx % 2;
        let prov = tag(r, k, WHAT_LINE);
        for h in 2 * line..2 * line + 2 {
            let d = half_value(r, k, c, h);
            if self.geo.words == 2 {
                let (dl, tl) = (
                    self.geo.slot(q, p, r, c, h, 0),
                    self.geo.slot(q, p, r, c, h, 1),
                );
                self.mem.store(i, dl, u64::from(d), prov, MemOrder::Relaxed);
                self.mem.store(i, tl, u64::from(e), prov, MemOrder::Relaxed);
            } else {
                let loc = self.geo.slot(q, p, r, c, h, 0);
                self.mem
                    .store(i, loc, half_word(d, e), prov, MemOrder::Relaxed);
            }
        }
        self.blocks[i].cursor += 1;
    }

    /// Reads the four halves of chunk c from writer q in my slot; what the reader decides.
    fn poll_chunk(&mut self, i: usize, q: usize, c: usize) -> Poll {
        let r = i / self.max_g;
        let e = self.epoch_of(r);
        let p = e as usize % 2;
        let mut data = [0u32; HALVES];
        let mut prov = [0u64; HALVES];
        let mut tags = [0u32; HALVES];
        for h in 0..HALVES {
            if self.geo.words == 2 {
                let (t, _) = self.load(i, self.geo.slot(r, p, q, c, h, 1), MemOrder::Relaxed);
                let (d, pv) = self.load(i, self.geo.slot(r, p, q, c, h, 0), MemOrder::Relaxed);
                tags[h] = t as u32;
                data[h] = d as u32;
                prov[h] = pv;
            } else {
                let (v, pv) = self.load(i, self.geo.slot(r, p, q, c, h, 0), MemOrder::Relaxed);
                tags[h] = v as u32;
                data[h] = (v >> 32) as u32;
                prov[h] = pv;
            }
        }
        let one_tag = self.cfg.weaken == Some(PushWeakening::OneTagPerLine);
        let checked = tags
            .iter()
            .enumerate()
            .filter(|(h, _)| !one_tag || h % 2 == 0)
            .map(|(_, &t)| t);
        let mut all = true;
        for t in checked {
            if tag_is_newer(t, e) {
                return Poll::Newer;
            }
            all &= t == e;
        }
        if all {
            Poll::Ready(data, prov)
        } else {
            Poll::Wait
        }
    }

    /// PollReduce: cursor = chunk index * W + writer; rank order, my own data from my input.
    fn poll(&mut self, i: usize) {
        let r = i / self.max_g;
        let b = i % self.max_g;
        let k = self.ranks[r].call;
        let w = self.cfg.world;
        let n = self.chunks(r, k);
        let cursor = self.blocks[i].cursor;
        let Some(c) = self.nth_chunk(r, b, cursor / w, n) else {
            self.next_step(i);
            return;
        };
        let q = cursor % w;
        let data = if q == r {
            [0, 1, 2, 3].map(|h| half_value(r, k, c, h))
        } else {
            match self.poll_chunk(i, q, c) {
                Poll::Newer => {
                    self.fail(i, ERR_SEQ_MISMATCH, q);
                    return;
                }
                Poll::Wait => {
                    // Slow path: the writer's header line (mismatch) and the abort word.
                    if self.read_hdr(i, q).is_err() {
                        return;
                    }
                    self.abort_seen(i);
                    return;
                }
                Poll::Ready(data, prov) => {
                    let want = tag(q, k, WHAT_LINE);
                    if let Some(h) = (0..HALVES).find(|&h| prov[h] != want) {
                        let p = self.epoch_of(r) % 2;
                        let text = format!(
                            "PollReduce read r{r}.slot[{p}][{q}] chunk {c} half {h}: found {}, expected {} (all checked tags said epoch {})",
                            describe_tag(prov[h]),
                            describe_tag(want),
                            self.epoch_of(r)
                        );
                        self.log(r, Some(b), format!("!! {text}"));
                        self.violation(
                            ViolationKind::StaleRead,
                            format!("r{r} b{b} call {k}: {text}"),
                        );
                    }
                    data
                }
            }
        };
        self.accumulate(r, c, q, chunk_value(&data));
        self.blocks[i].cursor += 1;
    }

    fn accumulate(&mut self, r: usize, c: usize, q: usize, v: u64) {
        if let Some(o) = self.ranks[r].out.get_mut(c) {
            *o = Some(match (q, *o) {
                (0, _) | (_, None) => v,
                (_, Some(a)) => mix(a, v),
            });
        }
    }

    /// v1 one-shot, step 1: copy my chunks into my parity half, then (cursor past
    /// `FLAG_PHASE`) release the start flag at every peer.
    fn copy_in_and_signal(&mut self, i: usize) {
        const FLAG_PHASE: usize = 1 << 20;
        let r = i / self.max_g;
        let b = i % self.max_g;
        let k = self.ranks[r].call;
        let p = self.epoch_of(r) as usize % 2;
        let cursor = self.blocks[i].cursor;
        if cursor < FLAG_PHASE {
            let n = self.chunks(r, k);
            if let Some(c) = self.nth_chunk(r, b, cursor, n) {
                let loc = self.geo.half(r, p, c);
                let v = u64::from(half_value(r, k, c, 0));
                self.mem
                    .store(i, loc, v, tag(r, k, WHAT_HALF), MemOrder::Relaxed);
                self.blocks[i].cursor += 1;
            } else {
                self.blocks[i].cursor = FLAG_PHASE;
            }
            return;
        }
        let j = cursor - FLAG_PHASE;
        if j + 1 >= self.cfg.world {
            self.next_step(i);
            return;
        }
        let q = self.peer(r, j);
        let loc = self.geo.flag(q, p, b, r);
        let v = self.want(r);
        self.mem
            .store(i, loc, v, tag(r, k, WHAT_FLAG), MemOrder::Release);
        self.blocks[i].cursor += 1;
    }

    /// v1 one-shot, step 2: acquire every peer's start flag, then read every rank's
    /// parity half for my chunks in rank order.
    fn barrier_and_reduce(&mut self, i: usize) {
        let r = i / self.max_g;
        let b = i % self.max_g;
        let k = self.ranks[r].call;
        let w = self.cfg.world;
        let p = self.epoch_of(r) as usize % 2;
        let cursor = self.blocks[i].cursor;
        if cursor + 1 < w {
            let q = self.peer(r, cursor);
            let loc = self.geo.flag(r, p, b, q);
            let (v, _) = self.load(i, loc, MemOrder::Acquire);
            if v == self.want(r) {
                self.blocks[i].cursor += 1;
            } else if !self.flag_error(i, q, v) {
                self.abort_seen(i);
            }
            return;
        }
        let idx = cursor + 1 - w;
        let n = self.chunks(r, k);
        let Some(c) = self.nth_chunk(r, b, idx / w, n) else {
            self.next_step(i);
            return;
        };
        let q = idx % w;
        let (v, prov) = self.load(i, self.geo.half(q, p, c), MemOrder::Relaxed);
        let want = tag(q, k, WHAT_HALF);
        if prov != want {
            let text = format!(
                "v1 ReduceAll read r{q}.buf[{p}] chunk {c}: found {}, expected {}",
                describe_tag(prov),
                describe_tag(want)
            );
            self.log(r, Some(b), format!("!! {text}"));
            self.violation(
                ViolationKind::StaleRead,
                format!("r{r} b{b} call {k}: {text}"),
            );
        }
        self.accumulate(r, c, q, v);
        self.blocks[i].cursor += 1;
    }

    fn stuck(&mut self) {
        let waiting: Vec<usize> = (0..self.blocks.len())
            .filter(|&i| self.blocks[i].state == BState::Running)
            .collect();
        if waiting.is_empty() {
            self.stop = true;
            return;
        }
        if self.cfg.fault.is_none() {
            let desc: Vec<String> = waiting
                .iter()
                .take(8)
                .map(|&i| {
                    let pc = self.blocks[i].pc;
                    format!(
                        "r{} b{} in {} (cursor {})",
                        i / self.max_g,
                        i % self.max_g,
                        PUSH_STEP_NAMES.get(pc).copied().unwrap_or("?"),
                        self.blocks[i].cursor
                    )
                })
                .collect();
            self.violation(
                ViolationKind::Deadlock,
                format!("all live blocks wait: {}", desc.join("; ")),
            );
            self.stop = true;
            return;
        }
        let pick = self.rng.below(waiting.len());
        let i = waiting.get(pick).copied().unwrap_or(0);
        let q = self.blocks[i].cursor % self.cfg.world;
        self.fail(i, ERR_TIMEOUT, q);
    }

    fn violation(&mut self, kind: ViolationKind, message: String) {
        if self.violations.iter().any(|v| v.kind == kind) {
            return;
        }
        let keep = 60;
        let start = self.trace.len().saturating_sub(keep);
        let mut trace = Vec::new();
        if start > 0 {
            trace.push(format!("... {start} earlier events omitted"));
        }
        trace.extend(self.trace.iter().skip(start).cloned());
        self.violations
            .push(Violation::unreplayable(kind, message, trace));
    }

    /// The expected result of chunk c of call k (rank-order fold of every rank's value).
    fn reference(&self, k: usize, c: usize) -> u64 {
        let barrier = self.is_barrier_call(k);
        let mut acc = None;
        for q in 0..self.cfg.world {
            let v = if barrier {
                u64::from(half_value(q, k, c, 0))
            } else {
                chunk_value(&[0, 1, 2, 3].map(|h| half_value(q, k, c, h)))
            };
            acc = Some(match acc {
                None => v,
                Some(a) => mix(a, v),
            });
        }
        acc.unwrap_or(0)
    }

    fn final_checks(&mut self) {
        let fault = self.cfg.fault;
        for r in 0..self.cfg.world {
            let results = std::mem::take(&mut self.ranks[r].results);
            for (k, res) in results.iter().enumerate() {
                let faulty = match fault {
                    Some(PushFault::Kill { call, .. })
                    | Some(PushFault::Mismatch { call, .. })
                    | Some(PushFault::OtherOp { call, .. }) => k >= call,
                    Some(PushFault::EpochSkew { .. }) => true,
                    None => false,
                };
                match res {
                    CallOutcome::Ok(out) => {
                        if faulty {
                            let (kind, what) = match fault {
                                Some(PushFault::Kill { .. }) => (
                                    ViolationKind::Timeout,
                                    "completed although a rank it depends on is dead",
                                ),
                                _ => (
                                    ViolationKind::SeqMismatch,
                                    "completed a call the ranks disagree on, undetected",
                                ),
                            };
                            self.violation(kind, format!("r{r} call {k} {what}"));
                            continue;
                        }
                        for (c, &v) in out.iter().enumerate() {
                            let want = self.reference(k, c);
                            if v != want {
                                self.violation(
                                    ViolationKind::WrongResult,
                                    format!(
                                        "r{r} call {k} chunk {c}: got {v:#018x}, reference {want:#018x}"
                                    ),
                                );
                                break;
                            }
                        }
                    }
                    CallOutcome::Err(code) => {
                        // A rank may lag one call behind the one that fails; the abort
                        // word then stops its in-flight call too (collateral PEER_ABORT).
                        let collateral = |call: usize| *code == ERR_PEER_ABORT && k + 1 == call;
                        let expected = match fault {
                            Some(PushFault::Kill { call, .. }) => {
                                (faulty && (*code == ERR_TIMEOUT || *code == ERR_PEER_ABORT))
                                    || collateral(call)
                            }
                            Some(PushFault::Mismatch { call, .. })
                            | Some(PushFault::OtherOp { call, .. }) => {
                                (faulty && *code != ERR_TIMEOUT) || collateral(call)
                            }
                            Some(PushFault::EpochSkew { .. }) => true,
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
                                    crate::error_code_name(*code)
                                ),
                            );
                        }
                    }
                }
            }
            let finished = results.len();
            let any_err = results.iter().any(|o| matches!(o, CallOutcome::Err(_)));
            self.ranks[r].results = results;
            if !self.ranks[r].killed && finished < self.cfg.bytes.len() && !any_err {
                self.violation(
                    ViolationKind::Deadlock,
                    format!("r{r} never finished call {finished}"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configs_are_rejected() {
        assert!(check_push(&PushConfig::new(0, vec![16]), 1, 0).is_err());
        assert!(check_push(&PushConfig::new(9, vec![16]), 1, 0).is_err());
        assert!(check_push(&PushConfig::new(2, vec![]), 1, 0).is_err());
        assert!(check_push(&PushConfig::new(2, vec![6]), 1, 0).is_err());
        let mut c = PushConfig::new(2, vec![16]);
        c.fault = Some(PushFault::Mismatch {
            rank: 0,
            call: 0,
            more: false,
        });
        assert!(check_push(&c, 1, 0).is_err(), "'less' on a one-chunk call");
        c.fault = Some(PushFault::Kill { rank: 2, call: 0 });
        assert!(check_push(&c, 1, 0).is_err());
        c.fault = Some(PushFault::OtherOp { rank: 0, call: 0 });
        c.barrier_calls = vec![0];
        assert!(check_push(&c, 1, 0).is_err(), "mismatch on a barrier call");
    }

    #[test]
    fn one_rank_and_tags() {
        let r = check_push(&PushConfig::new(1, vec![64, 16, 48, 4]), 5, 3).unwrap();
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(describe_tag(tag(1, 2, WHAT_LINE)), "r1 call 2 line data");
        assert_ne!(half_value(0, 0, 0, 0), 0);
        let g = Geo::new(&PushConfig::new(3, vec![64]));
        assert!(g.slot(0, 1, 2, 4, 3, 0) < g.hdr);
        assert_eq!(g.abort(0) + 1, g.per_rank);
    }
}
