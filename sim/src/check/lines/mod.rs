//! The lines family: the two-shot of lines (PROTOCOL.md "two-shot of lines",
//! `inc_proto::lines`) on the engine. Every run is checked like the other families' (exact
//! results, stale reads from provenance on every line taken, deadlock, undetected
//! mismatched calls, missing timeouts), plus the "clear what you took" rule: after every
//! call a rank completes, every flag word of its parity of that call is 0 but those a
//! peer one call ahead wrote. Violations replay ([`replay_lines`]) and the first of each
//! kind is shrunk.
//!
//! What is modelled: the lines region of every rank at the offsets of
//! [`inc_proto::lines::LinesLayout`] (`recv` and `gath` lines of two parities, the header
//! words `hdr[2][W]`), a line being ONE location whose write carries the flag word (its
//! value) and one 32-bit payload word (with the checker's provenance, in the write's
//! metadata): one line store is one event, as the protocol assumes of the hardware (a
//! reader that sees the flag sees the whole line). With [`LinesWeakening::SplitLine`] the
//! flag is a location of its own next to the payload's, landing separately. Polls are
//! relaxed loads that may return any value the model allows (stale included); a poll that
//! does not see this call's flag looks at the writer's header word and the abort word
//! (the kernel's slow path, here on every miss). Clears are relaxed stores of 0 into the
//! flag. `epoch`/`done` are block-shared rank state; kernel boundaries order a rank's
//! calls (stream order) and land its stores. Slices are cut as the protocol cuts them,
//! with a configurable alignment ([`LinesConfig::slice_align`]: the protocol's 4, or 1
//! for short runs); every line of every slice (the zero lines past the data included) is
//! sent and taken.
//!
//! Layout: `config` (the scenario), this file (steps, layout, values, the [`Family`]
//! implementation), `steps` (executing each step, the clear check).

mod config;
mod steps;

pub use config::{LinesConfig, LinesFault, LinesScheduler, LinesWeakening};

use super::engine::{Family, Run, Setup, Watch};
use super::oracle::{input_value, mix, Fate, LlFault};
use super::{Decision, Report};
use crate::error::SimError;
use crate::types::{call_sig, Algo, DType, ReduceOp};
use inc_proto::lines::{LinesLayout, LINE, LINE_PAYLOAD};

/// Runs `schedules` schedules of the two-shot of lines (schedule i uses seed + i); the
/// first violation of each kind is shrunk ([`LinesConfig::shrink_runs`]).
pub fn check_lines(cfg: &LinesConfig, schedules: u64, seed: u64) -> Result<Report, SimError> {
    Ok(super::check_family(Lines::new(cfg)?, schedules, seed))
}

/// Runs one schedule of the two-shot of lines given as decisions (a
/// [`crate::Violation::schedule`] of [`check_lines`]) and reports its violations.
pub fn replay_lines(cfg: &LinesConfig, schedule: &[Decision]) -> Result<Report, SimError> {
    Ok(super::replay_family(Lines::new(cfg)?, schedule))
}

/// A step of the lines program (`inc_proto::lines::STEP_NAMES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinesStep {
    Prologue,
    Scatter,
    ReduceStore,
    Gather,
    Epilogue,
}

impl LinesStep {
    fn name(self) -> &'static str {
        match self {
            LinesStep::Prologue => "Prologue",
            LinesStep::Scatter => "Scatter",
            LinesStep::ReduceStore => "ReduceStore",
            LinesStep::Gather => "Gather",
            LinesStep::Epilogue => "Epilogue",
        }
    }
}

/// The program of every call ([`crate::program::inc::two_shot_lines`]).
const PROGRAM: [LinesStep; 5] = [
    LinesStep::Prologue,
    LinesStep::Scatter,
    LinesStep::ReduceStore,
    LinesStep::Gather,
    LinesStep::Epilogue,
];

/// Provenance kinds of the lines family (4 bits of a [`prov`]).
const WHAT_RECV: u32 = 1;
const WHAT_GATH: u32 = 2;
const WHAT_CLEAR: u32 = 3;
const WHAT_HDR: u32 = 4;

/// A line write's provenance: who wrote which call's line `line` (of the whole cut), and
/// what (`WHAT_*`); 0 is the initial zero.
fn prov(rank: usize, call: usize, what: u32, line: usize) -> u32 {
    ((rank as u32 + 1) & 0xf) << 28
        | ((call as u32 + 1) & 0xfff) << 16
        | (what & 0xf) << 12
        | (line as u32 & 0xfff)
}

/// A [`prov`] in words.
fn describe_prov(p: u32) -> String {
    if p == 0 {
        return "initial zero (never written)".into();
    }
    let (rank, call) = (
        (p >> 28).wrapping_sub(1),
        ((p >> 16) & 0xfff).wrapping_sub(1),
    );
    let what = match (p >> 12) & 0xf {
        WHAT_RECV => "scatter line",
        WHAT_GATH => "reduced line",
        WHAT_CLEAR => "clear",
        WHAT_HDR => "header",
        _ => "?",
    };
    format!("r{rank} call {call} {what} {}", p & 0xfff)
}

/// The metadata of a modelled line write: payload word (high half) and provenance.
fn meta(payload: u32, prov: u32) -> u64 {
    (u64::from(payload) << 32) | u64::from(prov)
}

/// Rank q's payload of line `line` of call k whose data has `n` lines (0 past them).
fn input(q: usize, k: usize, line: usize, n: usize) -> u32 {
    if line < n {
        (input_value(q, k, line) as u32) | 1
    } else {
        0
    }
}

/// The order-sensitive fold of 32-bit payloads.
fn fold(acc: u32, x: u32) -> u32 {
    mix(u64::from(acc), u64::from(x)) as u32
}

/// One rank's cut of one call: `n` lines of data, slices of `sl` lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cut {
    n: usize,
    sl: usize,
}

impl Cut {
    fn new(bytes: u64, world: usize, align: u64) -> Self {
        let n = bytes.div_ceil(LINE_PAYLOAD as u64);
        let sl = n.div_ceil(world as u64).div_ceil(align) * align;
        Cut {
            n: n as usize,
            sl: sl as usize,
        }
    }
}

/// Index (in lines, within one parity) of an offset of [`LinesLayout`] in parity 0.
fn line_index(offset: u64) -> usize {
    (offset as usize).saturating_sub(LinesLayout::HEADER_BYTES) / LINE
}

/// Location layout of one rank (indices relative to the rank's base).
#[derive(Clone, Copy, Debug)]
struct Geo {
    world: usize,
    /// Lines of one parity (`2 (W-1) SL` of the largest cut).
    per_parity: usize,
    /// Parities (2, or 1 with `OneParity`).
    parities: usize,
    /// Locations per line (1, or 2 with `SplitLine`: flag, payload).
    words: usize,
    lines: usize,
    abort: usize,
    per_rank: usize,
}

impl Geo {
    fn new(cfg: &LinesConfig) -> Self {
        let world = cfg.world;
        let sl = (0..world)
            .flat_map(|r| (0..cfg.bytes.len()).map(move |k| (r, k)))
            .map(|(r, k)| Cut::new(cfg.bytes_of(r, k), world, cfg.slice_align).sl)
            .max()
            .unwrap_or(1);
        let per_parity = 2 * (world - 1) * sl;
        let parities = if cfg.weaken == Some(LinesWeakening::OneParity) {
            1
        } else {
            2
        };
        let words = if cfg.weaken == Some(LinesWeakening::SplitLine) {
            2
        } else {
            1
        };
        let lines = 2 * world;
        let abort = lines + parities * per_parity * words;
        Geo {
            world,
            per_parity,
            parities,
            words,
            lines,
            abort,
            per_rank: abort + 1,
        }
    }
    /// Rank r's header word `hdr[p][s]`.
    fn hdr(&self, r: usize, p: usize, s: usize) -> usize {
        r * self.per_rank + p * self.world + s
    }
    /// Word `w` (0 = flag, or the whole line; 1 = payload with `SplitLine`) of line `idx`
    /// of rank r's parity p.
    fn line(&self, r: usize, p: usize, idx: usize, w: usize) -> usize {
        let p = p % self.parities;
        r * self.per_rank + self.lines + ((p * self.per_parity + idx) * self.words) + w
    }
    /// Index of `recv[k(writer)][j]` of owner `me` (cut of `sl` lines a slice).
    fn recv(&self, me: usize, writer: usize, j: usize, sl: usize) -> usize {
        line_index(LinesLayout::recv(
            0, me, writer, j as u64, sl as u64, self.world, 0,
        ))
    }
    /// Index of `gath[k(q)][j]` of rank `me`: line j of slice q.
    fn gath(&self, me: usize, q: usize, j: usize, sl: usize) -> usize {
        line_index(LinesLayout::gather(
            0, me, q, j as u64, sl as u64, self.world, 0,
        ))
    }
}

/// The lines family of one [`LinesConfig`].
#[derive(Clone, Debug)]
pub(crate) struct Lines<'a> {
    cfg: &'a LinesConfig,
    geo: Geo,
    /// Per block: the fold of the line ReduceStore is at (set by rank 0's term first).
    acc: Vec<u32>,
}

impl<'a> Lines<'a> {
    /// The family and engine settings of `cfg`, or the error of its first bad setting.
    fn new(cfg: &'a LinesConfig) -> Result<(Self, Setup), SimError> {
        cfg.validate()?;
        let (scheduler, random) = cfg.scheduler.engine();
        let fault = cfg.fault.map(|f| f.outcome());
        let set = Setup {
            protocol: crate::Protocol::Inc,
            algo: Algo::TwoShot,
            world: cfg.world,
            calls: cfg.bytes.len(),
            blocks: cfg.blocks.clone(),
            threads_per_block: cfg.threads_per_block,
            scheduler,
            random,
            budget: cfg.max_steps as u64,
            shrink_runs: cfg.shrink_runs,
            shrink_time: cfg.shrink_time,
            kill: fault.and_then(LlFault::kill),
            skew: fault.and_then(LlFault::skew),
            faulty: fault.is_some(),
            seed: false,
        };
        let geo = Geo::new(cfg);
        let max_g = cfg.blocks.iter().copied().max().unwrap_or(1);
        let acc = vec![0; cfg.world * max_g];
        Ok((Lines { cfg, geo, acc }, set))
    }

    /// Rank r's cut of call k.
    fn cut(&self, r: usize, k: usize) -> Cut {
        Cut::new(
            self.cfg.bytes_of(r, k),
            self.cfg.world,
            self.cfg.slice_align,
        )
    }
}

impl Family for Lines<'_> {
    type Step = LinesStep;
    type Note = std::convert::Infallible;

    fn program(&self, _k: usize) -> &[LinesStep] {
        &PROGRAM
    }
    fn locs(&self) -> usize {
        self.cfg.world * self.geo.per_rank
    }
    fn abort_loc(&self, r: usize) -> usize {
        r * self.geo.per_rank + self.geo.abort
    }
    /// A block's answer depends on its own rank's lines, header words and abort word.
    fn watchers(&self, loc: usize) -> Watch {
        Watch::Rank(loc / self.geo.per_rank)
    }
    fn chunks(&self, r: usize, k: usize) -> usize {
        self.cut(r, k).n
    }
    fn sig(&self, r: usize, k: usize) -> u32 {
        let bytes = self.cfg.bytes_of(r, k);
        match self.cfg.fault {
            Some(LinesFault::OtherDtype { rank, call }) if rank == r && call == k => {
                call_sig(Algo::TwoShot, DType::Bf16, ReduceOp::Sum, bytes / 2)
            }
            _ => call_sig(Algo::TwoShot, DType::F32, ReduceOp::Sum, bytes / 4),
        }
    }
    fn traced(&self, step: LinesStep) -> bool {
        step != LinesStep::Prologue
    }
    fn step_name(&self, _k: usize, pc: usize) -> String {
        PROGRAM.get(pc).map_or("?", |s| s.name()).into()
    }
    fn launch_text(&self, r: usize, k: usize, grid: usize, epoch: u32) -> String {
        let Cut { n, sl } = self.cut(r, k);
        format!(
            "launch two-shot of lines ({grid} blocks, epoch {epoch}, {n} lines, slices of {sl})"
        )
    }
    fn note_text(&self, note: &std::convert::Infallible) -> String {
        match *note {}
    }
    /// The rank-order fold of every rank's payload of line c.
    fn reference(&self, r: usize, k: usize, c: usize) -> u64 {
        let n = self.cut(r, k).n;
        let v = (1..self.cfg.world).fold(input(0, k, c, n), |a, q| fold(a, input(q, k, c, n)));
        u64::from(v)
    }
    fn fate(&self, k: usize) -> Fate {
        LlFault::fate(self.cfg.fault.map(|f| f.outcome()), k)
    }
    fn error_expected(&self, k: usize, code: u32) -> bool {
        LlFault::error_expected(self.cfg.fault.map(|f| f.outcome()), k, code)
    }

    fn step(run: &mut Run<Self>, i: usize, step: LinesStep) {
        run.lines_step(i, step);
    }
    fn productive(run: &Run<Self>, i: usize) -> bool {
        run.lines_productive(i)
    }
    fn kernel_done(run: &mut Run<Self>, r: usize) {
        run.clear_check(r);
    }
    fn waits_on(run: &Run<Self>, i: usize) -> usize {
        run.polled_peer(i).unwrap_or(i / run.max_g)
    }
}

#[cfg(test)]
mod tests;
