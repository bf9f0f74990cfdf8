//! The two-shot of 128-byte lines (PROTOCOL.md "two-shot of lines"): the copy-in two-shot's
//! wire form for a call of its own that fits the lines region, with no barrier. Each
//! 128-byte line carries 120 payload bytes and, in its last 8 bytes, the flag
//! `flag_word(e, sig)` of the call that wrote it; a reader takes a line when its flag is
//! this call's (the GPU stores and polls a line with one warp-wide 16-byte-per-lane
//! access, seen whole: GPU run 87), then clears the flag. The protocol and its checker
//! live in inc-sim; this module holds the layout, the form rule and the step list.

use crate::types::MAX_RANKS;

/// Bytes of one line.
pub const LINE: usize = 128;
/// Payload bytes of one line (words 0..15; word 15 is the flag).
pub const LINE_PAYLOAD: usize = 120;
/// 8-byte words of one line.
pub const LINE_WORDS: usize = LINE / 8;
/// The flag's word index in a line (the last).
pub const FLAG_WORD: usize = LINE_WORDS - 1;
/// A slice is a whole number of this many lines, so that the 4 lines one warp moves
/// (32 lanes x 16 bytes) always belong to one slice: a warp never splits on its role.
pub const SLICE_LINES_ALIGN: u64 = 4;

/// The step names, in order (the kernel's `// STEP two_shot_lines <n> <Name>` markers).
pub const STEP_NAMES: [&str; 5] = ["Prologue", "Scatter", "ReduceStore", "Gather", "Epilogue"];

/// Step index (phase in an error record) of each step.
pub mod step {
    /// Exit if aborted; `e = next(epochs[b])`.
    pub const PROLOGUE: u32 = 0;
    /// Block 0: my header flag into every peer's `hdr[p][me]`; my lines of every slice
    /// `q != me` into owner q's receive lines of writer me.
    pub const SCATTER: u32 = 1;
    /// Owner: poll every writer's line j of my slice, clear its flag, fold in rank order,
    /// store the result line into every peer's gather lines and my output.
    pub const REDUCE_STORE: u32 = 2;
    /// Poll my gather lines of every slice `q != me`, clear each flag, copy to my output.
    pub const GATHER: u32 = 3;
    /// Epoch words as every algorithm.
    pub const EPILOGUE: u32 = 4;
}

/// Byte offsets of the lines region (after the push region in every rank's data area;
/// zero-initialised before the handle is exported). `slot_bytes` is the push region's slot
/// size, so the lines region has no geometry of its own.
///
/// ```text
/// 0     hdr[2][MAX_RANKS] u64: flag_word(e, sig) written by writer s into hdr[p][s]
/// 256   parity p at 256 + p * parity_bytes, lines of 128 bytes:
///         recv[k][j], k = 0..W-1: line j of my slice from writer s = (me + 1 + k) % W
///         gath[k][j], k = 0..W-1, after (W-1) * SL lines: line j of slice q = (me + 1 + k) % W
/// ```
#[derive(Clone, Copy, Debug)]
pub struct LinesLayout;

impl LinesLayout {
    /// Bytes before parity 0 (the header words, padded to a multiple of [`LINE`]).
    pub const HEADER_BYTES: usize = 256;

    /// Offset of the header word written by `writer` for `parity`.
    pub const fn hdr(parity: usize, writer: usize) -> usize {
        (parity * MAX_RANKS + writer) * 8
    }

    /// Bytes of one parity: `MAX_RANKS x slot_bytes` (4 MiB at the default slot).
    pub const fn parity_bytes(slot_bytes: usize) -> usize {
        MAX_RANKS * slot_bytes / LINE * LINE
    }

    /// Bytes of the whole region.
    pub const fn region_bytes(slot_bytes: usize) -> usize {
        Self::HEADER_BYTES + 2 * Self::parity_bytes(slot_bytes)
    }

    /// Lines of one slice for a call of `bytes` at world `w` (whole lines of 120 payload
    /// bytes, cut in `w` slices, each rounded up to [`SLICE_LINES_ALIGN`]).
    pub const fn slice_lines(bytes: u64, w: usize) -> u64 {
        let lines = bytes.div_ceil(LINE_PAYLOAD as u64);
        let s = lines.div_ceil(w as u64);
        s.div_ceil(SLICE_LINES_ALIGN) * SLICE_LINES_ALIGN
    }

    /// Whether a call of `bytes` at world `w` fits one parity (receive and gather lines of
    /// the `w - 1` other slices each).
    pub const fn fits(bytes: u64, w: usize, slot_bytes: usize) -> bool {
        if w < 2 || w > MAX_RANKS || bytes == 0 {
            return false;
        }
        let need = 2 * (w as u64 - 1) * Self::slice_lines(bytes, w) * LINE as u64;
        need <= Self::parity_bytes(slot_bytes) as u64
    }

    /// The largest call (bytes) at world `w` that fits one parity ([`LinesLayout::fits`]);
    /// 0 when none does.
    pub const fn max_bytes(w: usize, slot_bytes: usize) -> u64 {
        if w < 2 || w > MAX_RANKS {
            return 0;
        }
        let per_slice = Self::parity_bytes(slot_bytes) as u64 / (2 * (w as u64 - 1) * LINE as u64);
        let sl = per_slice / SLICE_LINES_ALIGN * SLICE_LINES_ALIGN;
        sl * w as u64 * LINE_PAYLOAD as u64
    }

    /// The slot index `k` (0..w-1) of rank `other != me`: `(other - me - 1) mod w`.
    pub const fn slot_of(me: usize, other: usize, w: usize) -> usize {
        (other + w - me - 1) % w
    }

    /// Offset (in the region) of line `j` that `writer` sends to owner `me` for parity `p`.
    pub const fn recv(
        p: usize,
        me: usize,
        writer: usize,
        j: u64,
        sl: u64,
        w: usize,
        slot_bytes: usize,
    ) -> u64 {
        let base = (Self::HEADER_BYTES + p * Self::parity_bytes(slot_bytes)) as u64;
        base + (Self::slot_of(me, writer, w) as u64 * sl + j) * LINE as u64
    }

    /// Offset (in the region) of line `j` of slice `q` that owner `q` sends to `me`.
    pub const fn gather(
        p: usize,
        me: usize,
        q: usize,
        j: u64,
        sl: u64,
        w: usize,
        slot_bytes: usize,
    ) -> u64 {
        let base = (Self::HEADER_BYTES + p * Self::parity_bytes(slot_bytes)) as u64;
        base + ((w as u64 - 1) * sl + Self::slot_of(me, q, w) as u64 * sl + j) * LINE as u64
    }
}

const _: () = assert!(LinesLayout::hdr(1, MAX_RANKS - 1) + 8 <= LinesLayout::HEADER_BYTES);
const _: () = assert!(LinesLayout::HEADER_BYTES % LINE == 0);

/// Whether a copy-in two-shot call of `bytes` at world `w` runs as lines: a call of its
/// own (not a piece) that fits the lines region. Every rank decides alike (same bytes,
/// world and slot size: the rendezvous checks the geometry).
pub const fn use_lines(bytes: u64, w: usize, slot_bytes: usize, own_call: bool) -> bool {
    own_call && LinesLayout::fits(bytes, w, slot_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::DEFAULT_PUSH_SLOT_BYTES;

    #[test]
    fn capacity_at_the_default_slot() {
        let s = DEFAULT_PUSH_SLOT_BYTES;
        assert_eq!(LinesLayout::parity_bytes(s), 4 << 20);
        assert_eq!(LinesLayout::region_bytes(s), 256 + (8 << 20));
        // 2 MiB fits at every world, 4 MiB at none
        for w in 2..=MAX_RANKS {
            assert!(LinesLayout::fits(2 << 20, w, s), "w {w}");
            assert!(!LinesLayout::fits(4 << 20, w, s), "w {w}");
        }
        assert!(!LinesLayout::fits(1, 1, s));
        assert!(!LinesLayout::fits(0, 4, s));
        assert!(LinesLayout::fits(1, 4, s));
        for w in 2..=MAX_RANKS {
            let m = LinesLayout::max_bytes(w, s);
            assert!(
                LinesLayout::fits(m, w, s) && !LinesLayout::fits(m + 1, w, s),
                "w {w}"
            );
        }
        assert_eq!(LinesLayout::max_bytes(1, s), 0);
        assert!(!use_lines(1 << 20, 4, s, false));
        assert!(use_lines(1 << 20, 4, s, true));
    }

    #[test]
    fn slices_and_offsets() {
        // 1 MiB at world 4: 8739 lines, 2185 a slice, rounded to 2188
        assert_eq!(LinesLayout::slice_lines(1 << 20, 4), 2188);
        assert_eq!(LinesLayout::slice_lines(1, 4), 4);
        let (s, sl, w) = (DEFAULT_PUSH_SLOT_BYTES, 2188, 4);
        assert_eq!(LinesLayout::slot_of(1, 2, w), 0);
        assert_eq!(LinesLayout::slot_of(1, 0, w), 2);
        assert_eq!(LinesLayout::recv(0, 1, 2, 0, sl, w, s), 256);
        assert_eq!(
            LinesLayout::recv(1, 1, 0, 3, sl, w, s),
            256 + (4 << 20) + (2 * sl + 3) * 128
        );
        assert_eq!(
            LinesLayout::gather(0, 1, 2, 0, sl, w, s),
            256 + 3 * sl * 128
        );
        // every line of both areas lies inside the parity, none overlaps another
        let mut seen = std::collections::BTreeSet::new();
        for other in [0, 2, 3] {
            for j in 0..sl {
                assert!(seen.insert(LinesLayout::recv(0, 1, other, j, sl, w, s)));
                assert!(seen.insert(LinesLayout::gather(0, 1, other, j, sl, w, s)));
            }
        }
        let last = *seen.iter().next_back().unwrap_or(&0);
        assert!(last + 128 <= 256 + (4 << 20));
    }
}
