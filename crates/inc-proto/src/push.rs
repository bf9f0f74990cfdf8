//! The push one-shot's (LL protocol, PROTOCOL.md "push one-shot") shared layout, line and
//! tag helpers, call signature and step list. The protocol itself and its checker live in
//! inc-sim (`inc_sim::push`).
//!
//! Every 8 bytes of a receive slot carry 4 bytes of data and the call's 32-bit epoch as
//! a tag (`{data, e}`), so the data carries its own readiness. A header line
//! `{sig, e, sig, e}` per (parity, writer) carries the call signature.

use crate::types::{DType, ReduceOp, CHUNK_BYTES, MAX_RANKS};

/// The code of the push one-shot in [`crate::call_sig`] (`Algo::PushOneShot.code()`).
pub const PUSH_ALGO_CODE: u8 = 3;

/// Number of receive buffers (parities `e % 2`).
pub const PUSH_BUFFERS: usize = 2;

/// Bytes of one LL line: two 8-byte halves `{u32 data, u32 tag}` (one 16-byte store).
pub const LINE_BYTES: usize = 16;

/// Slot bytes per 16-byte user chunk: two lines (`A = {w0, e, w1, e}`, `B = {w2, e, w3, e}`).
pub const LINE_BYTES_PER_CHUNK: usize = 2 * LINE_BYTES;

/// Default payload capacity (bytes of one rank's input) of a push call on the GPU: 256 KiB
/// (LL beats one-shot up to there at world 2 on H200s; docs/PERFORMANCE.md). The buffer's
/// capacity, not `auto`'s threshold (inc-comm's `default_push_max_bytes`, per world).
pub const PUSH_CAPACITY_BYTES: usize = 256 << 10;

/// Default slot size on the GPU: twice the payload (every data word travels with a tag),
/// 512 KiB; the push region is then `2 * MAX_RANKS * 512 KiB + 256` bytes (8 MiB + 256).
pub const DEFAULT_PUSH_SLOT_BYTES: usize = 2 * PUSH_CAPACITY_BYTES;

/// Byte offsets of the push region (after the two parity halves of the data area; see
/// PROTOCOL.md "push one-shot" / "Memory"). Zero-initialised before the handle is
/// exported (tag 0 is never a live epoch).
///
/// ```text
/// 0     hdr[2][MAX_RANKS]  16-byte lines hdr[p][s] = {sig, e, sig, e} (u32), written by writer s
/// 256   slot[p][s], p = 0..2, s = 0..MAX_RANKS, each `slot_bytes` (a multiple of 32)
///       at 256 + (p * MAX_RANKS + s) * slot_bytes; chunk c's lines A, B at c*32, c*32+16
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PushLayout;

impl PushLayout {
    /// The header lines `hdr[2][MAX_RANKS]`.
    pub const HDR: usize = 0;
    /// Bytes before the first slot (the header lines).
    pub const HEADER_BYTES: usize = 256;

    /// Offset of the header line written by `writer` for `parity`.
    pub const fn hdr(parity: usize, writer: usize) -> usize {
        Self::HDR + (parity * MAX_RANKS + writer) * LINE_BYTES
    }

    /// Offset of slot `writer` of parity buffer `parity` when each slot holds `slot_bytes`.
    pub const fn slot(parity: usize, writer: usize, slot_bytes: usize) -> usize {
        Self::HEADER_BYTES + (parity * MAX_RANKS + writer) * slot_bytes
    }

    /// Offset of line `line` (0 = A, 1 = B) of chunk `c` inside a slot.
    pub const fn line(c: usize, line: usize) -> usize {
        c * LINE_BYTES_PER_CHUNK + line * LINE_BYTES
    }

    /// Offset of the first slot.
    pub const fn slots_start() -> usize {
        Self::HEADER_BYTES
    }

    /// Total bytes of the push region for `slot_bytes` per slot.
    pub const fn region_bytes(slot_bytes: usize) -> usize {
        Self::HEADER_BYTES + PUSH_BUFFERS * MAX_RANKS * slot_bytes
    }

    /// `slot_bytes` rounded up to whole 32-byte chunk line pairs.
    pub const fn round_slot(slot_bytes: usize) -> usize {
        slot_bytes.div_ceil(LINE_BYTES_PER_CHUNK) * LINE_BYTES_PER_CHUNK
    }

    /// Slot bytes that carry `payload_bytes` of user data (twice the payload, whole chunks).
    pub const fn slot_bytes_for(payload_bytes: usize) -> usize {
        payload_bytes.div_ceil(CHUNK_BYTES) * LINE_BYTES_PER_CHUNK
    }

    /// User bytes a slot of `slot_bytes` carries (half of it, whole chunks).
    pub const fn payload_bytes(slot_bytes: usize) -> usize {
        slot_bytes / LINE_BYTES_PER_CHUNK * CHUNK_BYTES
    }
}

const _: () = assert!(PushLayout::hdr(1, MAX_RANKS - 1) + LINE_BYTES <= PushLayout::HEADER_BYTES);
const _: () = assert!(PushLayout::slot_bytes_for(PUSH_CAPACITY_BYTES) == DEFAULT_PUSH_SLOT_BYTES);

/// The call signature of a push one-shot call: [`crate::call_sig`] with algo code
/// [`PUSH_ALGO_CODE`] (same FNV-1a over `[3, dtype, op, count LE]`).
pub const fn push_call_sig(dtype: DType, op: ReduceOp, count: u64) -> u32 {
    crate::types::sig_of_code(PUSH_ALGO_CODE, dtype, op, count)
}

/// The step names of the push one-shot, in order (the kernel's `// STEP push_one_shot <n>
/// <Name>` markers list exactly these).
pub const PUSH_STEP_NAMES: [&str; 5] =
    ["Prologue", "PushData", "PollReduce", "HdrCheck", "Epilogue"];

/// Step index (phase in an error record) of each push step.
pub mod step {
    /// Exit if aborted; `e = epoch + 1` (epoch and abort in one 64-bit load).
    pub const PROLOGUE: u32 = 0;
    /// Header line to every peer (block 0 thread 0), then my chunks as tagged lines into
    /// `slot[e % 2][me]` of every peer (one relaxed 16-byte store per line).
    pub const PUSH_DATA: u32 = 1;
    /// Poll my own slots until all four tags of a chunk are `e`; fold in rank order.
    pub const POLL_REDUCE: u32 = 2;
    /// Wait for every peer's header line of call `e`; another signature -> CALL_MISMATCH.
    pub const HDR_CHECK: u32 = 3;
    /// The last block advances the epoch.
    pub const EPILOGUE: u32 = 4;
}

/// One 8-byte half `{u32 data, u32 tag}` as the `u64` a single 8-byte access stores or
/// loads (native byte order: `data` at the lower address).
pub fn pack_half(data: u32, tag: u32) -> u64 {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&data.to_ne_bytes());
    b[4..].copy_from_slice(&tag.to_ne_bytes());
    u64::from_ne_bytes(b)
}

/// The `(data, tag)` of an 8-byte half (inverse of [`pack_half`]).
pub fn unpack_half(h: u64) -> (u32, u32) {
    let b = h.to_ne_bytes();
    (
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
    )
}

/// The four halves (lines A then B) that carry the user chunk words `w` with tag `e`:
/// `A = {w0, e, w1, e}`, `B = {w2, e, w3, e}`.
pub fn chunk_lines(w: &[u32; 4], e: u32) -> [u64; 4] {
    [
        pack_half(w[0], e),
        pack_half(w[1], e),
        pack_half(w[2], e),
        pack_half(w[3], e),
    ]
}

/// How far ahead of `e` a tag may be and still be judged *newer* ([`tag_is_newer`]):
/// 2^20 calls. A real epoch skew (ranks that disagree on the call count) is a few calls;
/// a word that nobody rewrote for 2^31 calls or more (an LL data line beyond every LL call
/// since, a header of a parity no LL call used) holds a tag that is "ahead" of e by
/// anything in (0, 2^31) modulo 2^32, and must read as "not yet", not as a mismatch.
pub const SEQ_WINDOW: u32 = 1 << 20;

/// Whether a tag read from a line or flag belongs to a call *newer* than `e`: ahead of e
/// by 1..=[`SEQ_WINDOW`] modulo 2^32. A legitimate peer is never more than one call ahead,
/// and one call ahead writes the other parity, so such a tag in my parity-`e % 2` slot means
/// the ranks disagree on the call count (SEQ_MISMATCH). Tag 0 is never newer: no live epoch
/// is 0 ([`crate::types::next_epoch`]), so a 0 is fresh memory or a cleared word, "not
/// yet" — without this, fresh memory read at an epoch past 2^31 looks newer. A tag further
/// ahead is a word untouched for 2^31 calls or more ("Wrap" in PROTOCOL.md): "not yet".
pub const fn tag_is_newer(tag: u32, e: u32) -> bool {
    let d = tag.wrapping_sub(e);
    tag != 0 && d != 0 && d <= SEQ_WINDOW
}

/// Bytes of its own push region that a scrubbing call zeroes (PROTOCOL.md "Wrap", rule 5).
pub const SCRUB_BYTES: usize = 4096;

/// Calls per scrubbing call pair: a call scrubs when `(e / 2) % (SCRUB_EVERY / 2) == 0`,
/// i.e. the two calls `e = SCRUB_EVERY x j` and `SCRUB_EVERY x j + 1`, one of each parity
/// (a power of two). Scrubbing every call cost 0.15-0.25 us at the smallest LL sizes (GPU
/// run 102, 2x H200); one call in 512 pays it.
pub const SCRUB_EVERY: u32 = 1024;
const _: () = assert!(SCRUB_EVERY.is_power_of_two() && SCRUB_EVERY >= 4);

/// The window of its own push region that call `e` of rank `me` zeroes (PROTOCOL.md
/// "Wrap", rule 5): `(s, lo, hi)`, bytes `lo..hi` of `slot[e % 2][s]`, or `None` when call
/// `e` does not scrub (see [`SCRUB_EVERY`]), without a peer or without a push region. The
/// windows rotate over the slots of every peer (`s != me`, in rank order), [`SCRUB_BYTES`]
/// at a time, so that in `SCRUB_EVERY x (world - 1) x ceil(slot_bytes / SCRUB_BYTES)`
/// consecutive calls (917,504 at world 8 with the default slots; 29.4 M with the largest,
/// 16 MiB) every data line of both parities is zeroed once (or rewritten by an LL call):
/// no LL word keeps a tag for 2^32 - SEQ_WINDOW calls. In an LL call the lines that the
/// call itself uses (offsets below its `lines x 16` bytes) are left alone; a call of any
/// other algorithm also zeroes `hdr[e % 2][s]` for every peer s. The kernels compute the
/// same window (`inc_scrub_push` in kernels/common.cuh).
pub fn scrub_window(
    e: u32,
    world: usize,
    me: usize,
    slot_bytes: usize,
) -> Option<(usize, usize, usize)> {
    let half = SCRUB_EVERY / 2;
    if world < 2 || me >= world || slot_bytes == 0 || (e >> 1) % half != 0 {
        return None;
    }
    let per = slot_bytes.div_ceil(SCRUB_BYTES);
    let m = ((e >> 1) / half) as usize % (per * (world - 1));
    let j = m / per;
    let s = if j < me { j } else { j + 1 };
    let lo = (m % per) * SCRUB_BYTES;
    Some((s, lo, (lo + SCRUB_BYTES).min(slot_bytes)))
}

/// The first epoch after `e` (cyclically, never 0 or 1) at which a call scrubs
/// ([`scrub_window`]): tests jump the epoch there.
pub fn next_scrub_epoch(e: u32) -> u32 {
    let mut n = crate::types::next_epoch(e);
    while (n >> 1) % (SCRUB_EVERY / 2) != 0 {
        n = crate::types::next_epoch(n);
    }
    n
}

/// Most elements of `dtype` a push call can carry with `slot_bytes` per slot.
pub fn max_count(dtype: DType, slot_bytes: usize) -> u64 {
    (PushLayout::payload_bytes(slot_bytes) / dtype.size()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{call_sig, Algo};

    #[test]
    fn scrub_windows_cover_every_peer_slot_of_both_parities() {
        for (world, me, slot) in [
            (2, 0, 8192),
            (2, 1, 8192 + 32),
            (4, 2, 3 * SCRUB_BYTES),
            (8, 7, 64),
        ] {
            let per = slot.div_ceil(SCRUB_BYTES);
            let windows = 2 * (world - 1) * per;
            for start in [2u32, 1 << 31, u32::MAX - 3 * SCRUB_EVERY] {
                // (parity, slot, window start) of the scrubbing calls among
                // SCRUB_EVERY x windows / 2 consecutive epochs
                let mut seen = std::collections::BTreeSet::new();
                let mut scrubs = 0;
                let mut e = start;
                for _ in 0..SCRUB_EVERY as usize * windows / 2 {
                    if let Some((s, lo, hi)) = scrub_window(e, world, me, slot) {
                        assert_ne!(s, me, "never my own slot");
                        assert!(s < world && lo < hi && hi <= slot && hi - lo <= SCRUB_BYTES);
                        assert_eq!(lo % SCRUB_BYTES, 0);
                        seen.insert(((e % 2) as usize, s, lo));
                        scrubs += 1;
                        assert_eq!(next_scrub_epoch(e.wrapping_sub(1).max(1)), e);
                    }
                    e = crate::types::next_epoch(e);
                }
                if start == 2 {
                    // away from the wrap: every window of every peer's slot, both parities
                    assert_eq!(scrubs, windows);
                    assert_eq!(seen.len(), windows, "world {world} me {me} slot {slot}");
                }
            }
        }
        assert_eq!(scrub_window(SCRUB_EVERY, 1, 0, 4096), None);
        assert_eq!(scrub_window(SCRUB_EVERY, 2, 0, 0), None);
        assert_eq!(scrub_window(SCRUB_EVERY + 2, 2, 0, 4096), None);
        assert_eq!(next_scrub_epoch(3), SCRUB_EVERY);
        assert_eq!(next_scrub_epoch(SCRUB_EVERY), SCRUB_EVERY + 1);
    }

    #[test]
    fn layout_offsets() {
        assert_eq!(PushLayout::hdr(0, 0), 0);
        assert_eq!(PushLayout::hdr(0, 1), 16);
        assert_eq!(PushLayout::hdr(1, 0), 128);
        assert_eq!(PushLayout::hdr(1, 7) + 16, PushLayout::HEADER_BYTES);
        assert_eq!(PushLayout::HEADER_BYTES, 256);
        assert_eq!(PushLayout::slot(0, 0, 1024), 256);
        assert_eq!(PushLayout::slot(1, 0, 1024), 256 + 8 * 1024);
        assert_eq!(
            PushLayout::slot(1, 7, 1024) + 1024,
            PushLayout::region_bytes(1024)
        );
        assert_eq!(PushLayout::line(3, 1), 3 * 32 + 16);
        assert_eq!(PushLayout::round_slot(17), 32);
        assert_eq!(PushLayout::round_slot(64), 64);
        assert_eq!(PushLayout::slot_bytes_for(17), 64);
        assert_eq!(PushLayout::payload_bytes(64), 32);
        assert_eq!(DEFAULT_PUSH_SLOT_BYTES, 512 << 10);
        assert_eq!(
            PushLayout::region_bytes(DEFAULT_PUSH_SLOT_BYTES),
            (8 << 20) + 256
        );
        assert_eq!(max_count(DType::Bf16, 64), 16);
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
    fn lines_and_tags() {
        let l = chunk_lines(&[1, 2, 3, 0x8000_0000], 9);
        assert_eq!(unpack_half(l[0]), (1, 9));
        assert_eq!(unpack_half(l[3]), (0x8000_0000, 9));
        // Little-endian hosts (and GPUs): data in the low word, tag in the high word.
        if cfg!(target_endian = "little") {
            assert_eq!(pack_half(5, 7), (7u64 << 32) | 5);
        }
        assert!(tag_is_newer(10, 9));
        assert!(!tag_is_newer(9, 9));
        assert!(!tag_is_newer(7, 9));
        assert!(
            !tag_is_newer(0, 1),
            "the zero-initialised tag reads as older"
        );
        assert!(tag_is_newer(1, u32::MAX), "wrap-aware");
        assert!(
            !tag_is_newer(0, u32::MAX - 5),
            "fresh memory past 2^31 calls is not newer"
        );
        // a window of SEQ_WINDOW calls ahead: a real skew is a few calls; a tag further
        // ahead is a word untouched for 2^31 calls or more
        assert!(tag_is_newer(9 + SEQ_WINDOW, 9));
        assert!(!tag_is_newer(10 + SEQ_WINDOW, 9));
        assert!(
            !tag_is_newer(1, 1 + (1 << 31) + 3),
            "aged by 2^31 + 3 calls"
        );
        assert!(!tag_is_newer(5, 5u32.wrapping_add(1 << 31)));
        assert!(
            tag_is_newer(SEQ_WINDOW - 1, u32::MAX),
            "the window wraps too"
        );
    }
}
