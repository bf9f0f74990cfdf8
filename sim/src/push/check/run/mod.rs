//! One push schedule's execution state ([`Run`]): ranks, blocks, the location layout
//! ([`Geo`]), the memory model and the main loop. Call launch/end and the wait and
//! failure helpers live in `calls`, the steps in `steps`, the verdicts in `verdict`.

mod calls;
mod steps;
mod verdict;

use crate::check::{BState, CallOutcome};
use crate::model::Memory;
use crate::sched::Rng;
use crate::sched::{Event, Pct, Strategy};
use crate::types::{DType, ReduceOp, CHUNK_BYTES};
use crate::{Violation, ViolationKind};

use crate::push::push_call_sig;

use super::{
    chunk_value, describe_tag, half_value, half_word, PushConfig, PushFault, PushScheduler,
    PushWeakening, HALVES, WHAT_FLAG, WHAT_HALF, WHAT_HDR, WHAT_LINE,
};

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

pub(super) struct Run<'a> {
    cfg: &'a PushConfig,
    geo: Geo,
    rng: Rng,
    /// The PCT strategy of this schedule ([`PushScheduler::Pct`]).
    pct: Option<Pct>,
    /// Steps of one calibration schedule (PCT's change points are drawn from them).
    pub(super) pct_steps: u64,
    mem: Memory,
    ranks: Vec<RankState>,
    blocks: Vec<Block>,
    max_g: usize,
    pub(super) steps: u64,
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
    pub(super) fn new(cfg: &'a PushConfig) -> Self {
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

    pub(super) fn reset(&mut self, seed: u64) {
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

    pub(super) fn execute(&mut self) -> Vec<Violation> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geo_layout() {
        let g = Geo::new(&PushConfig::new(3, vec![64]));
        assert!(g.slot(0, 1, 2, 4, 3, 0) < g.hdr);
        assert_eq!(g.abort(0) + 1, g.per_rank);
    }
}
