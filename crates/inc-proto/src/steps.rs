//! The step names of every `inc` program, in order (PROTOCOL.md). The kernels mark each
//! step `// STEP <kernel> <n> <Name>` and inc-cuda's tests compare the markers with these
//! lists; inc-sim's tests compare them with its programs (`inc_sim::program`), which are
//! the protocol as data.

use crate::types::Algo;

/// One-shot (push form): store my input into every peer's receive area, start barrier,
/// fold the receive areas locally.
pub const ONE_SHOT: &[&str] = &["Prologue", "PushIn", "Barrier", "ReduceRecv", "Epilogue"];

/// Zero-copy one-shot on symmetric tensors (kernel variant `one_shot_zc`): start barrier,
/// read and reduce every rank's tensor, end barrier (`CopyIn` stands for the user's write
/// of its tensor).
pub const ONE_SHOT_ZC: &[&str] = &[
    "Prologue",
    "CopyIn",
    "Barrier",
    "ReduceAll",
    "EndBarrier",
    "Epilogue",
];

/// Two-shot (push): scatter into the owners, barrier, reduce the slice, (in pieces: the
/// previous piece's deferred gather, done before the mid flag), barrier, gather (deferred
/// in pieces).
pub const TWO_SHOT: &[&str] = &[
    "Prologue",
    "Scatter",
    "Barrier",
    "ReduceSlice",
    "GatherPrev",
    "Barrier",
    "Gather",
    "Epilogue",
];

/// Two-shot of 128-byte lines (kernel variant `two_shot_lines`; [`crate::lines::STEP_NAMES`]).
pub const TWO_SHOT_LINES: &[&str] = &crate::lines::STEP_NAMES;

/// Hybrid cube mesh (8 ranks).
pub const HCM: &[&str] = &[
    "Prologue",
    "CopyIn",
    "Barrier",
    "QuadReduce",
    "Barrier",
    "RelayReduce",
    "Epilogue",
];

/// Push one-shot, LL protocol ([`crate::push::PUSH_STEP_NAMES`]).
pub const PUSH_ONE_SHOT: &[&str] = &crate::push::PUSH_STEP_NAMES;

/// Zero-copy two-shot on symmetric tensors, pull form (kernel variant `two_shot_zc`).
pub const TWO_SHOT_ZC: &[&str] = &[
    "Prologue",
    "Barrier",
    "ReduceStore",
    "EndBarrier",
    "Epilogue",
];

/// Zero-copy two-shot on symmetric tensors, push form (kernel variant `two_shot_zcp`).
pub const TWO_SHOT_ZCP: &[&str] = &[
    "Prologue",
    "Scatter",
    "Barrier",
    "ReduceStore",
    "Forward",
    "EndBarrier",
    "Epilogue",
];

/// The step names of the `inc` program of `algo`.
pub const fn step_names(algo: Algo) -> &'static [&'static str] {
    match algo {
        Algo::OneShot => ONE_SHOT,
        Algo::TwoShot => TWO_SHOT,
        Algo::Hcm => HCM,
        Algo::PushOneShot => PUSH_ONE_SHOT,
    }
}
