//! One schedule's execution state ([`Run`]): ranks, blocks, the memory model, the
//! location layout and the main loop. The steps live in `steps`, call launch/end and the
//! enabled-set bookkeeping in `calls`, the verdicts and trace rendering in `verdict`.

mod calls;
mod steps;
mod verdict;

use crate::model::Memory;
use crate::program::{self, PeerSet, Protocol, Step, ZcForm, CUBE_MESH_8};
use crate::sched::Event as SchedEvent;
use crate::types::{call_sig, Algo, BarrierKind, DType, ReduceOp, CHUNK_BYTES, ERR_PEER_ABORT};

use super::{
    describe_tag, fold_over, input_value, mix, tag, Decision, Fault, SimConfig, Violation,
    ViolationKind, Weakening, WHAT_INPUT, WHAT_PARTIAL, WHAT_REDUCED,
};
use crate::sched::{Chooser, Menu, Pick};

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
pub(super) fn replay_pick<T>(
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

/// One schedule's state. Built once per [`check`](crate::check::check) and reset by [`Run::begin`] for each
/// schedule, so the hot loop does not allocate.
pub(super) struct Run<'a> {
    pub(super) cfg: &'a SimConfig,
    steps_prog: Vec<Step>,
    hcm: [[usize; 4]; 8],
    /// Words of each rank's symmetric-tensor region (push-form zero-copy two-shot only:
    /// `max_chunks`; else 0, and the tensor is the start of half 0).
    tensor_locs: usize,
    mem: Memory,
    ranks: Vec<RankState>,
    blocks: Vec<Block>,
    max_g: usize,
    max_chunks: usize,
    pub(super) chooser: Chooser,
    pub(super) steps: u64,
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
    pub(super) fn new(cfg: &'a SimConfig) -> Self {
        let max_g = cfg.blocks.iter().copied().max().unwrap_or(1);
        let max_chunks = (cfg.bytes + 4).div_ceil(CHUNK_BYTES);
        let n_threads = cfg.world * max_g;
        let zcp = Self::is_zcp(cfg);
        let tensor_locs = if zcp { max_chunks } else { 0 };
        let n_locs = cfg.world
            * (Self::data_locs(max_chunks, cfg.world)
                + Self::flag_locs(max_g, cfg.world)
                + 1
                + tensor_locs);
        let mut steps_prog = if zcp {
            program::inc::two_shot_zcp()
        } else if cfg.zero_copy {
            program::zero_copy_steps(cfg.protocol, cfg.algo)
        } else {
            program::steps(cfg.protocol, cfg.algo)
        };
        if cfg.weaken == Some(Weakening::ScatterAfterBarrier) {
            // Swap the Scatter with the barrier that follows it.
            if let Some(i) = steps_prog.iter().position(|&s| s == Step::Scatter) {
                if matches!(steps_prog.get(i + 1), Some(Step::Barrier { .. })) {
                    steps_prog.swap(i, i + 1);
                }
            }
        }
        Run {
            cfg,
            steps_prog,
            hcm: cfg.hcm.unwrap_or(CUBE_MESH_8),
            tensor_locs,
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
    pub(super) fn begin(&mut self, chooser: Chooser, stop_on: Option<ViolationKind>) {
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

    // ---- location layout: per rank [data: parity(2) x half][flags: 3 x 2 x G x W][abort]
    // [tensor: `tensor_locs`]; a half is 2 x chunks + W words: buf at 0 and the hcm partial
    // at `chunks` (one-shot, hcm, seed, and the pull-form zero-copy two-shot's tensor in
    // half 0), or the two-shot receive areas R[s] at s x S and the gather area G at W x S
    // (W x S <= chunks + W - 1). The push-form zero-copy two-shot's tensor is the region
    // after the abort word (its halves hold the receive areas).
    fn half_locs(chunks: usize, w: usize) -> usize {
        2 * chunks + w
    }
    fn data_locs(chunks: usize, w: usize) -> usize {
        2 * Self::half_locs(chunks, w)
    }
    fn flag_locs(g: usize, w: usize) -> usize {
        3 * 2 * g * w
    }
    fn rank_locs(&self) -> usize {
        Self::data_locs(self.max_chunks, self.cfg.world)
            + Self::flag_locs(self.max_g, self.cfg.world)
            + 1
            + self.tensor_locs
    }
    fn rank_base(&self, r: usize) -> usize {
        r * self.rank_locs()
    }
    /// Chunk c of rank r's symmetric tensor (zero-copy two-shot): its own region (push
    /// form), else the start of half 0.
    fn tensor_loc(&self, r: usize, c: usize) -> usize {
        if self.tensor_locs > 0 {
            self.abort_loc(r) + 1 + c.min(self.tensor_locs - 1)
        } else {
            self.data_loc(r, 0, false, c)
        }
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

    /// The push form of the zero-copy two-shot ([`program::inc::two_shot_zcp`]).
    fn is_zcp(cfg: &SimConfig) -> bool {
        cfg.zero_copy && cfg.algo == Algo::TwoShot && cfg.zc_form == ZcForm::Push
    }
    fn zcp(&self) -> bool {
        self.tensor_locs > 0
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
        if self.is_seed()
            || (self.cfg.zero_copy && !self.zcp())
            || self.cfg.weaken == Some(Weakening::NoRotation)
        {
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
    pub(super) fn execute(&mut self) -> Vec<Violation> {
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
}
