//! Scenario configuration of the checker: [`SimConfig`], injected [`Fault`]s, protocol
//! [`Weakening`]s and the [`Scheduler`] choice.

use std::time::Duration;

use crate::error::SimError;
use crate::program::{self, Protocol, ZcForm};
use crate::types::{Algo, CHUNK_BYTES, MAX_BLOCKS, MAX_RANKS};

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
    /// two-shot without its mid barrier: Gather reads the gather area before the owners'
    /// stores of the reduced slices are known to be visible.
    NoMidBarrier,
    /// Zero-copy variants without their end barrier: a rank returns (and the user writes
    /// its next input) while peers may still read or store into its buffer.
    NoEndBarrier,
    /// No start barrier: readers may read a peer's buffer before its input of this call is
    /// there (or while the peer is still in the previous call).
    NoStartBarrier,
    /// The Scatter step moved after the start barrier (zero-copy two-shot, push form; the
    /// copy-in two-shot too): the start flag no longer publishes the scattered chunks, and
    /// an owner may store its result into my tensor before I read my chunk of its slice.
    /// The inc copy-in one-shot's PushIn moves the same way (a peer may fold its receive
    /// area before my chunk landed there).
    ScatterAfterBarrier,
    /// With [`SimConfig::deferred_gather`]: GatherPrev reads the gather area of the
    /// current call's parity half instead of the other one (where the previous call's
    /// reduced slices are).
    GatherPrevSameParity,
    /// The zero-copy push two-shot's Forward step moved after its end barrier: a rank may
    /// return (and the user read or rewrite its tensor) before the owners' forwarded
    /// results landed in it. Nothing moves at 2 ranks (Forward has no rank to store into).
    ForwardAfterEndBarrier,
}

/// How schedules are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Scheduler {
    /// Seeded random schedules, drawn as [`SimConfig::random`] says: PCT (the default,
    /// [`RandomMode::Pct`]) or a uniform walk ([`RandomMode::Walk`]); loads read random
    /// allowed (stale) values half of the time.
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

/// How [`Scheduler::Random`] draws a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum RandomMode {
    /// PCT ([`crate::sched`]): random priorities per block and per store buffer,
    /// `depth - 1` priority change points; finds depth-`d` races with a probability that
    /// does not fall with the message size. The default (depth [`RandomMode::PCT_DEPTH`]).
    Pct {
        /// Bug depth targeted (>= 1); `depth - 1` change points.
        depth: usize,
    },
    /// Uniform random walk: every step picks uniformly among all enabled actions (each
    /// landable store counted alone). Finds shallow races at small sizes only.
    Walk,
}

impl RandomMode {
    /// The default PCT depth.
    pub const PCT_DEPTH: usize = 3;
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
    /// The hcm table (defaults to [`CUBE_MESH_8`](crate::program::CUBE_MESH_8)).
    pub hcm: Option<[[usize; 4]; 8]>,
    /// Zero-copy variant (one buffer per rank, no parity halves, end barrier), inc and
    /// seed one-shot or inc two-shot. one-shot: the program is the pull form
    /// [`program::inc::one_shot_zc`] (the seed: its own one-shot) with its CopyIn standing
    /// for the user's write of the input and its EndBarrier run. two-shot:
    /// [`program::inc::two_shot_zc`] (symmetric tensors, in place): at each launch the
    /// rank's input of that call is stored into its own buffer (the user's write, after
    /// its previous kernel completed; relaxed stores issued by the block that handles each
    /// chunk), and when the kernel completes every chunk of the own buffer is read back
    /// (after the kernel, by the user) and checked against the reference.
    pub zero_copy: bool,
    /// Which form of the zero-copy two-shot runs (with `zero_copy` and the inc two-shot
    /// only): [`ZcForm::Pull`] (the default, [`program::inc::two_shot_zc`]) or
    /// [`ZcForm::Push`] ([`program::inc::two_shot_zcp`]: each rank's tensor is a region of
    /// its own, written and read back by the user as for the pull form, and the scatter
    /// fills the receive areas of the call's parity half).
    pub zc_form: ZcForm,
    /// The copy-in two-shot as a call in pieces (PROTOCOL.md "Deferred gather"; inc
    /// two-shot without `zero_copy` only): the `calls` calls are consecutive pieces, every
    /// one but the last skips its Gather, and call k+1's GatherPrev reads call k's gather
    /// area in the other parity half (with call k's layout and tags). So the oracle still
    /// sees complete outputs, call k's output is read from its gather area when its kernel
    /// completes (the earliest point the copy could run; GatherPrev is the latest).
    pub deferred_gather: bool,
    /// The copy-in two-shot in its form of lines (PROTOCOL.md "two-shot of lines"; inc
    /// two-shot only, not zero-copy nor in pieces): [`crate::check()`] and
    /// [`crate::replay()`] run the lines family ([`crate::lines::check_lines`]) on the
    /// scenario [`crate::lines::LinesConfig::from_sim`] makes of this one (`calls` calls
    /// of `bytes`, slices of one line). False (the default) is the barrier form. A report
    /// written before this field existed has none: read it as false.
    pub lines: bool,
    /// Injected fault.
    pub fault: Option<Fault>,
    /// Scheduler.
    pub scheduler: Scheduler,
    /// How [`Scheduler::Random`] draws schedules (default PCT).
    pub random: RandomMode,
    /// Deliberately weakened protocol (mutation testing of the checker).
    pub weaken: Option<Weakening>,
    /// Step budget of one schedule; exceeding it is a `timeout` violation (livelock).
    /// The checker uses at least [`SimConfig::auto_max_steps`], which grows with the size.
    pub max_steps: usize,
    /// Replays the shrinker may spend on the first violation of each kind (0 = do not
    /// shrink; the trace is then the found run's, cut to the involved ranks).
    pub shrink_runs: usize,
    /// Wall-clock bound of shrinking one violation (the result stays a valid, replayable
    /// schedule when it is hit, but may then depend on machine speed).
    pub shrink_time: Duration,
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
            zc_form: ZcForm::Pull,
            deferred_gather: false,
            lines: false,
            fault: None,
            weaken: None,
            scheduler: Scheduler::Random,
            random: RandomMode::Pct {
                depth: RandomMode::PCT_DEPTH,
            },
            max_steps: 200_000,
            shrink_runs: 2_000,
            shrink_time: Duration::from_secs(2),
        }
    }

    /// A step budget that no correct run of this configuration comes near: 16 steps per
    /// chunk and 64 per barrier member, per rank, block and call.
    pub fn auto_max_steps(&self) -> usize {
        let chunks = (self.bytes + 4).div_ceil(CHUNK_BYTES);
        let g = self.blocks.iter().copied().max().unwrap_or(1);
        self.world
            .saturating_mul(self.calls)
            .saturating_mul(16 * chunks + 64 * g * self.world + 64)
    }

    pub(super) fn validate(&self) -> Result<(), SimError> {
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
        validate_calls(self.calls)?;
        validate_blocks(&self.blocks, self.threads_per_block)?;
        if self.zero_copy && program::zero_copy_steps(self.protocol, self.algo).is_empty() {
            return bad(format!(
                "{} {} has no zero-copy variant (one-shot, and the inc two-shot, have one)",
                self.protocol, self.algo
            ));
        }
        if self.zc_form == ZcForm::Push
            && !(self.zero_copy && self.protocol == Protocol::Inc && self.algo == Algo::TwoShot)
        {
            return bad(format!(
                "the push form of the zero-copy two-shot needs zero_copy with the inc \
                 two-shot, not {} {}{}",
                self.protocol,
                self.algo,
                if self.zero_copy {
                    ""
                } else {
                    " without zero_copy"
                }
            ));
        }
        if self.deferred_gather
            && (self.protocol != Protocol::Inc || self.algo != Algo::TwoShot || self.zero_copy)
        {
            return bad(format!(
                "deferred gather needs the inc copy-in two-shot, not {} {}{}",
                self.protocol,
                self.algo,
                if self.zero_copy { " zero-copy" } else { "" }
            ));
        }
        if self.weaken == Some(Weakening::GatherPrevSameParity) && !self.deferred_gather {
            return bad("the gather-prev-same-parity weakening needs deferred_gather".into());
        }
        if let Some(t) = &self.hcm {
            crate::cpu::validate_hcm(t)?;
        }
        if let RandomMode::Pct { depth: 0 } = self.random {
            return bad("PCT depth must be >= 1".into());
        }
        let slow_rank = match self.scheduler {
            Scheduler::Adversarial { slow_rank, .. } => Some(slow_rank),
            _ => None,
        };
        let fault_rank = self.fault.map(|f| match f {
            Fault::Kill { rank, .. }
            | Fault::Mismatch { rank, .. }
            | Fault::EpochSkew { rank, .. } => rank,
        });
        validate_ranks(self.world, slow_rank, fault_rank)
    }
}

/// The call count of a scenario made from a [`SimConfig`] (every family's): 1..=64.
pub(super) fn validate_calls(calls: usize) -> Result<(), SimError> {
    if calls == 0 || calls > 64 {
        return Err(SimError::Config(format!("calls {calls} must be 1..=64")));
    }
    Ok(())
}

/// Every family's blocks per call (each 1..=MAX_BLOCKS) and threads per block (>= 1).
pub(super) fn validate_blocks(blocks: &[usize], threads_per_block: usize) -> Result<(), SimError> {
    if blocks.is_empty() || blocks.iter().any(|&b| b == 0 || b > MAX_BLOCKS) {
        return Err(SimError::Config(format!(
            "blocks {blocks:?} must each be 1..={MAX_BLOCKS}"
        )));
    }
    if threads_per_block == 0 {
        return Err(SimError::Config("threads_per_block must be >= 1".into()));
    }
    Ok(())
}

/// Every family's ranks: the adversarial scheduler's slow rank, then the fault's rank,
/// each below `world`.
pub(super) fn validate_ranks(
    world: usize,
    slow_rank: Option<usize>,
    fault_rank: Option<usize>,
) -> Result<(), SimError> {
    if let Some(slow_rank) = slow_rank.filter(|&r| r >= world) {
        return Err(SimError::Config(format!(
            "slow rank {slow_rank} >= world {world}"
        )));
    }
    if let Some(rank) = fault_rank.filter(|&r| r >= world) {
        return Err(SimError::Config(format!(
            "fault rank {rank} >= world {world}"
        )));
    }
    Ok(())
}
