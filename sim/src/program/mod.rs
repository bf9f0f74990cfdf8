//! The protocol of every algorithm as data: a list of steps per block.
//!
//! `program::inc::*` is the single source of the `inc` protocol (PROTOCOL.md v1): the
//! simulator executes these lists, the CPU backend follows them, and each CUDA kernel marks
//! its steps with `// STEP <algo> <n> <Name>` comments that an inc-cuda test compares with
//! [`step_names`] (the zero-copy one-shot's `// STEP one_shot_zc <n> <Name>` markers with
//! [`one_shot_zc_step_names`], the zero-copy two-shot's `// STEP two_shot_zc <n> <Name>`
//! with [`two_shot_zc_step_names`], and its push form's `// STEP two_shot_zcp <n> <Name>`
//! with [`two_shot_zcp_step_names`]). The copy-in one-shot is a push form too
//! ([`inc::one_shot`]: PushIn into every peer's receive areas, start barrier, ReduceRecv
//! from my own); the zero-copy one-shot keeps the pull form ([`inc::one_shot_zc`]).
//! `program::seed::*` encodes what the seed's kernels do, for contrast.

use crate::types::Algo;
pub use crate::types::BarrierKind;

/// Which peers a barrier synchronises with (relative to the executing rank r).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum PeerSet {
    /// Every rank except r.
    Others,
    /// Every rank including r (the seed signals itself too).
    All,
    /// The three quad neighbours `hcm[r][0..3]`.
    Quad,
    /// The relay neighbour `hcm[r][3]`.
    Relay,
}

impl PeerSet {
    /// Lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            PeerSet::Others => "others",
            PeerSet::All => "all",
            PeerSet::Quad => "quad",
            PeerSet::Relay => "relay",
        }
    }

    /// The member ranks for rank `rank` of `world` (hcm row needed for Quad/Relay).
    pub fn members(self, rank: usize, world: usize, hcm: Option<&[usize; 4]>) -> Vec<usize> {
        match self {
            PeerSet::Others => (0..world).filter(|&q| q != rank).collect(),
            PeerSet::All => (0..world).collect(),
            PeerSet::Quad => hcm.map(|h| h[..3].to_vec()).unwrap_or_default(),
            PeerSet::Relay => hcm.map(|h| vec![h[3]]).unwrap_or_default(),
        }
    }
}

/// One step of a block's program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Step {
    /// Exit at once if aborted; read this block's epoch word (`e = epochs[b] + 1`).
    Prologue,
    /// Copy my chunks of the input into my own symmetric buffer.
    CopyIn,
    /// one-shot (inc, push form): store my input chunk c (my chunks of the call) into
    /// every peer q's receive area `R[me]` of this call's parity half, at chunk offset
    /// `me x C + c` (C = chunks of the call; plain relaxed remote stores, no fence: the
    /// start barrier's release publishes them). My own half's `R[me]` is unused.
    PushIn,
    /// Signal every peer of `set`, then wait for each of them (flag array `kind`).
    Barrier {
        /// Flag array used.
        kind: BarrierKind,
        /// Peers synchronised with.
        set: PeerSet,
    },
    /// one-shot: `out[c] = fold(peer[0..W].buf[c])`.
    ReduceAll,
    /// one-shot (inc, push form): for my chunks c, `out[c] = fold over s = 0..W in rank
    /// order of (s == me ? my input chunk c : my own R[s][c])` (`R[s][c]` at chunk offset
    /// `s x C + c` of my own half of this call: local reads). Output only: nothing is
    /// stored into the symmetric buffers.
    ReduceRecv,
    /// two-shot (inc, push form): store my chunks of every peer q's slice into that
    /// peer's receive area `R[me]` (plain remote stores; copy-in fused with the transfer).
    Scatter,
    /// two-shot: reduce my slice. inc: fold my input and my own receive areas `R[s]` in
    /// rank order, write the output and store the result into every peer's gather area
    /// `G`. seed: fold every peer's buffer and write the result in place in my own buffer.
    ReduceSlice,
    /// two-shot (inc, push form), a call in pieces only (flag PREV_GATHER): the previous
    /// piece's deferred [`Step::Gather`], from my own gather area `G` of the other parity
    /// half with the previous piece's layout into the previous piece's output (local reads,
    /// before the mid barrier; the kernel runs it on copy blocks from its start, which the
    /// other blocks wait for before their mid flags). Nothing to do for a call of its own.
    GatherPrev,
    /// two-shot: copy the other slices out. inc: from my own gather area `G` (local
    /// reads; skipped by every piece but the last of a call in pieces, flag DEFER_GATHER:
    /// the next piece's [`Step::GatherPrev`] does it); seed: from each owner's buffer (peer
    /// reads).
    Gather,
    /// hcm: `partial[c] = fold over quad(r)`.
    QuadReduce,
    /// hcm: `out[c] = lo.partial[c] (+) hi.partial[c]`.
    RelayReduce,
    /// End barrier with every reader of my buffer (zero-copy variants only): flag array
    /// `end`, set = every rank except me.
    EndBarrier,
    /// two-shot, zero-copy (symmetric tensors, in place): for my chunks of my slice, fold
    /// `buf[q][c]` over every rank q in rank order, then store the result into `buf[q][c]`
    /// of every rank q (my own included). Only the slice's owner touches its chunks. Push
    /// form ([`inc::two_shot_zcp`]): into my own tensor and rank me + 1's only, the other
    /// ranks' in [`Step::Forward`].
    ReduceStore,
    /// two-shot, zero-copy, push form: for my chunks of my slice, read chunk c back from my
    /// own tensor (the result [`Step::ReduceStore`] stored there; only the owner writes its
    /// slice) and store it into `buf[q][c]` of every rank q other than me and me + 1 (local
    /// reads, plain remote stores). Nothing to do at 2 ranks.
    Forward,
    /// push (LL): write my header line `{sig, e, sig, e}` into `hdr[e % 2][me]` of every
    /// peer, and my chunks as tagged lines `{data, e, data, e}` into `slot[e % 2][me]` of
    /// every peer (one relaxed 16-byte store per line, no fence).
    PushData,
    /// push (LL): poll my own slots until every tag of a chunk's two lines is `e`, fold in
    /// rank order (my own data straight from my input).
    PollReduce,
    /// push (LL): wait for every peer's header line of call `e` and compare its signature
    /// (mismatch detection).
    HdrCheck,
    /// Advance this block's epoch word (block 0 also those of blocks not launched).
    Epilogue,
}

impl Step {
    /// The step's name as written in PROTOCOL.md and in the kernels' `// STEP` markers.
    pub const fn name(&self) -> &'static str {
        match self {
            Step::Prologue => "Prologue",
            Step::CopyIn => "CopyIn",
            Step::PushIn => "PushIn",
            Step::Scatter => "Scatter",
            Step::GatherPrev => "GatherPrev",
            Step::Barrier { .. } => "Barrier",
            Step::ReduceAll => "ReduceAll",
            Step::ReduceRecv => "ReduceRecv",
            Step::ReduceSlice => "ReduceSlice",
            Step::Gather => "Gather",
            Step::QuadReduce => "QuadReduce",
            Step::RelayReduce => "RelayReduce",
            Step::EndBarrier => "EndBarrier",
            Step::ReduceStore => "ReduceStore",
            Step::Forward => "Forward",
            Step::PushData => "PushData",
            Step::PollReduce => "PollReduce",
            Step::HdrCheck => "HdrCheck",
            Step::Epilogue => "Epilogue",
        }
    }

    /// Longer description used in traces (`Barrier(start, others)`).
    pub fn describe(&self) -> String {
        match self {
            Step::Barrier { kind, set } => format!("Barrier({}, {})", kind.name(), set.name()),
            other => other.name().to_string(),
        }
    }
}

/// The `inc` protocol (PROTOCOL.md v1): sequence-number flags, two parity halves,
/// bounded waits with abort.
pub mod inc {
    use super::{BarrierKind, PeerSet, Step};

    /// PROTOCOL.md "one-shot" (kernel `kernels/one_shot.cu`), push form: each rank
    /// stores its chunks into every peer's receive area `R[me]` of the call's parity half
    /// (copy-in fused with the transfer), start barrier (its release/acquire publishes the
    /// stores), then folds its own input and its own receive areas in rank order (local
    /// reads). No end barrier: the parity halves stand in for it, as for the two-shot (a
    /// peer writes my half of call n again only in call n+2, which it starts after call
    /// n+1's start barrier, which needs my flag of n+1, raised after I finished call n).
    pub fn one_shot() -> Vec<Step> {
        vec![
            Step::Prologue,
            Step::PushIn,
            Step::Barrier {
                kind: BarrierKind::Start,
                set: PeerSet::Others,
            },
            Step::ReduceRecv,
            Step::Epilogue,
        ]
    }

    /// PROTOCOL.md "one-shot, zero-copy" (kernel `inc_one_shot_zc`, markers `// STEP
    /// one_shot_zc <n> <Name>`): the pull form on symmetric tensors. CopyIn stands for the
    /// user's write of its tensor, start barrier, every rank folds every rank's tensor in
    /// rank order (peer reads), end barrier (nobody still reads my tensor when my kernel
    /// returns and the user rewrites it).
    pub fn one_shot_zc() -> Vec<Step> {
        vec![
            Step::Prologue,
            Step::CopyIn,
            Step::Barrier {
                kind: BarrierKind::Start,
                set: PeerSet::Others,
            },
            Step::ReduceAll,
            Step::EndBarrier,
            Step::Epilogue,
        ]
    }

    /// PROTOCOL.md "two-shot", push form (kernel `kernels/two_shot.cu`): scatter by
    /// remote stores, reduce my slice locally, store it into every peer's gather area,
    /// gather locally. No copy-in and no end barrier (the parity halves stand in for it).
    /// A call in pieces defers each piece's Gather to the next piece's GatherPrev
    /// (PROTOCOL.md "Deferred gather"; a no-op for a call of its own).
    pub fn two_shot() -> Vec<Step> {
        vec![
            Step::Prologue,
            Step::Scatter,
            Step::Barrier {
                kind: BarrierKind::Start,
                set: PeerSet::Others,
            },
            Step::ReduceSlice,
            Step::GatherPrev,
            Step::Barrier {
                kind: BarrierKind::Mid,
                set: PeerSet::Others,
            },
            Step::Gather,
            Step::Epilogue,
        ]
    }

    /// PROTOCOL.md "two-shot, zero-copy (symmetric tensors)" (kernel `kernels/two_shot.cu`,
    /// markers `// STEP two_shot_zc <n> <Name>`): every rank's tensor lives in its own
    /// peer-mapped allocation and the call is in place. Start barrier (every input ready,
    /// nobody still in the previous call), each owner folds its slice straight from every
    /// rank's tensor and stores the result into every rank's tensor, end barrier (nobody
    /// still reads or writes my tensor when my kernel returns). No scratch area, so no
    /// parity halves and no mid barrier.
    pub fn two_shot_zc() -> Vec<Step> {
        vec![
            Step::Prologue,
            Step::Barrier {
                kind: BarrierKind::Start,
                set: PeerSet::Others,
            },
            Step::ReduceStore,
            Step::EndBarrier,
            Step::Epilogue,
        ]
    }

    /// PROTOCOL.md "two-shot, zero-copy (symmetric tensors)", push form (kernel
    /// `kernels/two_shot.cu` `inc_two_shot_zcp`, markers `// STEP two_shot_zcp <n> <Name>`):
    /// each rank scatters its chunks of every peer's slice, read from its own symmetric
    /// tensor, into that owner's receive area `R[me]` of this call's parity half (the
    /// copy-in two-shot's Scatter with the tensor as source); start barrier; each owner
    /// folds its own tensor and its own receive areas in rank order and stores the result
    /// into its own tensor and rank me + 1's, then forwards it from its own tensor into
    /// every other rank's (the all-gather lands in place, no copy-out pass); end barrier
    /// (the user's next write of a tensor comes after every store into it).
    pub fn two_shot_zcp() -> Vec<Step> {
        vec![
            Step::Prologue,
            Step::Scatter,
            Step::Barrier {
                kind: BarrierKind::Start,
                set: PeerSet::Others,
            },
            Step::ReduceStore,
            Step::Forward,
            Step::EndBarrier,
            Step::Epilogue,
        ]
    }

    /// PROTOCOL.md "push one-shot" (kernel `kernels/push_one_shot.cu`; checked by
    /// [`crate::push::check_push`], which executes these steps).
    pub fn push_one_shot() -> Vec<Step> {
        vec![
            Step::Prologue,
            Step::PushData,
            Step::PollReduce,
            Step::HdrCheck,
            Step::Epilogue,
        ]
    }

    /// PROTOCOL.md "two-shot of lines" (`inc_proto::lines::STEP_NAMES`; checked by
    /// [`crate::lines::check_lines`]): Scatter stores flagged lines, ReduceStore and Gather
    /// poll them (no barrier).
    pub fn two_shot_lines() -> Vec<Step> {
        vec![
            Step::Prologue,
            Step::Scatter,
            Step::ReduceStore,
            Step::Gather,
            Step::Epilogue,
        ]
    }

    /// PROTOCOL.md "hybrid cube mesh" (kernel `kernels/hcm.cu`).
    pub fn hcm() -> Vec<Step> {
        vec![
            Step::Prologue,
            Step::CopyIn,
            Step::Barrier {
                kind: BarrierKind::Start,
                set: PeerSet::Quad,
            },
            Step::QuadReduce,
            Step::Barrier {
                kind: BarrierKind::Mid,
                set: PeerSet::Relay,
            },
            Step::RelayReduce,
            Step::Epilogue,
        ]
    }
}

/// What the seed's kernels do: counting semaphores (atomicAdd/CAS), a single
/// non-rotated buffer filled by a memcpy before the kernel, no end barrier, no timeout.
pub mod seed {
    use super::{BarrierKind, PeerSet, Step};

    /// The seed's one-shot: start barrier (including itself), rotated-order sum.
    pub fn one_shot() -> Vec<Step> {
        vec![
            Step::Prologue,
            Step::CopyIn,
            Step::Barrier {
                kind: BarrierKind::Start,
                set: PeerSet::All,
            },
            Step::ReduceAll,
            Step::Epilogue,
        ]
    }

    /// The seed's two-shot: start barrier, reduce slice, second barrier, gather.
    pub fn two_shot() -> Vec<Step> {
        vec![
            Step::Prologue,
            Step::CopyIn,
            Step::Barrier {
                kind: BarrierKind::Start,
                set: PeerSet::All,
            },
            Step::ReduceSlice,
            Step::Barrier {
                kind: BarrierKind::Mid,
                set: PeerSet::All,
            },
            Step::Gather,
            Step::Epilogue,
        ]
    }

    /// The seed's hcm: barrier with 3 neighbours, quad sum, barrier with the relay (both
    /// on `signals0`), relay sum: the steps of [`super::inc::hcm`]; what differs is how the
    /// seed's barriers work (counting semaphores, no end barrier), which the engine takes
    /// from the protocol, not from the steps.
    pub fn hcm() -> Vec<Step> {
        super::inc::hcm()
    }
}

/// A hybrid cube mesh table (`[n0, n1, n2, relay]` per rank) for the DGX-1 wiring: quads
/// {0,1,2,3} and {4,5,6,7}, relay r <-> r^4; `hcm[x][k] = y` implies `hcm[y][k] = x`.
/// Tests and `inc sim` use it when no table is given (inc-sim does not depend on inc-topo).
pub const CUBE_MESH_8: [[usize; 4]; 8] = [
    [1, 2, 3, 4],
    [0, 3, 2, 5],
    [3, 0, 1, 6],
    [2, 1, 0, 7],
    [5, 6, 7, 0],
    [4, 7, 6, 1],
    [7, 4, 5, 2],
    [6, 5, 4, 3],
];

/// Which protocol set a program comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Protocol {
    /// What the seed does.
    Seed,
    /// Ours (PROTOCOL.md v1).
    Inc,
}

impl Protocol {
    /// Lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Seed => "seed",
            Protocol::Inc => "inc",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Protocol {
    type Err = crate::error::SimError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "seed" => Ok(Protocol::Seed),
            "inc" => Ok(Protocol::Inc),
            _ => Err(crate::error::SimError::Parse {
                what: "protocol (seed|inc)",
                value: s.to_string(),
            }),
        }
    }
}

/// The step list of `algo` in protocol set `protocol`.
pub fn steps(protocol: Protocol, algo: Algo) -> Vec<Step> {
    match (protocol, algo) {
        (Protocol::Inc, Algo::OneShot) => inc::one_shot(),
        (Protocol::Inc, Algo::TwoShot) => inc::two_shot(),
        (Protocol::Inc, Algo::Hcm) => inc::hcm(),
        (Protocol::Inc, Algo::PushOneShot) => inc::push_one_shot(),
        // The seed has no push algorithm (the checker rejects this pair).
        (Protocol::Seed, Algo::PushOneShot) => Vec::new(),
        (Protocol::Seed, Algo::OneShot) => seed::one_shot(),
        (Protocol::Seed, Algo::TwoShot) => seed::two_shot(),
        (Protocol::Seed, Algo::Hcm) => seed::hcm(),
    }
}

/// Names of the `inc` program of `algo`, in order; the CUDA kernel's `// STEP <algo> <n>
/// <Name>` markers must list exactly these.
pub fn step_names(algo: Algo) -> Vec<&'static str> {
    steps(Protocol::Inc, algo).iter().map(Step::name).collect()
}

/// The step list of the zero-copy variant of `algo` in protocol set `protocol` (what the
/// checker runs for [`crate::SimConfig::zero_copy`]): the inc one-shot's
/// [`inc::one_shot_zc`] (the pull form: its CopyIn stands for the user's write of the
/// input, its EndBarrier runs), the seed's own one-shot program, the inc two-shot's
/// [`inc::two_shot_zc`]; empty where there is no zero-copy variant (hcm, push, the seed's
/// two-shot).
pub fn zero_copy_steps(protocol: Protocol, algo: Algo) -> Vec<Step> {
    match (protocol, algo) {
        (Protocol::Inc, Algo::OneShot) => inc::one_shot_zc(),
        (Protocol::Seed, Algo::OneShot) => seed::one_shot(),
        (Protocol::Inc, Algo::TwoShot) => inc::two_shot_zc(),
        _ => Vec::new(),
    }
}

/// Which form of the zero-copy two-shot (symmetric tensors) runs: inc keeps both and
/// picks by size (pull up to a few MiB, push above; the switch is measured in inc-cuda).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ZcForm {
    /// [`inc::two_shot_zc`]: each owner reads its slice from every rank's tensor.
    #[default]
    Pull,
    /// [`inc::two_shot_zcp`]: every rank pushes its chunks into the owners' receive areas
    /// first; the owner reads locally.
    Push,
}

impl ZcForm {
    /// Lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            ZcForm::Pull => "pull",
            ZcForm::Push => "push",
        }
    }

    /// The inc program of this form of the zero-copy two-shot.
    pub fn steps(self) -> Vec<Step> {
        match self {
            ZcForm::Pull => inc::two_shot_zc(),
            ZcForm::Push => inc::two_shot_zcp(),
        }
    }
}

/// Names of [`inc::two_shot_zcp`], in order; the CUDA kernel's `// STEP two_shot_zcp <n>
/// <Name>` markers must list exactly these.
pub fn two_shot_zcp_step_names() -> Vec<&'static str> {
    inc::two_shot_zcp().iter().map(Step::name).collect()
}

/// Names of [`inc::one_shot_zc`], in order; the CUDA kernel's `// STEP one_shot_zc <n>
/// <Name>` markers must list exactly these.
pub fn one_shot_zc_step_names() -> Vec<&'static str> {
    inc::one_shot_zc().iter().map(Step::name).collect()
}

/// Names of [`inc::two_shot_zc`], in order; the CUDA kernel's `// STEP two_shot_zc <n>
/// <Name>` markers must list exactly these.
pub fn two_shot_zc_step_names() -> Vec<&'static str> {
    inc::two_shot_zc().iter().map(Step::name).collect()
}

#[cfg(test)]
mod tests;
