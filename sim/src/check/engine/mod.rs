//! The engine: one schedule of a protocol [`Family`] under a scheduler
//! ([`crate::sched`]) and the weak-memory [`model`](crate::model) ([`Run`]).
//!
//! The engine owns what every family shares: ranks and blocks, calls launched in stream
//! order (kills, epoch skew), the enabled set and its incremental upkeep, the scheduler's
//! picks and their recorded [`Decision`]s (replay, shrinking), bounded waits and
//! deadlocks, failures and the abort word, prologue and epilogue, barrier-flag and abort
//! checks, tag-checked loads, the trace, and the oracle's verdict on every call
//! (`super::oracle`). A family brings its step type, memory layout, steps, "can this
//! waiting block move" answer and the oracle's expectations.
//!
//! Layout: this file (the [`Family`] trait, [`Setup`], [`Run`], the main loop), `calls`
//! (launch and end of calls, steps, failures, the enabled set, stuck runs, shared step
//! helpers), `trace` (events, violations, trace rendering).

mod calls;
mod trace;

use std::time::Duration;

use crate::model::Memory;
use crate::program::Protocol;
use crate::sched::{Chooser, Event as SchedEvent, Menu, Pick};
use crate::types::Algo;

use super::oracle::{CallOutcome, Fate};
use super::{Decision, RandomMode, Scheduler, Violation, ViolationKind};
pub(crate) use trace::Ev;
use trace::Event;

/// A protocol family the engine runs: the barrier (pull) protocols, the LL push protocol.
///
/// Static parts are methods on the family's own value (its configuration and layout);
/// parts that act on a run are associated functions over [`Run<Self>`], so a family's
/// steps use the engine's helpers (`next_step`, `fail`, `pick_load`, ...) directly.
pub(crate) trait Family: Clone + Sized {
    /// One step of the family's programs (every variant is executed: no step of another
    /// family).
    type Step: Copy;
    /// Trace events of the family's own ([`Ev::Note`]).
    type Note: Clone + std::fmt::Debug;

    /// The steps of call `k` (the same on every rank).
    fn program(&self, k: usize) -> &[Self::Step];
    /// Memory locations of all ranks.
    fn locs(&self) -> usize;
    /// Rank r's abort word.
    fn abort_loc(&self, r: usize) -> usize;
    /// Whose "can it move" answer depends on location `loc`.
    fn watchers(&self, loc: usize) -> Watch;
    /// Chunks rank r handles in call k.
    fn chunks(&self, r: usize, k: usize) -> usize;
    /// Rank r's `call_sig` of call k.
    fn sig(&self, r: usize, k: usize) -> u32;
    /// Whether finishing `step` is traced.
    fn traced(&self, step: Self::Step) -> bool;
    /// Trace name of step `pc` of call k.
    fn step_name(&self, k: usize, pc: usize) -> String;
    /// Trace text of rank r's launch of call k.
    fn launch_text(&self, r: usize, k: usize, grid: usize, epoch: u32) -> String;
    /// Trace text of a family note.
    fn note_text(&self, note: &Self::Note) -> String;
    /// Reference value of chunk c of call k on rank r.
    fn reference(&self, r: usize, k: usize, c: usize) -> u64;
    /// What the injected fault makes of call k.
    fn fate(&self, k: usize) -> Fate;
    /// Whether call k may end with error `code` (under the injected fault).
    fn error_expected(&self, k: usize, code: u32) -> bool;

    /// The family's part of rank r launching call k with `grid` blocks (after stream
    /// order is established, before its blocks start).
    fn launch(_run: &mut Run<Self>, _r: usize, _k: usize, _grid: usize) {}
    /// Executes one action of block i, which is at `step`.
    fn step(run: &mut Run<Self>, i: usize, step: Self::Step);
    /// Whether running block i can change anything now (a waiting block whose poll would
    /// only read what it read before cannot).
    fn productive(run: &Run<Self>, i: usize) -> bool;
    /// Rank r's kernel completed without error (before its outcome is checked).
    fn kernel_done(_run: &mut Run<Self>, _r: usize) {}
    /// The peer a stuck block i waits on.
    fn waits_on(run: &Run<Self>, i: usize) -> usize;
}

/// Whose [`Family::productive`] answer a landed write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Watch {
    /// Nobody polls it (data).
    Nobody,
    /// One block (thread id).
    Block(usize),
    /// Every block of a rank.
    Rank(usize),
}

/// The settings of a scenario the engine itself uses, derived by each family from its
/// configuration.
#[derive(Clone, Debug)]
pub(crate) struct Setup {
    /// For the report.
    pub(crate) protocol: Protocol,
    /// For the report.
    pub(crate) algo: Algo,
    pub(crate) world: usize,
    pub(crate) calls: usize,
    /// Blocks per call (cycled).
    pub(crate) blocks: Vec<usize>,
    pub(crate) threads_per_block: usize,
    pub(crate) scheduler: Scheduler,
    pub(crate) random: RandomMode,
    /// Step budget of one schedule.
    pub(crate) budget: u64,
    pub(crate) shrink_runs: usize,
    pub(crate) shrink_time: Duration,
    /// (rank, first call it misses).
    pub(crate) kill: Option<(usize, usize)>,
    /// (rank, epochs ahead).
    pub(crate) skew: Option<(usize, u32)>,
    /// A fault is injected: stuck blocks time out instead of deadlocking.
    pub(crate) faulty: bool,
    /// The seed protocol: no abort word, no epochs, unbounded waits, `.nc` data loads.
    pub(crate) seed: bool,
}

/// A simulated block's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BState {
    /// Not launched in the rank's current call.
    Idle,
    Running,
    Finished,
    Failed,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Block {
    pub(crate) state: BState,
    /// Step index in the program.
    pub(crate) pc: usize,
    /// Position inside the step (its meaning is the step's).
    pub(crate) cursor: usize,
    /// Barrier: signalling (false) or waiting (true).
    pub(crate) waiting: bool,
    /// Push family: bit q is set once writer q's header line of this call was accepted
    /// (both halves this call's epoch and signature) while polling in PollReduce, so
    /// HdrCheck does not read it again. Cleared at every launch.
    pub(crate) hdr_ok: u64,
}

impl Block {
    const IDLE: Block = Block {
        state: BState::Idle,
        pc: 0,
        cursor: 0,
        waiting: false,
        hdr_ok: 0,
    };
}

#[derive(Clone, Debug)]
pub(crate) struct RankState {
    /// Index of the current call (== calls when all done).
    pub(crate) call: usize,
    pub(crate) in_call: bool,
    pub(crate) killed: bool,
    pub(crate) epoch: u32,
    pub(crate) done: usize,
    pub(crate) grid: usize,
    /// First error code recorded on this rank (0 = none).
    pub(crate) error: u32,
    /// The current call's `call_sig` (set at launch).
    pub(crate) sig: u32,
    pub(crate) out: Vec<Option<u64>>,
    pub(crate) results: Vec<CallOutcome>,
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

#[derive(Clone, Copy, Debug)]
enum Action {
    Block(usize),
    Land(usize, usize),
}

/// One schedule's state. Built once per check and reset by [`Run::begin`] for each
/// schedule, so the hot loop does not allocate.
pub(crate) struct Run<F: Family> {
    pub(crate) fam: F,
    pub(crate) set: Setup,
    pub(crate) mem: Memory,
    pub(crate) ranks: Vec<RankState>,
    pub(crate) blocks: Vec<Block>,
    /// Blocks per rank (threads are `rank * max_g + block`).
    pub(crate) max_g: usize,
    pub(crate) chooser: Chooser,
    pub(crate) steps: u64,
    events: Vec<Event<F::Note>>,
    violations: Vec<Violation>,
    pub(crate) stop: bool,
    /// The decisions taken so far (replayable with [`Chooser::Replay`]).
    trail: Vec<Decision>,
    /// Stop at the first violation of this kind (shrinking).
    stop_on: Option<ViolationKind>,
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

/// Replay: the next scripted action decision that `enabled` accepts (returns what it
/// made of it); decisions not enabled now, and their values, are dropped. None when the
/// script is used up (the caller then takes the first enabled action).
pub(crate) fn replay_pick<T>(
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

impl<F: Family> Run<F> {
    /// A run of family `fam` under `set`; call [`Run::begin`] before executing.
    pub(crate) fn new(fam: F, set: Setup) -> Self {
        let max_g = set.blocks.iter().copied().max().unwrap_or(1);
        let n_threads = set.world * max_g;
        Run {
            mem: Memory::new(fam.locs(), n_threads),
            fam,
            ranks: vec![RankState::INIT; set.world],
            set,
            blocks: vec![Block::IDLE; n_threads],
            max_g,
            chooser: Chooser::Replay {
                script: Vec::new(),
                pos: 0,
            },
            steps: 0,
            events: Vec::new(),
            violations: Vec::new(),
            stop: false,
            trail: Vec::new(),
            stop_on: None,
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
    pub(crate) fn begin(&mut self, chooser: Chooser, stop_on: Option<ViolationKind>) {
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
        if let Some((rank, delta)) = self.set.skew {
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
        self.trail.clear();
        self.stop_on = stop_on;
        self.enabled.fill(false);
        self.stale.fill(false);
        self.stale_list.clear();
    }

    pub(crate) fn tid(&self, r: usize, b: usize) -> usize {
        r * self.max_g + b
    }
    /// Blocks launched for call k.
    pub(crate) fn grid(&self, k: usize) -> usize {
        let b = &self.set.blocks;
        b.get(k % b.len()).copied().unwrap_or(1)
    }
    /// Rank r's epoch of its current call.
    pub(crate) fn epoch_of(&self, r: usize) -> u32 {
        self.ranks
            .get(r)
            .map_or(0, |s| crate::types::next_epoch(s.epoch))
    }
    pub(crate) fn parity(&self, r: usize) -> usize {
        (self.epoch_of(r) % 2) as usize
    }
    /// The step block i is at.
    pub(crate) fn cur_step(&self, i: usize) -> Option<F::Step> {
        let k = self.ranks.get(i / self.max_g)?.call;
        self.fam.program(k).get(self.blocks.get(i)?.pc).copied()
    }
    /// The `idx`-th chunk of block b of rank r in its current call (grid-stride).
    pub(crate) fn nth_chunk(&self, r: usize, b: usize, idx: usize) -> Option<usize> {
        let st = self.ranks.get(r)?;
        self.nth_chunk_in(r, b, idx, self.fam.chunks(r, st.call))
    }
    /// The `idx`-th chunk of block b of rank r among `chunks` chunks, in the grid-stride
    /// partition of its current call's grid.
    pub(crate) fn nth_chunk_in(
        &self,
        r: usize,
        b: usize,
        idx: usize,
        chunks: usize,
    ) -> Option<usize> {
        let grid = self.ranks.get(r)?.grid;
        let t = self.set.threads_per_block;
        let c = ((idx / t) * grid.max(1) + b) * t + idx % t;
        (c < chunks && b < grid).then_some(c)
    }
    /// The j-th peer of r (the ranks other than r, ascending), if any.
    pub(crate) fn peer(&self, r: usize, j: usize) -> Option<usize> {
        let q = if j < r { j } else { j + 1 };
        (q < self.set.world).then_some(q)
    }

    /// Executes the schedule; returns the violations found.
    pub(crate) fn execute(&mut self) -> Vec<Violation> {
        let mut actions = std::mem::take(&mut self.actions);
        let mut lands = std::mem::take(&mut self.lands);
        while !self.stop {
            self.start_calls();
            let calls = self.set.calls;
            if self.ranks.iter().all(|s| s.killed || s.call >= calls) {
                break;
            }
            self.steps += 1;
            if self.steps > self.set.budget {
                let m = format!("step budget of {} exhausted (livelock)", self.set.budget);
                self.violation(ViolationKind::Timeout, m, None);
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
            let Some(act) = self.pick(&actions, &lands) else {
                break;
            };
            let g = self.max_g;
            self.trail.push(match act {
                Action::Block(i) => Decision::Block {
                    rank: i / g,
                    block: i % g,
                },
                Action::Land(t, i) => Decision::Land {
                    rank: t / g,
                    block: t % g,
                    store: self.mem.pending_stamp(t, i).unwrap_or(0),
                },
            });
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

    /// The action of this step: the scripted one when replaying (else the first
    /// enabled), or the chooser's. None when a picked store vanished.
    fn pick(&mut self, actions: &[usize], lands: &[(usize, usize)]) -> Option<Action> {
        let g = self.max_g;
        let menu = Menu {
            blocks: actions,
            groups: lands,
        };
        if let Chooser::Replay { script, pos } = &mut self.chooser {
            let (mem, enabled) = (&self.mem, &self.enabled);
            let scripted = replay_pick(script, pos, |d| match d {
                Decision::Block { rank, block } => {
                    let i = rank * g + block;
                    (block < g && enabled.get(i) == Some(&true)).then_some(Action::Block(i))
                }
                Decision::Land { rank, block, store } if block < g => {
                    let t = rank * g + block;
                    mem.landable_by_stamp(t, store).map(|s| Action::Land(t, s))
                }
                _ => None,
            });
            if scripted.is_some() {
                return scripted;
            }
        }
        let pick = if matches!(self.chooser, Chooser::Replay { .. }) {
            menu.first()
        } else {
            self.chooser.choose(&menu, g, &mut self.events_buf)
        };
        match pick {
            Pick::Block(i) => Some(Action::Block(i)),
            Pick::Land(t, j) => self.mem.ready_nth(t, j).map(|s| Action::Land(t, s)),
        }
    }

    /// Executes one action of block i.
    fn step_block(&mut self, i: usize) {
        self.invalidate(i);
        if let Some(step) = self.cur_step(i) {
            F::step(self, i, step);
        }
    }
}
