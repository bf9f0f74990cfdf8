//! The push one-shot ("Lamport") allreduce for small messages (PROTOCOL.md "push
//! one-shot"): the shared layout, sentinel and signature helpers, the step list, the
//! protocol checker ([`check_push`]); the CPU data path is
//! [`crate::cpu::CpuRank::push_allreduce`].
//!
//! Every rank owns three rotating receive buffers `L[k]` (`k` advances by one per push
//! call: `k = (last + 1) % 3`), each with one slot
//! per writer rank. A writer stores its (sign-of-zero-normalised) data straight into
//! `L[k].slot[me]` of every rank, then publishes `flag(e, call_sig)` with a release
//! store into a per-(parity, block, writer) signature word at every rank. A reader polls its
//! own slots until no lane holds the sentinel (negative zero), reduces in rank order, then
//! checks the signature words (acquire; catches mismatched calls and gives the formal
//! happens-before edge). Before polling it re-arms the buffer that call `e - 1` used with
//! the sentinel (off the critical path, while the peers' data is in flight). There is no
//! barrier: one NVLink traversal per call.
//!
//! ```
//! use inc_sim::push::{check_push, PushConfig, PushWeakening};
//! // Clean: 4 consecutive calls of varying size on 3 ranks, random schedules.
//! let cfg = PushConfig::new(3, vec![64, 16, 48, 32]);
//! assert!(check_push(&cfg, 20, 1)?.violations.is_empty());
//! // Rotating only two buffers lets a fast peer's data be erased by the clear.
//! let mut bad = PushConfig::new(2, vec![32, 32, 32, 32]);
//! bad.weaken = Some(PushWeakening::TwoBuffers);
//! assert!(!check_push(&bad, 200, 1)?.violations.is_empty());
//! # Ok::<(), inc_sim::SimError>(())
//! ```

pub mod check;

pub use check::{check_push, PushConfig, PushFault, PushWeakening};

use crate::types::{DType, ReduceOp, CHUNK_BYTES, MAX_BLOCKS, MAX_RANKS};

/// The code of the push one-shot in [`crate::call_sig`] (`Algo::PushOneShot.code()`).
pub const PUSH_ALGO_CODE: u8 = 3;

/// Number of rotating receive buffers (`L[(last + 1) % 3]`).
pub const PUSH_BUFFERS: usize = 3;

/// The 32-bit clear pattern written into every word of an empty slot: f32 `-0.0`. Its
/// high half is bf16/f16 `-0.0` (0x8000), so every 16-byte chunk of a cleared slot holds a
/// sentinel lane for every data type, whichever type the next call uses.
pub const SENTINEL_WORD: u32 = 0x8000_0000;

/// The 16-bit sentinel lane (bf16/f16 `-0.0`).
pub const SENTINEL_HALF: u16 = 0x8000;

/// Default capacity of one slot (bytes of one rank's input) on the GPU.
pub const DEFAULT_PUSH_MAX_BYTES: usize = 256 << 10;

/// Byte offsets of the push region (after the two parity halves of the data area; see
/// PROTOCOL.md "push one-shot" / "Memory").
///
/// ```text
/// 0     sig  [2][MAX_BLOCKS][MAX_RANKS] u64   flag(e, call_sig) written by writer s (release)
/// 4096  used [3] u32                          chunks the last push call using L[k] wrote (local)
/// 4108  last u32                              buffer of this rank's previous push call (local)
/// 8192  L[k].slot[s], k = 0..3, s = 0..MAX_RANKS, each `slot_bytes` (a multiple of 16)
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PushLayout;

impl PushLayout {
    /// The signature words.
    pub const SIG: usize = 0;
    /// Bytes of the signature array.
    pub const SIG_BYTES: usize = 2 * MAX_BLOCKS * MAX_RANKS * 8;
    /// `used[3]`: chunks the last call that wrote `L[k]` used (local, read by the clear).
    pub const USED: usize = Self::SIG_BYTES;
    /// `last: u32`: the buffer index (0..3) of this rank's previous push call (local;
    /// the next push call uses `(last + 1) % 3` and clears `L[last]`). Buffers rotate per
    /// push call, not per epoch, because other algorithms may run in between.
    pub const LAST: usize = Self::USED + 4 * PUSH_BUFFERS;
    /// Bytes before the first slot.
    pub const HEADER_BYTES: usize = 32768;

    /// Offset of the signature word written by `writer` for `block` at `parity`.
    pub const fn sig(parity: usize, block: usize, writer: usize) -> usize {
        Self::SIG + ((parity * MAX_BLOCKS + block) * MAX_RANKS + writer) * 8
    }

    /// Offset of `used[k]`.
    pub const fn used(k: usize) -> usize {
        Self::USED + 4 * k
    }

    /// Offset of slot `writer` of buffer `k` when each slot holds `slot_bytes`.
    pub const fn slot(k: usize, writer: usize, slot_bytes: usize) -> usize {
        Self::HEADER_BYTES + (k * MAX_RANKS + writer) * slot_bytes
    }

    /// Offset of the first slot (the part initialised to the sentinel).
    pub const fn slots_start() -> usize {
        Self::HEADER_BYTES
    }

    /// Total bytes of the push region for `slot_bytes` per slot.
    pub const fn region_bytes(slot_bytes: usize) -> usize {
        Self::HEADER_BYTES + PUSH_BUFFERS * MAX_RANKS * slot_bytes
    }

    /// `slot_bytes` rounded up to whole 16-byte chunks.
    pub const fn round_slot(slot_bytes: usize) -> usize {
        slot_bytes.div_ceil(CHUNK_BYTES) * CHUNK_BYTES
    }
}

const _: () = assert!(PushLayout::LAST + 4 <= PushLayout::HEADER_BYTES);

/// The call signature of a push one-shot call: [`crate::call_sig`] with algo code
/// [`PUSH_ALGO_CODE`] (same FNV-1a over `[3, dtype, op, count LE]`).
pub const fn push_call_sig(dtype: DType, op: ReduceOp, count: u64) -> u32 {
    crate::types::sig_of_code(PUSH_ALGO_CODE, dtype, op, count)
}

/// The step names of the push one-shot, in order (the kernel's `// STEP push_one_shot <n>
/// <Name>` markers list exactly these).
pub const PUSH_STEP_NAMES: [&str; 7] = [
    "Prologue",
    "PushData",
    "PushSig",
    "ClearOld",
    "PollReduce",
    "SigCheck",
    "Epilogue",
];

/// Step index (phase in an error record) of each push step.
pub mod step {
    /// Exit if aborted; `e = epoch + 1`; `k = (last + 1) % 3`; `used[k] = chunks`.
    pub const PROLOGUE: u32 = 0;
    /// Store my chunks into `L[k].slot[me]` of every rank (one 16-byte store each).
    pub const PUSH_DATA: u32 = 1;
    /// `st.release.sys` of `flag(e, sig)` into `sig[e % 2][b][me]` at every rank.
    pub const PUSH_SIG: u32 = 2;
    /// Re-arm `L[last]` (the previous push call's buffer) with the sentinel over `used[last]`
    /// (while the peers' data is in flight; nobody writes that buffer during call e).
    pub const CLEAR_OLD: u32 = 3;
    /// Poll my slots until no lane is the sentinel; fold in rank order; write out.
    pub const POLL_REDUCE: u32 = 4;
    /// `ld.acquire.sys` of every writer's signature word until it equals `flag(e, sig)`.
    pub const SIG_CHECK: u32 = 5;
    /// The last block advances the epoch and sets `last = k`.
    pub const EPILOGUE: u32 = 6;
}

/// Whether a 16-byte chunk read from a slot is complete: no lane holds the sentinel
/// (f32: a word equal to [`SENTINEL_WORD`]; bf16/f16: a half equal to [`SENTINEL_HALF`]).
/// Every lane is checked, so only 4-byte single-copy atomicity is relied on (PROTOCOL.md).
pub fn chunk_ready(dtype: DType, words: &[u32; 4]) -> bool {
    match dtype {
        DType::F32 => words.iter().all(|&w| w != SENTINEL_WORD),
        DType::Bf16 | DType::F16 => words
            .iter()
            .all(|&w| (w & 0xffff) as u16 != SENTINEL_HALF && (w >> 16) as u16 != SENTINEL_HALF),
    }
}

/// The writer's normalisation: every `-0.0` lane becomes `+0.0`, so no data lane can be
/// mistaken for the sentinel. Sums/averages/min/max change only in the sign of a zero
/// result (a zero result is always `+0.0`).
pub fn remap_neg_zero(dtype: DType, words: &mut [u32; 4]) {
    for w in words.iter_mut() {
        match dtype {
            DType::F32 => {
                if *w == SENTINEL_WORD {
                    *w = 0;
                }
            }
            DType::Bf16 | DType::F16 => {
                let mut lo = *w & 0xffff;
                let mut hi = *w >> 16;
                if lo == u32::from(SENTINEL_HALF) {
                    lo = 0;
                }
                if hi == u32::from(SENTINEL_HALF) {
                    hi = 0;
                }
                *w = lo | (hi << 16);
            }
        }
    }
}

/// Most elements of `dtype` a push call can carry with `slot_bytes` per slot.
pub fn max_count(dtype: DType, slot_bytes: usize) -> u64 {
    (PushLayout::round_slot(slot_bytes) / dtype.size()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{call_sig, Algo};

    #[test]
    fn layout_offsets() {
        assert_eq!(PushLayout::sig(0, 0, 0), 0);
        assert_eq!(PushLayout::sig(0, 0, 1), 8);
        assert_eq!(PushLayout::sig(1, 0, 0), MAX_BLOCKS * MAX_RANKS * 8);
        assert_eq!(
            PushLayout::sig(1, MAX_BLOCKS - 1, MAX_RANKS - 1) + 8,
            PushLayout::SIG_BYTES
        );
        assert_eq!(PushLayout::used(2), 4096 + 8);
        assert_eq!(PushLayout::slot(0, 0, 1024), 8192);
        assert_eq!(PushLayout::slot(1, 0, 1024), 8192 + 8 * 1024);
        assert_eq!(
            PushLayout::slot(2, 7, 1024) + 1024,
            PushLayout::region_bytes(1024)
        );
        assert_eq!(PushLayout::round_slot(17), 32);
    }

    #[test]
    fn push_sig_is_call_sig_with_code_3() {
        // Independent FNV-1a over [3, dtype, op, count LE].
        let mut h: u32 = 0x811c9dc5;
        for b in [3u8, 2, 0].into_iter().chain(77u64.to_le_bytes()) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x01000193);
        }
        assert_eq!(push_call_sig(DType::F32, ReduceOp::Sum, 77), h);
        for a in [Algo::OneShot, Algo::TwoShot, Algo::Hcm] {
            assert_ne!(
                push_call_sig(DType::F32, ReduceOp::Sum, 77),
                call_sig(a, DType::F32, ReduceOp::Sum, 77)
            );
        }
        assert_eq!(
            push_call_sig(DType::F32, ReduceOp::Sum, 77),
            call_sig(Algo::PushOneShot, DType::F32, ReduceOp::Sum, 77)
        );
    }

    #[test]
    fn sentinel_and_remap() {
        let cleared = [SENTINEL_WORD; 4];
        for d in DType::ALL {
            assert!(
                !chunk_ready(d, &cleared),
                "{d}: cleared chunk must read as empty"
            );
        }
        // A chunk whose 4 words are all written is ready; one cleared word is not.
        let mut w = [0x3f80_0000u32, 0, 0x4000_4000, 7];
        assert!(chunk_ready(DType::F32, &w));
        w[3] = SENTINEL_WORD;
        assert!(!chunk_ready(DType::F32, &w));
        assert!(!chunk_ready(DType::Bf16, &w));
        // -0.0 data lanes are remapped to +0.0 and then read as ready.
        let mut f = [SENTINEL_WORD, 1, 2, 3];
        remap_neg_zero(DType::F32, &mut f);
        assert_eq!(f, [0, 1, 2, 3]);
        assert!(chunk_ready(DType::F32, &f));
        let mut h = [0x8000_8000u32, 0x0001_8000, 0x8000_3c00, 5];
        remap_neg_zero(DType::F16, &mut h);
        assert_eq!(h, [0, 0x0001_0000, 0x3c00, 5]);
        assert!(chunk_ready(DType::F16, &h));
        assert!(chunk_ready(DType::Bf16, &h));
        // f32 data with a 0x8000 low half is fine for an f32 reader.
        assert!(chunk_ready(DType::F32, &[0x4000_8000, 1, 1, 1]));
        assert_eq!(max_count(DType::Bf16, 64), 32);
    }
}
