//! The lines checker's scenario: [`LinesConfig`], injected [`LinesFault`]s and protocol
//! [`LinesWeakening`]s (the scheduler is the push checker's [`LinesScheduler`]).

use std::time::Duration;

use crate::check::config::{validate_blocks, validate_calls, validate_ranks};
use crate::check::oracle::LlFault;
use crate::error::SimError;
use crate::types::MAX_RANKS;
use inc_proto::lines::LINE_PAYLOAD;

/// How lines schedules are chosen: the same choices as the push checker's
/// ([`crate::push::PushScheduler`]: PCT by default, uniform walk, adversarial slow rank,
/// exhaustive).
pub type LinesScheduler = crate::check::push::PushScheduler;

/// Largest call of the model, in lines per rank (keeps the location count small).
pub(super) const MAX_LINES: usize = 64;

/// A fault injected into a lines run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum LinesFault {
    /// `rank` never makes call `call` (nor any later one).
    Kill {
        /// The dead rank.
        rank: usize,
        /// First call it misses.
        call: usize,
    },
    /// `rank` makes call `call` with one line (120 bytes) more (`more`) or less than the
    /// others: another count, so another signature, and possibly another slice length
    /// (its lines then land at other offsets of every peer's region).
    Mismatch {
        /// The odd rank.
        rank: usize,
        /// The call that differs.
        call: usize,
        /// One line more (true) or less (false; the call must have at least two lines).
        more: bool,
    },
    /// `rank` makes call `call` with the same bytes as bf16 (twice the count): the same
    /// geometry, another signature.
    OtherDtype {
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

impl LinesFault {
    /// The fault as the engine and the outcome rules see it (shared with the other
    /// LL-family checker).
    pub(super) fn outcome(&self) -> LlFault {
        match *self {
            LinesFault::Kill { rank, call } => LlFault::Kill { rank, call },
            LinesFault::Mismatch { rank, call, .. } | LinesFault::OtherDtype { rank, call } => {
                LlFault::Disagree { rank, call }
            }
            LinesFault::EpochSkew { rank, delta } => LlFault::Skew { rank, delta },
        }
    }
}

/// A deliberate weakening of the lines protocol (mutation testing of the checker).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum LinesWeakening {
    /// No line atomicity: the flag word of a line lands as an event of its own, apart from
    /// the payload, so a reader can see the flag of call e with the payload of an older
    /// write (a stale read).
    SplitLine,
    /// One buffer instead of two parities: a fast peer's lines of call e + 1 land where
    /// my lines of call e were, racing with my clears of them (a line lost: a hang).
    OneParity,
    /// The reader does not clear the flags it took: the checker's "clear what you took"
    /// check (every flag word of my parity 0 after each call, but those of a peer one
    /// call ahead) reports it as a stale-read violation.
    NoClear,
}

/// One lines scenario.
#[derive(Clone, Debug)]
pub struct LinesConfig {
    /// Ranks, 2..=MAX_RANKS.
    pub world: usize,
    /// Bytes per rank of each consecutive call (f32 data, multiples of 4, at most 64 lines
    /// of 120 bytes); its length is the number of calls.
    pub bytes: Vec<u64>,
    /// A slice is a whole number of this many lines (1..=8). The protocol's is
    /// [`inc_proto::lines::SLICE_LINES_ALIGN`] (4); smaller keeps the model's runs short
    /// (every slice still has at least one line, so every rank still sends lines to every
    /// other rank in both steps, which the two-parity argument needs).
    pub slice_align: u64,
    /// Blocks per call (cycled), each 1..=MAX_BLOCKS.
    pub blocks: Vec<usize>,
    /// Lines per block in the grid-stride partition of a slice.
    pub threads_per_block: usize,
    /// Injected fault.
    pub fault: Option<LinesFault>,
    /// Weakened protocol.
    pub weaken: Option<LinesWeakening>,
    /// Scheduler.
    pub scheduler: LinesScheduler,
    /// Step budget of one schedule (exceeding it is a `timeout` violation).
    pub max_steps: usize,
    /// Replays the shrinker may spend on the first violation of each kind (0 = do not
    /// shrink), as [`crate::SimConfig::shrink_runs`].
    pub shrink_runs: usize,
    /// Wall-clock bound of shrinking one violation, as [`crate::SimConfig::shrink_time`].
    pub shrink_time: Duration,
}

impl LinesConfig {
    /// A fault-free scenario under the default scheduler (PCT): `world` ranks, one call per
    /// entry of `bytes`, slices aligned to one line, two blocks.
    pub fn new(world: usize, bytes: Vec<u64>) -> Self {
        LinesConfig {
            world,
            bytes,
            slice_align: 1,
            blocks: vec![2],
            threads_per_block: 1,
            fault: None,
            weaken: None,
            scheduler: LinesScheduler::Pct {
                depth: crate::RandomMode::PCT_DEPTH,
            },
            max_steps: 400_000,
            shrink_runs: 2_000,
            shrink_time: Duration::from_secs(2),
        }
    }

    /// The lines scenario of a [`crate::SimConfig`] with `lines` set (what
    /// [`crate::check()`] and [`crate::replay()`] run): the inc two-shot, `calls` calls of
    /// `bytes` each, its blocks, threads per block, scheduler ([`LinesScheduler`], as the
    /// push family maps it: the adversarial scheduler's stalled block is dropped), step
    /// budget (at least [`crate::SimConfig::auto_max_steps`]) and shrink budget; slices of
    /// one line (the model's short runs, [`LinesConfig::slice_align`]). Faults: `Kill` and
    /// `EpochSkew` as they are, `Mismatch` becomes one line more. Weakenings:
    /// [`crate::Weakening::NoRotation`] becomes [`LinesWeakening::OneParity`]; the others
    /// have no counterpart in a protocol without barriers (error), nor have the seed
    /// protocol, other algorithms, zero-copy and deferred gather.
    pub fn from_sim(cfg: &crate::SimConfig) -> Result<Self, SimError> {
        use crate::{Algo, Fault, Protocol, Weakening, ZcForm};
        let no = |what: &str| {
            Err(SimError::Config(format!(
                "the two-shot of lines has no {what}"
            )))
        };
        if cfg.algo != Algo::TwoShot {
            return Err(SimError::Config(format!(
                "the form of lines is the copy-in two-shot's (algo two-shot), not {}",
                cfg.algo
            )));
        }
        if cfg.protocol != Protocol::Inc {
            return no("seed variant (the seed's two-shot has barriers only)");
        }
        if cfg.zero_copy || cfg.zc_form != ZcForm::Pull {
            return no("zero-copy variant in the checker (copy-in only)");
        }
        if cfg.deferred_gather {
            return no("deferred gather (a call of lines is never in pieces)");
        }
        let weaken = match cfg.weaken {
            None => None,
            Some(Weakening::NoRotation) => Some(LinesWeakening::OneParity),
            Some(w) => {
                return no(&format!(
                    "{w:?} weakening (it has no barriers nor flags apart from its lines)"
                ))
            }
        };
        let fault = cfg.fault.map(|f| match f {
            Fault::Kill { rank, call } => LinesFault::Kill { rank, call },
            Fault::Mismatch { rank, call } => LinesFault::Mismatch {
                rank,
                call,
                more: true,
            },
            Fault::EpochSkew { rank, delta } => LinesFault::EpochSkew { rank, delta },
        });
        validate_calls(cfg.calls)?;
        Ok(LinesConfig {
            world: cfg.world,
            bytes: vec![cfg.bytes as u64; cfg.calls],
            slice_align: 1,
            blocks: cfg.blocks.clone(),
            threads_per_block: cfg.threads_per_block,
            fault,
            weaken,
            scheduler: LinesScheduler::from_sim(cfg),
            max_steps: cfg.max_steps.max(cfg.auto_max_steps()),
            shrink_runs: cfg.shrink_runs,
            shrink_time: cfg.shrink_time,
        })
    }

    /// Bytes of rank r's call k (the fault's odd rank may differ).
    pub(super) fn bytes_of(&self, r: usize, k: usize) -> u64 {
        let base = self.bytes.get(k).copied().unwrap_or(4);
        match self.fault {
            Some(LinesFault::Mismatch { rank, call, more }) if rank == r && call == k => {
                if more {
                    base + LINE_PAYLOAD as u64
                } else {
                    base.saturating_sub(LINE_PAYLOAD as u64).max(4)
                }
            }
            _ => base,
        }
    }

    pub(super) fn validate(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::Config(m));
        if self.world < 2 || self.world > MAX_RANKS {
            return bad(format!("world {} must be 2..={MAX_RANKS}", self.world));
        }
        if self.bytes.is_empty() || self.bytes.len() > 64 {
            return bad(format!("{} calls, must be 1..=64", self.bytes.len()));
        }
        // One line more than the largest call still fits the model (a 'more' mismatch).
        let max = ((MAX_LINES - 1) * LINE_PAYLOAD) as u64;
        if let Some(b) = self
            .bytes
            .iter()
            .find(|&&b| b == 0 || b % 4 != 0 || b > max)
        {
            return bad(format!("bytes {b} must be a multiple of 4 in 4..={max}"));
        }
        if self.slice_align == 0 || self.slice_align > 8 {
            return bad(format!("slice_align {} must be 1..=8", self.slice_align));
        }
        validate_blocks(&self.blocks, self.threads_per_block)?;
        validate_ranks(
            self.world,
            self.scheduler.slow_rank(),
            self.fault.map(|f| f.outcome().rank()),
        )?;
        match self.fault {
            Some(
                LinesFault::Mismatch { call, .. }
                | LinesFault::OtherDtype { call, .. }
                | LinesFault::Kill { call, .. },
            ) if call >= self.bytes.len() => {
                return bad(format!("fault call {call} >= calls {}", self.bytes.len()));
            }
            Some(LinesFault::Mismatch {
                call, more: false, ..
            }) if self
                .bytes
                .get(call)
                .is_some_and(|&b| b <= LINE_PAYLOAD as u64) =>
            {
                return bad("a 'less' mismatch needs a call of at least two lines".into());
            }
            _ => {}
        }
        Ok(())
    }
}
