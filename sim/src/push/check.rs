//! The checker of the push one-shot protocol: every rank's blocks run the push steps
//! ([`super::PUSH_STEP_NAMES`]) under a scheduler and the weak-memory
//! [`model`](crate::model); every run is checked for exact results, stale reads (data
//! tags), deadlock, undetected mismatched calls and missing timeouts, like
//! [`crate::check()`] does for the barrier protocols.
//!
//! What is modelled: a 16-byte chunk store is one location written by one store (single-copy
//! atomic), or — with [`PushConfig::split_stores`] — two 8-byte halves stored separately;
//! the empty sentinel is the value 0 of a location (every slot starts empty); a reader polls
//! with relaxed loads that may return any value the model allows (stale included) until
//! every half it checks is non-sentinel; signature words are written with release and
//! checked with acquire; `used[k]` and the epoch are block-shared rank state; kernel
//! boundaries order a rank's calls (stream order) and land its stores.
//!
//! Weakenings ([`PushWeakening`]) show that the checker catches a broken variant: two
//! rotating buffers instead of three, no clear, and a reader that trusts 16-byte store
//! atomicity (checks one half for the sentinel) while stores tear.

use crate::check::{mix, tag, BState, CallOutcome, Rng};
use crate::error::SimError;
use crate::model::{MemOrder, Memory};
use crate::types::{
    abort_word, flag_epoch, flag_sig, flag_word, DType, ReduceOp, CHUNK_BYTES, ERR_CALL_MISMATCH,
    ERR_PEER_ABORT, ERR_SEQ_MISMATCH, ERR_TIMEOUT, MAX_BLOCKS, MAX_RANKS,
};
use crate::{Report, Violation, ViolationKind};

use super::{push_call_sig, PUSH_STEP_NAMES};

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
    /// `rank` starts with its epoch `delta` ahead.
    EpochSkew {
        /// The odd rank.
        rank: usize,
        /// Epochs ahead.
        delta: u32,
    },
}

/// A deliberate weakening of the push protocol (mutation testing of the checker).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum PushWeakening {
    /// Rotate two buffers (`L[e % 2]`, clear `L[(e + 1) % 2]`) instead of three.
    TwoBuffers,
    /// Never re-arm a used buffer with the sentinel.
    NoClear,
    /// 16-byte stores tear into two 8-byte halves and the reader checks only the first
    /// half for the sentinel (trusting 16-byte atomicity).
    TornStore,
    /// Index the buffers by the epoch (`L[e % 3]`, clear `L[(e + 2) % 3]`) instead of by
    /// the push-call sequence: wrong once other algorithms run between push calls.
    EpochIndexed,
}

/// How push schedules are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum PushScheduler {
    /// Seeded random interleavings and random allowed (possibly stale) load values.
    Random,
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
    /// Model each 16-byte store as two separately landing 8-byte halves (the reader checks
    /// both halves, as the kernels check every lane).
    pub split_stores: bool,
    /// Calls (indices into `bytes`) made with another, barrier-synchronised algorithm
    /// (one-shot/two-shot): they advance the epoch but not the push buffers, and exchange
    /// only signature words (a barrier).
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
    /// A fault-free random-scheduler scenario: `world` ranks, one call per entry of `bytes`.
    pub fn new(world: usize, bytes: Vec<usize>) -> Self {
        PushConfig {
            world,
            bytes,
            blocks: vec![2],
            threads_per_block: 1,
            split_stores: false,
            barrier_calls: Vec::new(),
            fault: None,
            weaken: None,
            scheduler: PushScheduler::Random,
            max_steps: 400_000,
        }
    }

    /// The push scenario of a [`crate::SimConfig`] with `algo = PushOneShot` (what
    /// [`crate::check()`] runs): `calls` calls of `bytes` each; `Mismatch` becomes one chunk
    /// more; `NoRotation` becomes [`PushWeakening::TwoBuffers`]. The seed protocol, the
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
            Scheduler::Random => PushScheduler::Random,
            Scheduler::Adversarial { slow_rank, .. } => PushScheduler::Adversarial { slow_rank },
            Scheduler::Exhaustive { .. } => return no("exhaustive scheduler (use random)"),
        };
        let weaken = match cfg.weaken {
            None => None,
            Some(Weakening::NoRotation) => Some(PushWeakening::TwoBuffers),
            Some(Weakening::RelaxedFlags) => return no("relaxed-flags weakening"),
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
            split_stores: false,
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
        if let Some(PushFault::Mismatch { call, .. }) = self.fault {
            if self.barrier_calls.contains(&call) {
                return bad(format!("mismatch fault on barrier call {call}"));
            }
        }
        if let PushScheduler::Adversarial { slow_rank } = self.scheduler {
            if slow_rank >= self.world {
                return bad(format!("slow rank {slow_rank} >= world {}", self.world));
            }
        }
        let rank = match self.fault {
            Some(PushFault::Kill { rank, .. })
            | Some(PushFault::Mismatch { rank, .. })
            | Some(PushFault::EpochSkew { rank, .. }) => rank,
            None => 0,
        };
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
    for i in 0..schedules {
        let s = seed.wrapping_add(i);
        let mut run = Run::new(cfg, s);
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

const WHAT_DATA: u64 = 1;
const WHAT_CLEAR: u64 = 2;

fn describe_tag(t: u64) -> String {
    if t == 0 {
        return "the initial sentinel".into();
    }
    let rank = (t >> 40).wrapping_sub(1);
    let call = ((t >> 8) & 0xffff_ffff).wrapping_sub(1);
    match t & 0xff {
        WHAT_DATA => format!("r{rank} call {call} data"),
        WHAT_CLEAR => format!("sentinel written by r{rank}'s clear in call {call}"),
        _ => "?".into(),
    }
}

/// Half `h` of the data rank q sends in call k for chunk c (never 0 = the sentinel).
fn half_value(q: usize, k: usize, c: usize, h: usize) -> u64 {
    let mut z = ((q as u64) << 48) ^ ((k as u64) << 24) ^ ((c as u64) << 1) ^ h as u64;
    z = (z ^ (z >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (z ^ (z >> 29)) | 1
}

fn chunk_value(halves: &[u64]) -> u64 {
    halves
        .iter()
        .fold(0u64, |a, &h| a.rotate_left(13).wrapping_add(h))
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
    used: [usize; 3],
    /// Buffer of this rank's previous push call.
    last: usize,
    out: Vec<Option<u64>>,
    results: Vec<CallOutcome>,
}

struct Run<'a> {
    cfg: &'a PushConfig,
    rng: Rng,
    mem: Memory,
    ranks: Vec<RankState>,
    blocks: Vec<Block>,
    max_g: usize,
    max_chunks: usize,
    halves: usize,
    steps: u64,
    trace: Vec<String>,
    violations: Vec<Violation>,
    stop: bool,
}

impl<'a> Run<'a> {
    fn new(cfg: &'a PushConfig, seed: u64) -> Self {
        let max_g = cfg.blocks.iter().copied().max().unwrap_or(1);
        let max_chunks = cfg
            .bytes
            .iter()
            .copied()
            .max()
            .unwrap_or(4)
            .div_ceil(CHUNK_BYTES)
            + 1;
        let halves = if cfg.split_stores || cfg.weaken == Some(PushWeakening::TornStore) {
            2
        } else {
            1
        };
        let per_rank = 3 * cfg.world * max_chunks * halves + 2 * max_g * cfg.world + 1;
        let mut ranks = vec![
            RankState {
                call: 0,
                in_call: false,
                killed: false,
                epoch: 0,
                done: 0,
                grid: 0,
                error: 0,
                used: [0; 3],
                last: 0,
                out: Vec::new(),
                results: Vec::new(),
            };
            cfg.world
        ];
        if let Some(PushFault::EpochSkew { rank, delta }) = cfg.fault {
            if let Some(r) = ranks.get_mut(rank) {
                r.epoch = delta;
            }
        }
        Run {
            cfg,
            rng: Rng::new(seed),
            mem: Memory::new(cfg.world * per_rank, cfg.world * max_g),
            ranks,
            blocks: vec![
                Block {
                    state: BState::Idle,
                    pc: 0,
                    cursor: 0,
                };
                cfg.world * max_g
            ],
            max_g,
            max_chunks,
            halves,
            steps: 0,
            trace: Vec::new(),
            violations: Vec::new(),
            stop: false,
        }
    }

    // ---- layout: per rank [L: 3 x W x chunks x halves][sig: 2 x G x W][abort]
    fn per_rank(&self) -> usize {
        3 * self.cfg.world * self.max_chunks * self.halves + 2 * self.max_g * self.cfg.world + 1
    }
    fn slot_loc(&self, r: usize, k: usize, q: usize, c: usize, h: usize) -> usize {
        r * self.per_rank() + ((k * self.cfg.world + q) * self.max_chunks + c) * self.halves + h
    }
    fn sig_loc(&self, r: usize, p: usize, b: usize, q: usize) -> usize {
        r * self.per_rank()
            + 3 * self.cfg.world * self.max_chunks * self.halves
            + (p * self.max_g + b) * self.cfg.world
            + q
    }
    fn abort_loc(&self, r: usize) -> usize {
        r * self.per_rank() + self.per_rank() - 1
    }

    fn epoch_of(&self, r: usize) -> u32 {
        self.ranks.get(r).map_or(0, |s| s.epoch.wrapping_add(1))
    }
    /// Buffer this call writes/reads: the one after the previous push call's.
    fn buf(&self, r: usize) -> usize {
        let last = self.ranks.get(r).map_or(0, |s| s.last);
        match self.cfg.weaken {
            Some(PushWeakening::TwoBuffers) => (last + 1) % 2,
            Some(PushWeakening::EpochIndexed) => self.epoch_of(r) as usize % 3,
            _ => (last + 1) % 3,
        }
    }
    /// Buffer this call clears: the previous push call's.
    fn clear_buf(&self, r: usize) -> usize {
        let last = self.ranks.get(r).map_or(0, |s| s.last);
        match self.cfg.weaken {
            Some(PushWeakening::TwoBuffers) => last % 2,
            Some(PushWeakening::EpochIndexed) => (self.epoch_of(r) as usize + 2) % 3,
            _ => last,
        }
    }
    fn is_barrier_call(&self, k: usize) -> bool {
        self.cfg.barrier_calls.contains(&k)
    }
    fn chunks(&self, r: usize, k: usize) -> usize {
        if self.is_barrier_call(k) {
            return 0;
        }
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
        if self.is_barrier_call(k) {
            return crate::call_sig(crate::Algo::OneShot, DType::F32, ReduceOp::Sum, k as u64);
        }
        push_call_sig(DType::F32, ReduceOp::Sum, self.chunks(r, k) as u64)
    }
    fn want(&self, r: usize) -> u64 {
        let k = self.ranks[r].call;
        flag_word(self.epoch_of(r), self.sig(r, k))
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
            acts.clear();
            for i in 0..self.blocks.len() {
                if self.blocks[i].state == BState::Running && self.productive(i) {
                    acts.push((i, None));
                }
            }
            lands.clear();
            self.mem.landable(&mut lands);
            acts.extend(lands.iter().map(|&(t, j)| (t, Some(j))));
            if acts.is_empty() {
                self.stuck();
                continue;
            }
            let pick = match self.cfg.scheduler {
                PushScheduler::Random => self.rng.below(acts.len()),
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
                Some((i, None)) => self.step_block(i),
                Some((t, Some(j))) => {
                    self.mem.land(t, j);
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
            for b in 0..grid {
                for b2 in 0..self.max_g {
                    let (t, t2) = (self.tid(r, b), self.tid(r, b2));
                    self.mem.sync_threads(t, t2);
                }
            }
            let st = &mut self.ranks[r];
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
            let kb = self.buf(r);
            self.log(
                r,
                None,
                format!("launch ({grid} blocks, epoch {e}, {chunks} chunks, buffer L[{kb}])"),
            );
        }
    }

    fn maybe_end_call(&mut self, r: usize) {
        let g = self.ranks[r].grid;
        if (0..g).any(|b| self.blocks[self.tid(r, b)].state == BState::Running) {
            return;
        }
        let failed = (0..g).any(|b| self.blocks[self.tid(r, b)].state == BState::Failed);
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

    /// Whether running block i now can change anything (a poll whose location still holds
    /// the sentinel, with no mismatch or abort visible, cannot).
    fn productive(&self, i: usize) -> bool {
        let r = i / self.max_g;
        let b = i % self.max_g;
        let blk = &self.blocks[i];
        let aborted = self.mem.newest(i, self.abort_loc(r)).0 != 0;
        let e = self.epoch_of(r);
        let want = self.want(r);
        let sig_says =
            |v: u64| v == want || flag_epoch(v) == e || (flag_epoch(v).wrapping_sub(e) as i32) > 0;
        match blk.pc {
            4 => {
                let n = self.chunks(r, self.ranks[r].call);
                let w = self.cfg.world;
                let Some(c) = self.nth_chunk(r, b, blk.cursor / w, n) else {
                    return true;
                };
                let q = blk.cursor % w;
                let kb = self.buf(r);
                let ready = (0..self.checked_halves())
                    .all(|h| self.mem.newest(i, self.slot_loc(r, kb, q, c, h)).0 != 0);
                let s = self
                    .mem
                    .newest(i, self.sig_loc(r, self.epoch_of(r) as usize % 2, b, q))
                    .0;
                ready || aborted || (sig_says(s) && s != want)
            }
            5 => {
                let q = blk.cursor;
                if q >= self.cfg.world {
                    return true;
                }
                let s = self.mem.newest(i, self.sig_loc(r, e as usize % 2, b, q)).0;
                aborted || sig_says(s)
            }
            _ => true,
        }
    }

    fn checked_halves(&self) -> usize {
        if self.cfg.weaken == Some(PushWeakening::TornStore) {
            1
        } else {
            self.halves
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

    /// Checks a signature word value `v` read from writer q; returns true when it failed.
    fn sig_error(&mut self, i: usize, q: usize, v: u64) -> bool {
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
        if (flag_epoch(v).wrapping_sub(e) as i32) > 0 {
            self.fail(i, ERR_SEQ_MISMATCH, q);
            return true;
        }
        false
    }

    fn abort_seen(&mut self, i: usize) -> bool {
        let r = i / self.max_g;
        let loc = self.abort_loc(r);
        let (a, _) = self.load(i, loc, MemOrder::Relaxed);
        if a != 0 {
            self.fail(i, ERR_PEER_ABORT, ((a >> 8) & 0x7f_ffff) as usize);
            return true;
        }
        false
    }

    fn step_block(&mut self, i: usize) {
        let r = i / self.max_g;
        let b = i % self.max_g;
        let k = self.ranks[r].call;
        let w = self.cfg.world;
        let e = self.epoch_of(r);
        let p = e as usize % 2;
        let cursor = self.blocks[i].cursor;
        match self.blocks[i].pc {
            0 => {
                // Prologue: exit if aborted (or this rank's comm is poisoned by an
                // earlier error: the host refuses the call); record this call's size.
                let poisoned = self.ranks[r].error;
                if poisoned != 0 {
                    self.fail(i, poisoned, r);
                    return;
                }
                if self.abort_seen(i) {
                    return;
                }
                if !self.is_barrier_call(k) {
                    let kb = self.buf(r);
                    let n = self.chunks(r, k);
                    if let Some(u) = self.ranks[r].used.get_mut(kb) {
                        *u = n;
                    }
                }
                self.next_step(i);
            }
            1 => {
                // PushData: one (chunk, destination, half) store per action.
                let n = self.chunks(r, k);
                let per = w * self.halves;
                let Some(c) = self.nth_chunk(r, b, cursor / per, n) else {
                    self.next_step(i);
                    return;
                };
                let q = (cursor % per) / self.halves;
                let h = cursor % self.halves;
                let kb = self.buf(r);
                let loc = self.slot_loc(q, kb, r, c, h);
                self.mem.store(
                    i,
                    loc,
                    half_value(r, k, c, h),
                    tag(r, k, WHAT_DATA),
                    MemOrder::Relaxed,
                );
                self.blocks[i].cursor += 1;
            }
            2 => {
                // PushSig: release the signature word at every rank.
                if cursor >= w {
                    self.next_step(i);
                    return;
                }
                let val = self.want(r);
                let loc = self.sig_loc(cursor, p, b, r);
                self.mem.store(i, loc, val, 0, MemOrder::Release);
                self.blocks[i].cursor += 1;
            }
            4 => self.poll(i),
            5 => {
                // SigCheck.
                if cursor >= w {
                    self.next_step(i);
                    return;
                }
                let loc = self.sig_loc(r, p, b, cursor);
                let (v, _) = self.load(i, loc, MemOrder::Acquire);
                if v == self.want(r) {
                    self.blocks[i].cursor += 1;
                    return;
                }
                if self.sig_error(i, cursor, v) {
                    return;
                }
                self.abort_seen(i);
            }
            3 => {
                // ClearOld: re-arm call e-1's buffer over the chunks it used.
                if self.cfg.weaken == Some(PushWeakening::NoClear) || self.is_barrier_call(k) {
                    self.next_step(i);
                    return;
                }
                let kc = self.clear_buf(r);
                let n = self.ranks[r].used.get(kc).copied().unwrap_or(0);
                let per = w * self.halves;
                let Some(c) = self.nth_chunk(r, b, cursor / per, n) else {
                    self.next_step(i);
                    return;
                };
                let q = (cursor % per) / self.halves;
                let h = cursor % self.halves;
                let loc = self.slot_loc(r, kc, q, c, h);
                self.mem
                    .store(i, loc, 0, tag(r, k, WHAT_CLEAR), MemOrder::Relaxed);
                self.blocks[i].cursor += 1;
            }
            6 => {
                let kb = self.buf(r);
                let push = !self.is_barrier_call(k);
                let st = &mut self.ranks[r];
                st.done += 1;
                if st.done == st.grid {
                    st.done = 0;
                    st.epoch = st.epoch.wrapping_add(1);
                    if push {
                        st.last = kb;
                    }
                }
                self.next_step(i);
            }
            _ => {}
        }
    }

    /// PollReduce: cursor = chunk index * W + writer.
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
        let kb = self.buf(r);
        let mut vals = Vec::with_capacity(self.halves);
        let mut tags = Vec::with_capacity(self.halves);
        for h in 0..self.halves {
            let loc = self.slot_loc(r, kb, q, c, h);
            let (v, t) = self.load(i, loc, MemOrder::Relaxed);
            vals.push(v);
            tags.push(t);
        }
        let ready = vals.iter().take(self.checked_halves()).all(|&v| v != 0);
        if !ready {
            // Not yet: watch the writer's signature word (mismatch) and the abort word.
            let p = self.epoch_of(r) as usize % 2;
            let loc = self.sig_loc(r, p, b, q);
            let (s, _) = self.load(i, loc, MemOrder::Relaxed);
            if self.sig_error(i, q, s) {
                return;
            }
            self.abort_seen(i);
            return;
        }
        let want = tag(q, k, WHAT_DATA);
        if let Some(&bad) = tags.iter().find(|&&t| t != want) {
            let how = if bad != 0 && bad & 0xff == WHAT_DATA {
                "stale data of an earlier call"
            } else {
                "a sentinel half (torn store)"
            };
            let text = format!(
                "PollReduce read r{r}.L[{kb}].slot[{q}] chunk {c}: found {}, expected {} ({how})",
                describe_tag(bad),
                describe_tag(want)
            );
            self.log(r, Some(b), format!("!! {text}"));
            self.violation(
                ViolationKind::StaleRead,
                format!("r{r} b{b} call {k}: {text}"),
            );
        }
        let v = chunk_value(&vals);
        if let Some(o) = self.ranks[r].out.get_mut(c) {
            *o = Some(match (q, *o) {
                (0, _) | (_, None) => v,
                (_, Some(a)) => mix(a, v),
            });
        }
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

    fn reference(&self, k: usize, c: usize) -> u64 {
        let mut acc = None;
        for q in 0..self.cfg.world {
            let halves: Vec<u64> = (0..self.halves).map(|h| half_value(q, k, c, h)).collect();
            let v = chunk_value(&halves);
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
            let results = self.ranks[r].results.clone();
            for (k, res) in results.iter().enumerate() {
                let faulty = match fault {
                    Some(PushFault::Kill { call, .. }) | Some(PushFault::Mismatch { call, .. }) => {
                        k >= call
                    }
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
                            Some(PushFault::Mismatch { call, .. }) => {
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
            if !self.ranks[r].killed
                && self.ranks[r].results.len() < self.cfg.bytes.len()
                && !self.ranks[r]
                    .results
                    .iter()
                    .any(|o| matches!(o, CallOutcome::Err(_)))
            {
                self.violation(
                    ViolationKind::Deadlock,
                    format!("r{r} never finished call {}", self.ranks[r].results.len()),
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
    }

    #[test]
    fn one_rank_and_tags() {
        let r = check_push(&PushConfig::new(1, vec![64, 16, 48, 4]), 5, 3).unwrap();
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(describe_tag(tag(1, 2, WHAT_DATA)), "r1 call 2 data");
        assert_ne!(half_value(0, 0, 0, 0), 0);
    }
}
