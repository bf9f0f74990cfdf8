//! The checker: executes a protocol's step lists for every rank and block under a
//! scheduler and the weak-memory [`model`](crate::model), and checks every run.
//!
//! Checks: results equal the reference fold (exactly); no block reads peer data that is
//! not the current call's (`stale-read`, from data tags, even when values match); no
//! deadlock (all live blocks waiting, no store left to land); calls that disagree are
//! detected (`seq-mismatch`); a killed rank makes every other rank stop with an error
//! (`timeout`). A violation carries a readable trace and the seed that reproduces it.

use std::fmt::Write as _;

use crate::error::SimError;
use crate::model::{MemOrder, Memory};
use crate::program::{self, PeerSet, Protocol, Step, CUBE_MESH_8};
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
}

/// How schedules are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Scheduler {
    /// Seeded random interleavings and random (allowed) stale values.
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
    /// Zero-copy variant (single buffer, end barrier). one-shot/two-shot only.
    pub zero_copy: bool,
    /// Injected fault.
    pub fault: Option<Fault>,
    /// Scheduler.
    pub scheduler: Scheduler,
    /// Deliberately weakened protocol (mutation testing of the checker).
    pub weaken: Option<Weakening>,
    /// Step budget of one schedule; exceeding it is a `timeout` violation (livelock).
    pub max_steps: usize,
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
            max_steps: 200_000,
        }
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
        if self.zero_copy && self.algo == Algo::Hcm {
            return bad("the zero-copy variant exists for one-shot and two-shot only".into());
        }
        if let Some(t) = &self.hcm {
            crate::cpu::validate_hcm(t)?;
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

/// One violation found in one schedule.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Violation {
    /// What went wrong.
    pub kind: ViolationKind,
    /// One-line description.
    pub message: String,
    /// Seed of the schedule (Random/Adversarial: `check(cfg, 1, seed)` replays it);
    /// Exhaustive: the schedule's index.
    pub seed: u64,
    /// The interleaving, one event per line (rank/block/call/step/value).
    pub trace: Vec<String>,
}

impl Violation {
    /// The trace as one printable block.
    pub fn render(&self) -> String {
        let mut s = format!("{}: {}\n", self.kind.name(), self.message);
        for l in &self.trace {
            let _ = writeln!(s, "  {l}");
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
    /// Total scheduler steps taken.
    pub steps: u64,
}

const KEEP: usize = 64;

/// Runs `schedules` schedules of `cfg` starting at `seed` (schedule i uses seed + i) and
/// reports every violation found.
pub fn check(cfg: &SimConfig, schedules: u64, seed: u64) -> Result<Report, SimError> {
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
    for i in 0..schedules {
        let s = seed.wrapping_add(i);
        let chooser = match cfg.scheduler {
            Scheduler::Random => Chooser::Random(Rng::new(s)),
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
        };
        let mut run = Run::new(cfg, chooser)?;
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
            if report.violations.len() < KEEP {
                report.violations.push(v);
            }
        }
        if let Chooser::Exhaustive { record, .. } = run.chooser {
            if !dfs.advance(record) {
                break;
            }
        }
    }
    Ok(report)
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

/// xorshift64* seeded through splitmix64.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

enum Chooser {
    Random(Rng),
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

    /// Picks an action; `owner(i)` = (rank, block or None for a store landing).
    fn action(&mut self, n: usize, owner: impl Fn(usize) -> (usize, Option<usize>)) -> usize {
        match self {
            Chooser::Random(rng) => rng.below(n),
            Chooser::Adversarial {
                rng,
                slow_rank,
                stall,
            } => {
                let fast: Vec<usize> = (0..n)
                    .filter(|&i| {
                        let (r, b) = owner(i);
                        r != *slow_rank && !(b.is_some() && *stall == b.map(|b| (r, b)))
                    })
                    .collect();
                if fast.is_empty() {
                    rng.below(n)
                } else {
                    fast.get(rng.below(fast.len())).copied().unwrap_or(0)
                }
            }
            Chooser::Exhaustive {
                script,
                pos,
                depth,
                record,
            } => Self::exhaustive(script, pos, *depth, record, n),
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
            Chooser::Exhaustive {
                script,
                pos,
                depth,
                record,
            } => Self::exhaustive(script, pos, *depth, record, n),
        }
    }
}

// ---------------------------------------------------------------- data tags and values

const WHAT_INPUT: u64 = 1;
const WHAT_REDUCED: u64 = 2;
const WHAT_PARTIAL: u64 = 3;

fn tag(rank: usize, call: usize, what: u64) -> u64 {
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
fn mix(acc: u64, x: u64) -> u64 {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BState {
    /// Not launched in the rank's current call.
    Idle,
    Running,
    Finished,
    Failed,
}

#[derive(Clone, Debug)]
struct Block {
    state: BState,
    /// Step index in the program.
    pc: usize,
    /// Position inside the step (chunk / peer index).
    cursor: usize,
    /// Barrier: signalling (false) or waiting (true).
    waiting: bool,
}

#[derive(Clone, Debug)]
enum CallOutcome {
    Ok(Vec<u64>),
    Err(u32),
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
    out: Vec<Option<u64>>,
    results: Vec<CallOutcome>,
}

/// Event kinds of the trace (formatted only when a violation is reported).
#[derive(Clone, Debug)]
enum Ev {
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
}

enum Action {
    Block(usize),
    Land(usize, usize),
}

impl<'a> Run<'a> {
    fn new(cfg: &'a SimConfig, chooser: Chooser) -> Result<Self, SimError> {
        let max_g = cfg.blocks.iter().copied().max().unwrap_or(1);
        let max_chunks = (cfg.bytes + 4).div_ceil(CHUNK_BYTES);
        let n_threads = cfg.world * max_g;
        let n_locs =
            cfg.world * (Self::data_locs(max_chunks) + Self::flag_locs(max_g, cfg.world) + 1);
        let mut ranks = vec![
            RankState {
                call: 0,
                in_call: false,
                killed: false,
                epoch: 0,
                done: 0,
                grid: 0,
                error: 0,
                out: Vec::new(),
                results: Vec::new(),
            };
            cfg.world
        ];
        if let Some(Fault::EpochSkew { rank, delta }) = cfg.fault {
            if let Some(r) = ranks.get_mut(rank) {
                r.epoch = delta;
            }
        }
        Ok(Run {
            cfg,
            steps_prog: program::steps(cfg.protocol, cfg.algo),
            hcm: cfg.hcm.unwrap_or(CUBE_MESH_8),
            mem: Memory::new(n_locs, n_threads),
            ranks,
            blocks: vec![
                Block {
                    state: BState::Idle,
                    pc: 0,
                    cursor: 0,
                    waiting: false,
                };
                n_threads
            ],
            max_g,
            max_chunks,
            chooser,
            steps: 0,
            events: Vec::new(),
            violations: Vec::new(),
            stop: false,
            timeouts_fired: false,
        })
    }

    // ---- location layout: per rank [data: parity(2) x region(2) x chunks][flags: 3 x 2 x G x W][abort]
    fn data_locs(chunks: usize) -> usize {
        4 * chunks
    }
    fn flag_locs(g: usize, w: usize) -> usize {
        3 * 2 * g * w
    }
    fn rank_base(&self, r: usize) -> usize {
        r * (Self::data_locs(self.max_chunks) + Self::flag_locs(self.max_g, self.cfg.world) + 1)
    }
    fn data_loc(&self, r: usize, parity: usize, partial: bool, c: usize) -> usize {
        self.rank_base(r) + ((parity * 2 + usize::from(partial)) * self.max_chunks + c)
    }
    fn flag_loc(&self, r: usize, kind: BarrierKind, parity: usize, b: usize, src: usize) -> usize {
        let k = match kind {
            BarrierKind::Start => 0,
            BarrierKind::Mid => 1,
            BarrierKind::End => 2,
        };
        self.rank_base(r)
            + Self::data_locs(self.max_chunks)
            + ((k * 2 + parity) * self.max_g + b) * self.cfg.world
            + src
    }
    fn abort_loc(&self, r: usize) -> usize {
        self.rank_base(r)
            + Self::data_locs(self.max_chunks)
            + Self::flag_locs(self.max_g, self.cfg.world)
    }
    fn tid(&self, r: usize, b: usize) -> usize {
        r * self.max_g + b
    }

    fn is_seed(&self) -> bool {
        self.cfg.protocol == Protocol::Seed
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
    fn owner_block(&self, c: usize, grid: usize) -> usize {
        (c / self.cfg.threads_per_block) % grid
    }
    fn my_chunks(&self, r: usize, b: usize) -> Vec<usize> {
        let k = self.ranks.get(r).map_or(0, |s| s.call);
        let chunks = self.count(r, k).1;
        let g = self.ranks.get(r).map_or(1, |s| s.grid.max(1));
        (0..chunks)
            .filter(|&c| self.owner_block(c, g) == b)
            .collect()
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
        let mut actions: Vec<Action> = Vec::new();
        let mut lands = Vec::new();
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
            if self.steps > self.cfg.max_steps as u64 {
                self.violation(
                    ViolationKind::Timeout,
                    format!("step budget of {} exhausted (livelock)", self.cfg.max_steps),
                    None,
                );
                break;
            }
            actions.clear();
            for i in 0..self.blocks.len() {
                if self.blocks[i].state == BState::Running && self.productive(i) {
                    actions.push(Action::Block(i));
                }
            }
            lands.clear();
            self.mem.landable(&mut lands);
            actions.extend(lands.iter().map(|&(t, i)| Action::Land(t, i)));
            if actions.is_empty() {
                self.stuck();
                continue;
            }
            let g = self.max_g;
            let owners: Vec<(usize, Option<usize>)> = actions
                .iter()
                .map(|a| match *a {
                    Action::Block(i) => (i / g, Some(i % g)),
                    Action::Land(t, _) => (t / g, None),
                })
                .collect();
            let pick = self.chooser.action(actions.len(), |i| {
                owners.get(i).copied().unwrap_or((0, None))
            });
            match actions.get(pick) {
                Some(&Action::Block(i)) => self.step_block(i),
                Some(&Action::Land(t, i)) => {
                    self.mem.land(t, i);
                }
                None => break,
            }
        }
        if !self.stop {
            self.final_checks();
        }
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
            // Stream order: the new kernel happens after every block of the previous one.
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
                    waiting: false,
                };
            }
            let epoch = self.epoch_of(r);
            self.log(r, None, Ev::Launch { grid, epoch });
        }
    }

    /// Ends rank r's call when all its blocks are done.
    fn maybe_end_call(&mut self, r: usize) {
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
        let st = &mut self.ranks[r];
        let outcome = if failed || st.error != 0 {
            CallOutcome::Err(if st.error != 0 {
                st.error
            } else {
                ERR_PEER_ABORT
            })
        } else {
            CallOutcome::Ok(st.out.iter().map(|v| v.unwrap_or(0)).collect())
        };
        let ok = matches!(outcome, CallOutcome::Ok(_));
        st.results.push(outcome);
        self.log(r, None, Ev::Ended { ok });
        let st = &mut self.ranks[r];
        st.in_call = false;
        st.call += 1;
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

    /// Whether running block i now can change anything.
    fn productive(&self, i: usize) -> bool {
        let Some(step) = self.cur_step(i) else {
            return true;
        };
        let b = &self.blocks[i];
        let Some((kind, set)) = Self::barrier_of(step) else {
            return true;
        };
        if !b.waiting || (step == Step::EndBarrier && !self.cfg.zero_copy) {
            return true;
        }
        let r = i / self.max_g;
        let blk = i % self.max_g;
        let Some(q) = self.nth_member(r, set, b.cursor) else {
            return true;
        };
        if self.is_seed() {
            let loc = self.seed_sem_loc(r, kind, blk, q);
            return self.mem.newest(i, loc).0 > 0;
        }
        let loc = self.flag_loc(r, kind, self.parity(r), blk, q);
        let v = self.mem.newest(i, loc).0;
        let e = self.epoch_of(r);
        let want = flag_word(e, self.sig(r, self.ranks[r].call));
        v == want
            || flag_epoch(v) == e
            || (flag_epoch(v).wrapping_sub(e) as i32) > 0
            || self.mem.newest(i, self.abort_loc(r)).0 != 0
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
        let n = self.mem.load_choices(i, loc, order);
        let pick = self.chooser.value(n);
        self.mem.load(i, loc, order, pick)
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
        let order = if self.is_seed() {
            MemOrder::NonCoherent
        } else {
            MemOrder::Relaxed
        };
        let loc = self.data_loc(q, self.data_parity(r), partial, c);
        let (val, t) = self.pick_load(i, loc, order);
        if t != want {
            let k = self.ranks[r].call;
            let how = if t != 0 && ((t >> 8) & 0xffff_ffff).wrapping_sub(1) > k as u64 {
                "overwritten by a later call"
            } else {
                "stale: the current call's data is not (yet) visible"
            };
            let text = format!(
                "{what} read r{q}.{} chunk {c}: found {}, expected {} ({how})",
                if partial { "partial" } else { "buf" },
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
                        self.fail(i, code, ((a >> 8) & 0xff_ffff) as usize);
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
            Step::Barrier { .. } | Step::EndBarrier => self.step_barrier(i, step),
            Step::ReduceAll => {
                let Some(c) = self.nth_chunk(r, b, self.blocks[i].cursor) else {
                    self.next_step(i);
                    return;
                };
                let order: Vec<usize> = if self.is_seed() {
                    (0..w).map(|j| (r + j) % w).collect()
                } else {
                    (0..w).collect()
                };
                let mut vals = Vec::with_capacity(w);
                for q in order {
                    let want = self.expected_tag(q, r, WHAT_INPUT);
                    vals.push(self.read_data(i, q, false, c, want, "ReduceAll"));
                }
                if let Some(o) = self.ranks[r].out.get_mut(c) {
                    *o = Some(fold_over(vals.into_iter()));
                }
                self.blocks[i].cursor += 1;
            }
            Step::ReduceSlice => {
                let s = self.slice_len(r);
                let mine: Vec<usize> = self
                    .my_chunks(r, b)
                    .into_iter()
                    .filter(|c| c / s == r)
                    .collect();
                let Some(&c) = mine.get(self.blocks[i].cursor) else {
                    self.next_step(i);
                    return;
                };
                let order: Vec<usize> = if self.is_seed() {
                    (0..w).map(|j| (r + j) % w).collect()
                } else {
                    (0..w).collect()
                };
                let mut vals = Vec::with_capacity(w);
                for q in order {
                    let want = self.expected_tag(q, r, WHAT_INPUT);
                    vals.push(self.read_data(i, q, false, c, want, "ReduceSlice"));
                }
                let v = fold_over(vals.into_iter());
                let loc = self.data_loc(r, dp, false, c);
                self.mem
                    .store(i, loc, v, tag(r, k, WHAT_REDUCED), MemOrder::Relaxed);
                if let Some(o) = self.ranks[r].out.get_mut(c) {
                    *o = Some(v);
                }
                self.blocks[i].cursor += 1;
            }
            Step::Gather => {
                let s = self.slice_len(r);
                let mine: Vec<usize> = self
                    .my_chunks(r, b)
                    .into_iter()
                    .filter(|c| c / s != r)
                    .collect();
                let Some(&c) = mine.get(self.blocks[i].cursor) else {
                    self.next_step(i);
                    return;
                };
                let q = (c / s).min(w - 1);
                let want = self.expected_tag(q, r, WHAT_REDUCED);
                let v = self.read_data(i, q, false, c, want, "Gather");
                if let Some(o) = self.ranks[r].out.get_mut(c) {
                    *o = Some(v);
                }
                self.blocks[i].cursor += 1;
            }
            Step::QuadReduce => {
                let Some(c) = self.nth_chunk(r, b, self.blocks[i].cursor) else {
                    self.next_step(i);
                    return;
                };
                let row = self.hcm.get(r).copied().unwrap_or([0; 4]);
                let mut quad = vec![r, row[0], row[1], row[2]];
                if !self.is_seed() {
                    quad.sort_unstable();
                }
                let mut vals = Vec::with_capacity(4);
                for q in quad {
                    let want = self.expected_tag(q, r, WHAT_INPUT);
                    vals.push(self.read_data(i, q, false, c, want, "QuadReduce"));
                }
                let v = fold_over(vals.into_iter());
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
                let val = flag_word(e, self.sig(r, self.ranks[r].call));
                let loc = self.flag_loc(q, kind, self.parity(r), b, r);
                let order = if self.cfg.weaken == Some(Weakening::RelaxedFlags) {
                    MemOrder::Relaxed
                } else {
                    MemOrder::Release
                };
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
        let want = flag_word(e, self.sig(r, self.ranks[r].call));
        let loc = self.flag_loc(r, kind, self.parity(r), b, q);
        let order = if self.cfg.weaken == Some(Weakening::RelaxedFlags) {
            MemOrder::Relaxed
        } else {
            MemOrder::Acquire
        };
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
            self.fail(i, ERR_PEER_ABORT, ((a >> 8) & 0xff_ffff) as usize);
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
        let pick = self.chooser.action(waiting.len(), |j| {
            let i = waiting.get(j).copied().unwrap_or(0);
            (i / self.max_g, Some(i % self.max_g))
        });
        let i = waiting.get(pick).copied().unwrap_or(0);
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
        });
    }

    fn render_trace(&self, focus: Option<(usize, usize)>) -> Vec<String> {
        const MAX_LINES: usize = 60;
        let keep = |e: &Event| focus.is_none_or(|(a, b)| e.rank == a || e.rank == b);
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

    fn final_checks(&mut self) {
        let fault = self.cfg.fault;
        for r in 0..self.cfg.world {
            let results = self.ranks[r].results.clone();
            for (k, res) in results.iter().enumerate() {
                match res {
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
                            continue;
                        }
                        for (c, &v) in out.iter().enumerate() {
                            let want = self.reference(r, k, c);
                            if v != want {
                                self.violation(
                                    ViolationKind::WrongResult,
                                    format!(
                                        "r{r} call {k} chunk {c}: got {v:#018x}, reference {want:#018x}"
                                    ),
                                    None,
                                );
                                break;
                            }
                        }
                    }
                    CallOutcome::Err(code) => {
                        let expected = match fault {
                            Some(Fault::Kill { call, .. }) => {
                                k >= call && (*code == ERR_TIMEOUT || *code == ERR_PEER_ABORT)
                            }
                            Some(Fault::Mismatch { call, .. }) => k >= call,
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
            }
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
