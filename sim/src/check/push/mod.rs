//! The push family: the LL push one-shot ([`crate::push`], PROTOCOL.md "push one-shot")
//! on the engine, with v1 one-shot calls in between ([`PushConfig::barrier_calls`]).
//! Every run is checked like the pull family's (exact results, stale reads from
//! provenance tags on every data word read, deadlock, undetected mismatched calls,
//! missing timeouts); its violations replay ([`replay_push`]) and the first of each kind
//! is shrunk.
//!
//! What is modelled: every 8-byte half `{data, tag}` of a 16-byte line is one location,
//! and the two halves of one line store land as *separate* events (the protocol relies on
//! 8-byte single-copy atomicity only); a reader polls with relaxed loads that may return
//! any value the model allows (stale included) and accepts a chunk when all four tags of
//! its two lines equal the call's epoch; the header line `{sig, e, sig, e}` is two such
//! halves, which a block polling writer q's chunk also reads until it is this call's and
//! then keeps, so HdrCheck reads only the headers not accepted yet (mirrors
//! kernels/push_one_shot.cu: the header is reloaded with the data lines in PollReduce and
//! kept once it is this call's); `epoch`/`done` are block-shared rank state; kernel
//! boundaries order a rank's calls (stream order) and land its stores. A v1 call copies
//! into its parity half, passes a release/acquire start barrier and reads every peer's
//! half, so mixing LL and v1 calls is checked for both protocols' buffer-reuse arguments.
//!
//! Weakenings ([`PushWeakening`]) show that the checker catches a broken variant: one
//! buffer instead of two parities, no header check, 4-byte words landing separately
//! (no 8-byte atomicity), and a reader that checks one tag per line.
//!
//! Layout: `config` (the scenario), this file (steps, layout, the [`Family`]
//! implementation, the reference), `steps` (executing each step).

mod config;
mod steps;

pub use config::{PushConfig, PushFault, PushScheduler, PushWeakening};

use super::engine::{Family, Run, Setup, Watch};
use super::oracle::{mix, Fate, LlFault};
use super::{Decision, Report};
use crate::error::SimError;
use crate::push::push_call_sig;
use crate::types::{Algo, DType, ReduceOp, CHUNK_BYTES};

/// Runs `schedules` schedules of the push protocol (schedule i uses seed + i); the first
/// violation of each kind is shrunk ([`PushConfig::shrink_runs`]).
pub fn check_push(cfg: &PushConfig, schedules: u64, seed: u64) -> Result<Report, SimError> {
    Ok(super::check_family(Push::new(cfg)?, schedules, seed))
}

/// Runs one schedule of the push protocol given as decisions (a
/// [`crate::Violation::schedule`] of [`check_push`]) and reports its violations.
pub fn replay_push(cfg: &PushConfig, schedule: &[Decision]) -> Result<Report, SimError> {
    Ok(super::replay_family(Push::new(cfg)?, schedule))
}

/// A step of the push family: the LL program, and the v1 one-shot of barrier calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PushStep {
    Prologue,
    PushData,
    PollReduce,
    HdrCheck,
    Epilogue,
    /// v1: copy my chunks into my parity half, then release the start flag at every peer.
    CopyInSignal,
    /// v1: acquire every peer's start flag, then fold every rank's half in rank order.
    WaitReduce,
}

impl PushStep {
    fn name(self) -> &'static str {
        match self {
            PushStep::Prologue => "Prologue",
            PushStep::PushData => "PushData",
            PushStep::PollReduce => "PollReduce",
            PushStep::HdrCheck => "HdrCheck",
            PushStep::Epilogue => "Epilogue",
            PushStep::CopyInSignal => "PushIn+Signal",
            PushStep::WaitReduce => "Wait+ReduceRecv",
        }
    }
}

/// The LL program ([`crate::push::PUSH_STEP_NAMES`]).
const LL: [PushStep; 5] = [
    PushStep::Prologue,
    PushStep::PushData,
    PushStep::PollReduce,
    PushStep::HdrCheck,
    PushStep::Epilogue,
];
/// The v1 one-shot of a barrier call.
const V1: [PushStep; 4] = [
    PushStep::Prologue,
    PushStep::CopyInSignal,
    PushStep::WaitReduce,
    PushStep::Epilogue,
];

/// 8-byte halves per user chunk (lines A and B, two halves each).
const HALVES: usize = 4;

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
    hdr: usize,
    flags: usize,
    halves: usize,
    abort: usize,
    per_rank: usize,
}

impl Geo {
    fn new(cfg: &PushConfig) -> Self {
        let (world, max_g) = (cfg.world, cfg.blocks.iter().copied().max().unwrap_or(1));
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
        let hdr = bufs * world * max_chunks * HALVES * words;
        let flags = hdr + 2 * world * 2;
        let halves = flags + 2 * max_g * world;
        // the v1 one-shot's receive areas R[0..W] in each parity half (push form)
        let abort = halves + 2 * world * max_chunks;
        Geo {
            world,
            max_g,
            max_chunks,
            bufs,
            words,
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
            + (((p * self.world + q) * self.max_chunks + c) * HALVES + h) * self.words
            + w
    }
    fn hdr(&self, r: usize, p: usize, q: usize, h: usize) -> usize {
        r * self.per_rank + self.hdr + (p * self.world + q) * 2 + h
    }
    fn flag(&self, r: usize, p: usize, b: usize, q: usize) -> usize {
        r * self.per_rank + self.flags + (p * self.max_g + b) * self.world + q
    }
    /// Chunk `c` of receive area `R[s]` in rank r's parity half p (v1 one-shot).
    fn half(&self, r: usize, p: usize, s: usize, c: usize) -> usize {
        r * self.per_rank + self.halves + (p * self.world + s) * self.max_chunks + c
    }
}

/// The push family of one [`PushConfig`].
#[derive(Clone, Debug)]
pub(crate) struct Push<'a> {
    cfg: &'a PushConfig,
    geo: Geo,
}

impl<'a> Push<'a> {
    /// The family and engine settings of `cfg`, or the error of its first bad setting.
    fn new(cfg: &'a PushConfig) -> Result<(Self, Setup), SimError> {
        cfg.validate()?;
        let (scheduler, random) = cfg.scheduler.engine();
        let fault = cfg.fault.map(|f| f.outcome());
        let set = Setup {
            protocol: crate::Protocol::Inc,
            algo: Algo::PushOneShot,
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
        Ok((Push { cfg, geo }, set))
    }

    fn is_barrier_call(&self, k: usize) -> bool {
        self.cfg.barrier_calls.contains(&k)
    }
}

impl Family for Push<'_> {
    type Step = PushStep;
    type Note = std::convert::Infallible;

    fn program(&self, k: usize) -> &[PushStep] {
        if self.is_barrier_call(k) {
            &V1
        } else {
            &LL
        }
    }
    fn locs(&self) -> usize {
        self.cfg.world * self.geo.per_rank
    }
    fn abort_loc(&self, r: usize) -> usize {
        r * self.geo.per_rank + self.geo.abort
    }
    /// A block's answer depends on its own rank's slots, header lines, flags and abort.
    fn watchers(&self, loc: usize) -> Watch {
        Watch::Rank(loc / self.geo.per_rank)
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
            return crate::call_sig(Algo::OneShot, DType::F32, ReduceOp::Sum, n * 4);
        }
        let op = match self.cfg.fault {
            Some(PushFault::OtherOp { rank, call }) if rank == r && call == k => ReduceOp::Max,
            _ => ReduceOp::Sum,
        };
        push_call_sig(DType::F32, op, n * 4)
    }
    fn traced(&self, step: PushStep) -> bool {
        step != PushStep::Prologue
    }
    fn step_name(&self, k: usize, pc: usize) -> String {
        self.program(k).get(pc).map_or("?", |s| s.name()).into()
    }
    fn launch_text(&self, r: usize, k: usize, grid: usize, epoch: u32) -> String {
        let what = if self.is_barrier_call(k) {
            "v1 one-shot"
        } else {
            "LL push"
        };
        let chunks = self.chunks(r, k);
        format!("launch {what} ({grid} blocks, epoch {epoch}, {chunks} chunks)")
    }
    fn note_text(&self, note: &std::convert::Infallible) -> String {
        match *note {}
    }
    /// The rank-order fold of every rank's value of chunk c.
    fn reference(&self, _r: usize, k: usize, c: usize) -> u64 {
        let barrier = self.is_barrier_call(k);
        let value = |q: usize| {
            if barrier {
                u64::from(half_value(q, k, c, 0))
            } else {
                chunk_value(&[0, 1, 2, 3].map(|h| half_value(q, k, c, h)))
            }
        };
        (1..self.cfg.world).fold(value(0), |a, q| mix(a, value(q)))
    }
    fn fate(&self, k: usize) -> Fate {
        LlFault::fate(self.cfg.fault.map(|f| f.outcome()), k)
    }
    fn error_expected(&self, k: usize, code: u32) -> bool {
        LlFault::error_expected(self.cfg.fault.map(|f| f.outcome()), k, code)
    }

    fn step(run: &mut Run<Self>, i: usize, step: PushStep) {
        run.push_step(i, step);
    }
    fn productive(run: &Run<Self>, i: usize) -> bool {
        run.push_productive(i)
    }
    fn waits_on(run: &Run<Self>, i: usize) -> usize {
        let (r, cursor) = (i / run.max_g, run.blocks[i].cursor);
        match run.cur_step(i) {
            Some(PushStep::PollReduce) => cursor % run.set.world,
            _ => run.peer(r, cursor).unwrap_or(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::oracle::{describe_tag, tag, CallOutcome, WHAT_HDR, WHAT_LINE};
    use crate::model::MemOrder;
    use crate::sched::{chooser_for, Chooser, Dfs};
    use crate::types::{flag_word, ERR_CALL_MISMATCH};

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
    fn one_rank_tags_layout_and_step_names() {
        let r = check_push(&PushConfig::new(1, vec![64, 16, 48, 4]), 5, 3).unwrap();
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(describe_tag(tag(1, 2, WHAT_LINE)), "r1 call 2 line data");
        assert_ne!(half_value(0, 0, 0, 0), 0);
        let cfg = PushConfig::new(3, vec![64]);
        let g = Geo::new(&cfg);
        assert!(g.slot(0, 1, 2, 4, 3, 0) < g.hdr);
        assert_eq!(Push::new(&cfg).unwrap().0.abort_loc(0) + 1, g.per_rank);
        let names: Vec<&str> = LL.iter().map(|s| s.name()).collect();
        assert_eq!(names, crate::push::PUSH_STEP_NAMES);
    }

    /// Executes block i's current step once.
    fn act(run: &mut Run<Push<'_>>, i: usize) {
        let step = run.cur_step(i).expect("block i has a step");
        run.push_step(i, step);
    }

    /// PollReduce keeps a header of this call it read with the data (bit q of `hdr_ok`)
    /// and HdrCheck trusts it without reading again, while a block that did not accept it
    /// reads it: here the header slot is overwritten (another signature, same epoch, which
    /// no legit peer does) after the poll, so only the re-reading block fails.
    #[test]
    fn poll_keeps_the_header_and_hdr_check_trusts_it() {
        let mut cfg = PushConfig::new(2, vec![16]);
        cfg.blocks = vec![1];
        let (fam, set) = Push::new(&cfg).unwrap();
        let mut run = Run::new(fam, set);
        run.begin(
            Chooser::Replay {
                script: Vec::new(),
                pos: 0,
            },
            None,
        );
        run.start_calls();
        // One block per rank: thread r is rank r's block 0.
        for i in [0, 1] {
            while run.cur_step(i) != Some(PushStep::PollReduce) {
                act(&mut run, i);
            }
        }
        for t in [0, 1] {
            run.mem.flush(t);
        }
        for i in [0, 1] {
            assert_eq!(run.blocks[i].hdr_ok, 0, "cleared at launch");
            while run.cur_step(i) == Some(PushStep::PollReduce) {
                act(&mut run, i);
            }
            assert_eq!(run.cur_step(i), Some(PushStep::HdrCheck));
            assert_eq!(
                run.blocks[i].hdr_ok,
                1 << (1 - i),
                "r{i} kept its peer's header"
            );
        }
        // Writer q overwrites reader r's header slot of q: epoch e, another signature.
        for (r, q) in [(0, 1), (1, 0)] {
            let e = run.epoch_of(r);
            let bad = flag_word(e, run.ranks[r].sig ^ 1);
            for h in 0..2 {
                let loc = run.fam.geo.hdr(r, e as usize % 2, q, h);
                run.mem
                    .store(q, loc, bad, tag(q, 0, WHAT_HDR), MemOrder::Relaxed);
            }
            run.mem.flush(q);
        }
        assert!(run.push_productive(0), "an accepted peer moves HdrCheck");
        act(&mut run, 0);
        assert_eq!(run.cur_step(0), Some(PushStep::Epilogue), "no second read");
        assert_eq!(run.ranks[0].error, 0);
        run.blocks[1].hdr_ok = 0;
        act(&mut run, 1);
        assert_eq!(run.ranks[1].error, ERR_CALL_MISMATCH, "HdrCheck reads it");
    }

    /// With the header read early in PollReduce (and kept), a call with another signature
    /// at epoch e is still caught with CALL_MISMATCH on every world 2-4 (also after clean
    /// calls whose headers were accepted: the kept bits are per call), and the same
    /// configurations without a fault stay clean.
    #[test]
    fn early_header_read_still_catches_mismatched_calls() {
        for world in 2..=4 {
            let mut cfg = PushConfig::new(world, vec![32, 48, 32, 64]);
            cfg.blocks = vec![2, 1, 3];
            let r = check_push(&cfg, 40, 60 + world as u64).unwrap();
            assert!(r.violations.is_empty(), "{:?}", r.violations);
            cfg.scheduler = PushScheduler::Random;
            for fault in [
                PushFault::OtherOp {
                    rank: world - 1,
                    call: 2,
                },
                PushFault::Mismatch {
                    rank: 0,
                    call: 1,
                    more: true,
                },
            ] {
                let call = match fault {
                    PushFault::OtherOp { call, .. } | PushFault::Mismatch { call, .. } => call,
                    _ => unreachable!(),
                };
                cfg.fault = Some(fault);
                let (fam, set) = Push::new(&cfg).unwrap();
                let mut run = Run::new(fam, set);
                let mut dfs = Dfs::default();
                let mut caught = 0;
                for seed in 0..40 {
                    run.begin(chooser_for(&run.set, seed, &mut dfs, 0), None);
                    let v = run.execute();
                    assert!(v.is_empty(), "world {world} {fault:?} seed {seed}: {v:?}");
                    let mismatch = run.ranks.iter().any(|st| {
                        matches!(
                            st.results.get(call),
                            Some(CallOutcome::Err(ERR_CALL_MISMATCH))
                        )
                    });
                    caught += usize::from(mismatch);
                }
                assert_eq!(
                    caught, 40,
                    "world {world} {fault:?}: CALL_MISMATCH every time"
                );
            }
        }
    }
}
