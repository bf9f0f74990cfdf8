//! The pull family: the barrier protocols of [`SimConfig`] (`program::inc::*` and
//! `program::seed::*`: one-shot in its copy-in (push) and zero-copy (pull) forms,
//! two-shot in its copy-in and zero-copy forms, hcm) on the engine. Its step type
//! [`PullStep`] holds exactly the steps of those programs.
//!
//! Memory layout, per rank: `[data: parity(2) x half][flags: 3 x 2 x G x W][abort]
//! [tensor: tensor_locs]`; a half is `max(2, W) x chunks + W` words: buf at 0 and the hcm
//! partial at `chunks` (hcm, the seed, the zero-copy one-shot, and the pull-form
//! zero-copy two-shot's tensor in half 0), or the two-shot receive areas `R[s]` at
//! `s x S` and the gather area `G` at `W x S` (`W x S <= chunks + W - 1`), or the inc
//! copy-in one-shot's receive areas `R[s]` at `s x C` (`C` = the call's chunks; `W x C`
//! words, the reason a half holds `max(2, W) x chunks`). The push-form zero-copy
//! two-shot's tensor is the region after the abort word (its halves hold the receive
//! areas).
//!
//! Layout: this file (steps, layout, the [`Family`] implementation and the reference),
//! `steps` (executing each step, barriers, the zero-copy user's reads and writes),
//! `deferred` (the deferred gather of a two-shot in pieces).

mod deferred;
mod steps;

use super::engine::{Family, Run, Setup, Watch};
use super::oracle::{fold_over, input_value, mix, Fate};
use super::{Fault, SimConfig, Weakening};
use crate::error::SimError;
use crate::program::{self, PeerSet, Protocol, Step, ZcForm, CUBE_MESH_8};
use crate::types::{
    call_sig, flag_epoch, flag_sig, Algo, BarrierKind, DType, ReduceOp, CHUNK_BYTES,
    ERR_PEER_ABORT, ERR_TIMEOUT,
};

/// Chunk offset in a half of the copy-in two-shot's gather slot `j` of the slice whose
/// owner has area `area` (PROTOCOL.md "Areas": W - 1 receive slices of `s` chunks, then
/// W - 1 gather slices).
pub(super) fn g_off(w: usize, s: usize, area: usize, j: usize) -> usize {
    (w - 1 + area) * s + j
}

/// A step of the pull family: [`Step`] without the LL push steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PullStep {
    Prologue,
    CopyIn,
    PushIn,
    Barrier { kind: BarrierKind, set: PeerSet },
    ReduceAll,
    ReduceRecv,
    Scatter,
    GatherPrev,
    ReduceSlice,
    Gather,
    QuadReduce,
    RelayReduce,
    EndBarrier,
    ReduceStore,
    Forward,
    Epilogue,
}

impl PullStep {
    /// The pull step of a program step; None for a push (LL) step.
    fn of(s: Step) -> Option<Self> {
        Some(match s {
            Step::Prologue => PullStep::Prologue,
            Step::CopyIn => PullStep::CopyIn,
            Step::PushIn => PullStep::PushIn,
            Step::Barrier { kind, set } => PullStep::Barrier { kind, set },
            Step::ReduceAll => PullStep::ReduceAll,
            Step::ReduceRecv => PullStep::ReduceRecv,
            Step::Scatter => PullStep::Scatter,
            Step::GatherPrev => PullStep::GatherPrev,
            Step::ReduceSlice => PullStep::ReduceSlice,
            Step::Gather => PullStep::Gather,
            Step::QuadReduce => PullStep::QuadReduce,
            Step::RelayReduce => PullStep::RelayReduce,
            Step::EndBarrier => PullStep::EndBarrier,
            Step::ReduceStore => PullStep::ReduceStore,
            Step::Forward => PullStep::Forward,
            Step::Epilogue => PullStep::Epilogue,
            Step::PushData | Step::PollReduce | Step::HdrCheck => return None,
        })
    }
}

/// Trace events of the pull family.
#[derive(Clone, Debug)]
pub(crate) enum PullNote {
    /// The user's write of this call's input into the rank's own buffer just before the
    /// launch (zero-copy two-shot).
    Input {
        chunks: usize,
    },
    Signal {
        peer: usize,
        val: u64,
    },
    Passed {
        peer: usize,
        val: u64,
    },
}

/// The pull family of one [`SimConfig`].
#[derive(Clone, Debug)]
pub(crate) struct Pull<'a> {
    cfg: &'a SimConfig,
    prog: Vec<PullStep>,
    /// `prog` as program steps (their trace names).
    src: Vec<Step>,
    hcm: [[usize; 4]; 8],
    /// Words of each rank's symmetric-tensor region (push-form zero-copy two-shot only:
    /// `max_chunks`; else 0, and the tensor is the start of half 0).
    tensor_locs: usize,
    max_g: usize,
    max_chunks: usize,
}

impl<'a> Pull<'a> {
    /// The family and engine settings of `cfg`, or the error of its first bad setting.
    pub(crate) fn new(cfg: &'a SimConfig) -> Result<(Self, Setup), SimError> {
        cfg.validate()?;
        let max_g = cfg.blocks.iter().copied().max().unwrap_or(1);
        let max_chunks = (cfg.bytes + 4).div_ceil(CHUNK_BYTES);
        let zcp = cfg.zero_copy && cfg.algo == Algo::TwoShot && cfg.zc_form == ZcForm::Push;
        let mut src = if zcp {
            program::inc::two_shot_zcp()
        } else if cfg.zero_copy {
            program::zero_copy_steps(cfg.protocol, cfg.algo)
        } else {
            program::steps(cfg.protocol, cfg.algo)
        };
        if !cfg.deferred_gather {
            // GatherPrev has nothing to do for a call of its own: leave it out, so the
            // schedules (and traces) are those of the program without pieces.
            src.retain(|&s| s != Step::GatherPrev);
        }
        if cfg.weaken == Some(Weakening::ScatterAfterBarrier) {
            // Move the Scatter (the one-shot's PushIn) past the barrier that follows it
            // (and GatherPrev, if any).
            let pushes = |s: Step| s == Step::Scatter || s == Step::PushIn;
            if let Some(i) = src.iter().position(|&s| pushes(s)) {
                let next = src.iter().skip(i + 1).position(|&s| s != Step::GatherPrev);
                let j = next.map_or(i, |d| i + 1 + d);
                if matches!(src.get(j), Some(Step::Barrier { .. })) {
                    src[i..=j].rotate_left(1);
                }
            }
        }
        if cfg.weaken == Some(Weakening::ForwardAfterEndBarrier) {
            if let Some(f) = src.iter().position(|&s| s == Step::Forward) {
                if src.get(f + 1) == Some(&Step::EndBarrier) {
                    src.swap(f, f + 1);
                }
            }
        }
        let prog = src.iter().map(|&s| PullStep::of(s)).collect::<Option<_>>();
        let prog = prog.ok_or_else(|| {
            SimError::Config(format!("{} is not a barrier (pull) protocol", cfg.algo))
        })?;
        let set = Setup {
            protocol: cfg.protocol,
            algo: cfg.algo,
            world: cfg.world,
            calls: cfg.calls,
            blocks: cfg.blocks.clone(),
            threads_per_block: cfg.threads_per_block,
            scheduler: cfg.scheduler,
            random: cfg.random,
            budget: cfg.max_steps.max(cfg.auto_max_steps()) as u64,
            shrink_runs: cfg.shrink_runs,
            shrink_time: cfg.shrink_time,
            kill: match cfg.fault {
                Some(Fault::Kill { rank, call }) => Some((rank, call)),
                _ => None,
            },
            skew: match cfg.fault {
                Some(Fault::EpochSkew { rank, delta }) => Some((rank, delta)),
                _ => None,
            },
            faulty: cfg.fault.is_some(),
            seed: cfg.protocol == Protocol::Seed,
        };
        let pull = Pull {
            cfg,
            prog,
            src,
            hcm: cfg.hcm.unwrap_or(CUBE_MESH_8),
            tensor_locs: if zcp { max_chunks } else { 0 },
            max_g,
            max_chunks,
        };
        Ok((pull, set))
    }

    fn is_seed(&self) -> bool {
        self.cfg.protocol == Protocol::Seed
    }
    /// The zero-copy two-shot: inputs and results live in each rank's own tensor, written
    /// and read by the user between calls.
    fn zc_two_shot(&self) -> bool {
        self.cfg.zero_copy && self.cfg.algo == Algo::TwoShot
    }
    /// The push form of the zero-copy two-shot ([`program::inc::two_shot_zcp`]).
    fn zcp(&self) -> bool {
        self.tensor_locs > 0
    }
    /// [`SimConfig::deferred_gather`]: call k skips its Gather (every call but the last).
    fn defers_gather(&self, k: usize) -> bool {
        self.cfg.deferred_gather && k + 1 < self.cfg.calls
    }

    // ---- location layout (module docs)
    fn half_locs(&self) -> usize {
        self.cfg.world.max(2) * self.max_chunks + self.cfg.world
    }
    fn data_locs(&self) -> usize {
        2 * self.half_locs()
    }
    fn flag_locs(&self) -> usize {
        3 * 2 * self.max_g * self.cfg.world
    }
    fn rank_locs(&self) -> usize {
        self.data_locs() + self.flag_locs() + 1 + self.tensor_locs
    }
    /// Chunk c of rank r's symmetric tensor: its own region (push form), else the start
    /// of half 0.
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
        let hl = self.half_locs();
        r * self.rank_locs() + parity * hl + off.min(hl - 1)
    }
    fn flag_loc(&self, r: usize, kind: BarrierKind, parity: usize, b: usize, src: usize) -> usize {
        let k = match kind {
            BarrierKind::Start => 0,
            BarrierKind::Mid => 1,
            BarrierKind::End => 2,
        };
        r * self.rank_locs()
            + self.data_locs()
            + ((k * 2 + parity) * self.max_g + b) * self.cfg.world
            + src
    }
    /// The seed's semaphores: signals0 for start (and both hcm barriers), signals1 for mid.
    fn seed_sem_loc(&self, r: usize, kind: BarrierKind, b: usize, src: usize) -> usize {
        let set = if kind == BarrierKind::Mid && self.cfg.algo != Algo::Hcm {
            BarrierKind::Mid
        } else {
            BarrierKind::Start
        };
        self.flag_loc(r, set, 0, b, src)
    }

    /// Elements and chunks rank `r` uses in call `k`.
    fn count(&self, r: usize, k: usize) -> (u64, usize) {
        let mut n = (self.cfg.bytes / 4) as u64;
        if self.cfg.fault == Some(Fault::Mismatch { rank: r, call: k }) {
            n += 1;
        }
        (n, (n as usize * 4).div_ceil(CHUNK_BYTES))
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
    /// The barrier a step is (kind, set); EndBarrier maps to (End, Others).
    fn barrier_of(step: PullStep) -> Option<(BarrierKind, PeerSet)> {
        match step {
            PullStep::Barrier { kind, set } => Some((kind, set)),
            PullStep::EndBarrier => Some((BarrierKind::End, PeerSet::Others)),
            _ => None,
        }
    }
    /// hcm: the quad of rank x (ascending in inc, the table's order in the seed).
    fn quad(&self, x: usize) -> [usize; 4] {
        let row = self.hcm.get(x).copied().unwrap_or([0; 4]);
        let mut q = [x, row[0], row[1], row[2]];
        if !self.is_seed() {
            q.sort_unstable();
        }
        q
    }
    /// hcm: (first, second) rank whose partial is folded in RelayReduce.
    fn relay_order(&self, r: usize) -> (usize, usize) {
        let relay = self.hcm.get(r).map_or(0, |row| row[3]);
        if self.is_seed() {
            return (r, relay);
        }
        let min = |x: usize| self.quad(x).into_iter().min().unwrap_or(x);
        if min(r) < min(relay) {
            (r, relay)
        } else {
            (relay, r)
        }
    }
}

impl Family for Pull<'_> {
    type Step = PullStep;
    type Note = PullNote;

    fn program(&self, _k: usize) -> &[PullStep] {
        &self.prog
    }
    fn locs(&self) -> usize {
        self.cfg.world * self.rank_locs()
    }
    fn abort_loc(&self, r: usize) -> usize {
        r * self.rank_locs() + self.data_locs() + self.flag_locs()
    }
    /// Block b of rank r polls only flags `[.][.][b][.]` of its own pad and its own abort
    /// word (data never).
    fn watchers(&self, loc: usize) -> Watch {
        let per = self.rank_locs();
        let (r, off) = (loc / per, loc % per);
        let flags = self.flag_locs();
        match off.checked_sub(self.data_locs()) {
            Some(f) if f == flags => Watch::Rank(r),
            Some(f) if f < flags => {
                Watch::Block(r * self.max_g + (f / self.cfg.world) % self.max_g)
            }
            _ => Watch::Nobody,
        }
    }
    fn chunks(&self, r: usize, k: usize) -> usize {
        self.count(r, k).1
    }
    fn sig(&self, r: usize, k: usize) -> u32 {
        call_sig(self.cfg.algo, DType::F32, ReduceOp::Sum, self.count(r, k).0)
    }
    fn traced(&self, s: PullStep) -> bool {
        !(s == PullStep::Prologue || (s == PullStep::EndBarrier && !self.cfg.zero_copy))
    }
    fn step_name(&self, _k: usize, pc: usize) -> String {
        self.src.get(pc).map_or("?".into(), Step::describe)
    }
    fn launch_text(&self, _r: usize, _k: usize, grid: usize, epoch: u32) -> String {
        if self.is_seed() {
            format!("launch kernel ({grid} blocks)")
        } else {
            format!("launch kernel ({grid} blocks, epoch {epoch})")
        }
    }
    fn note_text(&self, note: &PullNote) -> String {
        match *note {
            PullNote::Input { chunks } => {
                format!("user writes its input into its own buffer ({chunks} chunks)")
            }
            PullNote::Signal { peer, .. } if self.is_seed() => {
                format!("signal r{peer}: atomicAdd_system(+1)")
            }
            PullNote::Signal { peer, val } => format!(
                "signal r{peer}: st.release flag = epoch {} sig {:#010x}",
                flag_epoch(val),
                flag_sig(val)
            ),
            PullNote::Passed { peer, val } if self.is_seed() => {
                format!("wait r{peer}: counter {val} -> CAS down, passed")
            }
            PullNote::Passed { peer, val } => {
                format!(
                    "wait r{peer}: ld.acquire saw epoch {}, passed",
                    flag_epoch(val)
                )
            }
        }
    }
    fn reference(&self, r: usize, k: usize, c: usize) -> u64 {
        let w = self.cfg.world;
        let inp = |q: usize| input_value(q, k, c);
        match (self.cfg.protocol, self.cfg.algo) {
            (Protocol::Seed, Algo::OneShot) => fold_over((0..w).map(|j| inp((r + j) % w))),
            (Protocol::Seed, Algo::TwoShot) => {
                let s = self.count(r, k).1.div_ceil(w).max(1);
                let owner = (c / s).min(w - 1);
                fold_over((0..w).map(|j| inp((owner + j) % w)))
            }
            (_, Algo::Hcm) => {
                let (a, b) = self.relay_order(r);
                let quad = |x: usize| fold_over(self.quad(x).into_iter().map(inp));
                mix(quad(a), quad(b))
            }
            _ => fold_over((0..w).map(inp)),
        }
    }
    fn fate(&self, k: usize) -> Fate {
        match self.cfg.fault {
            Some(Fault::Kill { call, .. }) if k >= call => Fate::Dead,
            Some(Fault::Mismatch { call, .. }) if k >= call => Fate::Disagree,
            Some(Fault::EpochSkew { .. }) => Fate::Disagree,
            _ => Fate::Clean,
        }
    }
    /// A rank still in an earlier (matched) call may see the abort word of a faster rank
    /// that already failed the faulty call: the comm is poisoned (PROTOCOL.md, barrier
    /// step 3), so its call ends with PEER_ABORT. The originating error is checked on its
    /// own rank.
    fn error_expected(&self, k: usize, code: u32) -> bool {
        match self.cfg.fault {
            Some(Fault::Kill { call, .. }) => {
                code == ERR_PEER_ABORT || (k >= call && code == ERR_TIMEOUT)
            }
            Some(Fault::Mismatch { call, .. }) => k >= call || code == ERR_PEER_ABORT,
            Some(Fault::EpochSkew { .. }) => true,
            None => false,
        }
    }

    fn launch(run: &mut Run<Self>, r: usize, k: usize, grid: usize) {
        if run.fam.zc_two_shot() {
            run.write_zc_input(r, k, grid);
        }
    }
    fn step(run: &mut Run<Self>, i: usize, step: PullStep) {
        run.pull_step(i, step);
    }
    fn productive(run: &Run<Self>, i: usize) -> bool {
        // `waiting` is only set inside a barrier step that polls.
        run.blocks.get(i).is_some_and(|b| !b.waiting) || run.poll_outcome(i).is_none_or(|p| p)
    }
    fn kernel_done(run: &mut Run<Self>, r: usize) {
        if run.fam.zc_two_shot() {
            run.read_zc_output(r);
        }
        if run.fam.defers_gather(run.ranks[r].call) {
            run.read_deferred_output(r);
        }
    }
    fn waits_on(run: &Run<Self>, i: usize) -> usize {
        let r = i / run.max_g;
        run.cur_step(i)
            .and_then(Pull::barrier_of)
            .and_then(|(_, set)| run.fam.nth_member(r, set, run.blocks[i].cursor))
            .unwrap_or(r)
    }
}
