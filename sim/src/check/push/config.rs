//! The push checker's scenario: [`PushConfig`], injected [`PushFault`]s, protocol
//! [`PushWeakening`]s and the [`PushScheduler`] choice.

use std::time::Duration;

use crate::check::config::{validate_blocks, validate_calls, validate_ranks};
use crate::check::oracle::LlFault;
use crate::error::SimError;
use crate::types::{CHUNK_BYTES, MAX_RANKS};

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
    /// The fault as the engine and the outcome rules see it (shared with the other
    /// LL-family checker).
    pub(super) fn outcome(&self) -> LlFault {
        match *self {
            PushFault::Kill { rank, call } => LlFault::Kill { rank, call },
            PushFault::Mismatch { rank, call, .. } | PushFault::OtherOp { rank, call } => {
                LlFault::Disagree { rank, call }
            }
            PushFault::EpochSkew { rank, delta } => LlFault::Skew { rank, delta },
        }
    }
}

/// A deliberate weakening of the push protocol (mutation testing of the checker).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum PushWeakening {
    /// One receive buffer for every call instead of two parities: a fast peer's lines of
    /// call e+1 overwrite lines of call e that the reader has not consumed yet.
    OneBuffer,
    /// Skip the header check (step 3), and with it the header reads PollReduce makes for
    /// it (only the poll's slow path still reads the header): a peer that sends more
    /// chunks, or the same bytes with another dtype/op, goes unnoticed.
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
    /// Seeded uniform random walk over the enabled actions (each landable store counted
    /// alone) and random allowed (possibly stale) load values; what
    /// [`crate::RandomMode::Walk`] selects.
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
    /// Every interleaving and value choice among the first `depth` choice points
    /// ([`crate::Scheduler::Exhaustive`]).
    Exhaustive {
        /// Choice points that branch.
        depth: usize,
    },
}

impl PushScheduler {
    /// The scheduler a [`crate::SimConfig`] selects (its [`crate::Scheduler`] and
    /// [`crate::RandomMode`]); the adversarial scheduler's stalled block is dropped.
    pub(crate) fn from_sim(cfg: &crate::SimConfig) -> Self {
        use crate::{RandomMode, Scheduler};
        match cfg.scheduler {
            Scheduler::Random => match cfg.random {
                RandomMode::Walk => PushScheduler::Random,
                RandomMode::Pct { depth } => PushScheduler::Pct { depth },
            },
            Scheduler::Adversarial { slow_rank, .. } => PushScheduler::Adversarial { slow_rank },
            Scheduler::Exhaustive { depth } => PushScheduler::Exhaustive { depth },
        }
    }

    /// The adversarial scheduler's lagging rank (validated against the world).
    pub(crate) fn slow_rank(self) -> Option<usize> {
        match self {
            PushScheduler::Adversarial { slow_rank } => Some(slow_rank),
            _ => None,
        }
    }

    /// The engine's scheduler and random mode for this choice (the push and the lines
    /// checkers' set-up).
    pub(crate) fn engine(self) -> (crate::Scheduler, crate::RandomMode) {
        use crate::{RandomMode, Scheduler};
        match self {
            PushScheduler::Random => (Scheduler::Random, RandomMode::Walk),
            PushScheduler::Pct { depth } => (Scheduler::Random, RandomMode::Pct { depth }),
            PushScheduler::Adversarial { slow_rank } => {
                let stall = None;
                (
                    Scheduler::Adversarial { slow_rank, stall },
                    RandomMode::Walk,
                )
            }
            PushScheduler::Exhaustive { depth } => {
                (Scheduler::Exhaustive { depth }, RandomMode::Walk)
            }
        }
    }
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
    /// Calls (indices into `bytes`) made with the v1 one-shot (push form: store into every
    /// peer's receive area of this parity half, start barrier, fold my own receive areas):
    /// they advance the epoch like any call.
    pub barrier_calls: Vec<usize>,
    /// Injected fault.
    pub fault: Option<PushFault>,
    /// Weakened protocol.
    pub weaken: Option<PushWeakening>,
    /// Scheduler.
    pub scheduler: PushScheduler,
    /// Step budget of one schedule (exceeding it is a `timeout` violation).
    pub max_steps: usize,
    /// Replays the shrinker may spend on the first violation of each kind (0 = do not
    /// shrink), as [`crate::SimConfig::shrink_runs`].
    pub shrink_runs: usize,
    /// Wall-clock bound of shrinking one violation, as [`crate::SimConfig::shrink_time`].
    pub shrink_time: Duration,
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
            shrink_runs: 2_000,
            shrink_time: Duration::from_secs(2),
        }
    }

    /// The push scenario of a [`crate::SimConfig`] with `algo = PushOneShot` (what
    /// [`crate::check()`] runs): `calls` calls of `bytes` each; `Mismatch` becomes one chunk
    /// more; `NoRotation` becomes [`PushWeakening::OneBuffer`]. The seed protocol,
    /// zero-copy and the barrier weakenings have no push counterpart (error); the
    /// adversarial scheduler's stalled block is ignored.
    pub fn from_sim(cfg: &crate::SimConfig) -> Result<Self, SimError> {
        use crate::{Fault, Weakening};
        let no = |what: &str| Err(SimError::Config(format!("push-one-shot has no {what}")));
        if cfg.protocol == crate::Protocol::Seed {
            return no("seed variant (the seed has no push algorithm)");
        }
        if cfg.zero_copy {
            return no("zero-copy variant");
        }
        if cfg.deferred_gather {
            return no("deferred gather (a two-shot in pieces)");
        }
        if cfg.lines {
            return no("form of lines (the copy-in two-shot's)");
        }
        let scheduler = PushScheduler::from_sim(cfg);
        let weaken = match cfg.weaken {
            None => None,
            Some(Weakening::NoRotation) => Some(PushWeakening::OneBuffer),
            Some(Weakening::RelaxedFlags) => return no("relaxed-flags weakening"),
            Some(Weakening::NoMidBarrier) => return no("no-mid-barrier weakening"),
            Some(Weakening::NoEndBarrier) => return no("no-end-barrier weakening"),
            Some(Weakening::NoStartBarrier) => return no("no-start-barrier weakening"),
            Some(Weakening::ScatterAfterBarrier) => return no("scatter-after-barrier weakening"),
            Some(Weakening::GatherPrevSameParity) => {
                return no("gather-prev-same-parity weakening")
            }
            Some(Weakening::ForwardAfterEndBarrier) => {
                return no("forward-after-end-barrier weakening")
            }
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
        validate_calls(cfg.calls)?;
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
            shrink_runs: cfg.shrink_runs,
            shrink_time: cfg.shrink_time,
        })
    }

    pub(super) fn validate(&self) -> Result<(), SimError> {
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
        validate_blocks(&self.blocks, self.threads_per_block)?;
        if let Some(k) = self.barrier_calls.iter().find(|&&k| k >= self.bytes.len()) {
            return bad(format!("barrier call {k} >= calls {}", self.bytes.len()));
        }
        if let Some(PushFault::Mismatch { call, .. } | PushFault::OtherOp { call, .. }) = self.fault
        {
            if self.barrier_calls.contains(&call) {
                return bad(format!("mismatch fault on barrier call {call}"));
            }
        }
        validate_ranks(
            self.world,
            self.scheduler.slow_rank(),
            self.fault.map(|f| f.outcome().rank()),
        )?;
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
