//! Data types, reduction ops, algorithms, the call signature, flag and abort words, the
//! signal-pad layout, error codes and the error record (PROTOCOL.md, version 1).

use std::fmt;
use std::str::FromStr;

/// Most ranks (GPUs) in one communicator.
pub const MAX_RANKS: usize = 8;
/// Most blocks one allreduce launch may use (flag slots per parity; the GPU sizes the
/// grid from its SM count).
pub const MAX_BLOCKS: usize = 128;
/// Bytes of one data chunk (one 128-bit load/store): 8 x bf16/f16 or 4 x f32.
pub const CHUNK_BYTES: usize = 16;

/// Element type of an allreduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum DType {
    /// bfloat16.
    Bf16,
    /// IEEE half.
    F16,
    /// IEEE single.
    F32,
}

impl DType {
    /// All data types.
    pub const ALL: [DType; 3] = [DType::Bf16, DType::F16, DType::F32];
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::Bf16 | DType::F16 => 2,
            DType::F32 => 4,
        }
    }
    /// Lower-case name (`bf16`, `f16`, `f32`).
    pub const fn name(self) -> &'static str {
        match self {
            DType::Bf16 => "bf16",
            DType::F16 => "f16",
            DType::F32 => "f32",
        }
    }
    /// Code hashed into [`call_sig`].
    pub const fn code(self) -> u8 {
        match self {
            DType::Bf16 => 0,
            DType::F16 => 1,
            DType::F32 => 2,
        }
    }
}

/// Reduction operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum ReduceOp {
    /// Sum.
    Sum,
    /// Sum, then one multiply by 1/W in f32.
    Avg,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
}

impl ReduceOp {
    /// All ops.
    pub const ALL: [ReduceOp; 4] = [ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Min, ReduceOp::Max];
    /// Lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Avg => "avg",
            ReduceOp::Min => "min",
            ReduceOp::Max => "max",
        }
    }
    /// Code hashed into [`call_sig`].
    pub const fn code(self) -> u8 {
        match self {
            ReduceOp::Sum => 0,
            ReduceOp::Avg => 1,
            ReduceOp::Min => 2,
            ReduceOp::Max => 3,
        }
    }
}

/// Allreduce algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Algo {
    /// Every rank reads every peer's whole buffer.
    OneShot,
    /// Reduce-scatter then all-gather, push form: slices stored into their owners, reduced
    /// slices stored into every peer (PROTOCOL.md "two-shot").
    TwoShot,
    /// Hybrid cube mesh (8 ranks): quad reduce, then exchange with the relay.
    Hcm,
    /// Push one-shot (LL protocol, small messages): every rank stores its data, tagged
    /// with the epoch, into a receive slot at every peer; the data carries its own
    /// readiness (no barrier).
    /// See [`crate::push`].
    PushOneShot,
}

impl Algo {
    /// All algorithms.
    pub const ALL: [Algo; 4] = [Algo::OneShot, Algo::TwoShot, Algo::Hcm, Algo::PushOneShot];
    /// CLI name (`one-shot`, `two-shot`, `hcm`, `push-one-shot`).
    pub const fn name(self) -> &'static str {
        match self {
            Algo::OneShot => "one-shot",
            Algo::TwoShot => "two-shot",
            Algo::Hcm => "hcm",
            Algo::PushOneShot => "push-one-shot",
        }
    }
    /// Code hashed into [`call_sig`].
    pub const fn code(self) -> u8 {
        match self {
            Algo::OneShot => 0,
            Algo::TwoShot => 1,
            Algo::Hcm => 2,
            Algo::PushOneShot => crate::push::PUSH_ALGO_CODE,
        }
    }
    /// Name used in kernel entry points and `// STEP` markers (`one_shot`, `two_shot`,
    /// `hcm`, `push_one_shot`).
    pub const fn kernel_name(self) -> &'static str {
        match self {
            Algo::OneShot => "one_shot",
            Algo::TwoShot => "two_shot",
            Algo::Hcm => "hcm",
            Algo::PushOneShot => "push_one_shot",
        }
    }
}

/// A name that did not parse (`"three-shot".parse::<Algo>()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// What was being parsed, with the accepted names.
    pub what: &'static str,
    /// The input.
    pub value: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {:?}", self.what, self.value)
    }
}

impl std::error::Error for ParseError {}

macro_rules! name_traits {
    ($t:ty, $what:literal) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
        impl FromStr for $t {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                let low = s.trim().to_ascii_lowercase();
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.name() == low || v.name().replace('-', "") == low)
                    .ok_or_else(|| ParseError {
                        what: $what,
                        value: s.to_string(),
                    })
            }
        }
    };
}
name_traits!(DType, "dtype (bf16|f16|f32)");
name_traits!(ReduceOp, "reduce op (sum|avg|min|max)");
name_traits!(Algo, "algorithm (one-shot|two-shot|hcm|push-one-shot)");

/// Signature of one call: 32-bit FNV-1a over the 11 bytes
/// `[algo.code(), dtype.code(), op.code(), count as u64 little-endian (8 bytes)]`
/// (offset basis 0x811c9dc5, prime 0x01000193). Ranks making different calls at the same
/// epoch write different flag words, which a waiter reports as CALL_MISMATCH.
pub const fn call_sig(algo: Algo, dtype: DType, op: ReduceOp, count: u64) -> u32 {
    sig_of_code(algo.code(), dtype, op, count)
}

/// [`call_sig`] with the algorithm given by its code byte (the push one-shot's too).
pub const fn sig_of_code(algo_code: u8, dtype: DType, op: ReduceOp, count: u64) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let head = [algo_code, dtype.code(), op.code()];
    let mut i = 0;
    while i < 3 {
        h ^= head[i] as u32;
        h = h.wrapping_mul(0x0100_0193);
        i += 1;
    }
    let le = count.to_le_bytes();
    let mut j = 0;
    while j < 8 {
        h ^= le[j] as u32;
        h = h.wrapping_mul(0x0100_0193);
        j += 1;
    }
    h
}

/// The epoch after `e`: `e + 1`, except that 0 is never live — after `2^32 - 1` (odd) comes
/// 2 (even), so the parity still alternates, and a zero word (fresh memory, or a flag slot
/// its consumer cleared) never carries the current epoch (PROTOCOL.md "Wrap").
pub const fn next_epoch(e: u32) -> u32 {
    match e.wrapping_add(1) {
        0 => 2,
        n => n,
    }
}

/// A flag word: `(epoch << 32) | sig`.
pub const fn flag_word(epoch: u32, sig: u32) -> u64 {
    ((epoch as u64) << 32) | sig as u64
}

/// Epoch half of a flag word.
pub const fn flag_epoch(word: u64) -> u32 {
    (word >> 32) as u32
}

/// Signature half of a flag word.
pub const fn flag_sig(word: u64) -> u32 {
    word as u32
}

/// Barrier flavour: which flag array of the pad it uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum BarrierKind {
    /// Start barrier: peers' inputs are ready.
    Start,
    /// Second barrier (two-shot, hcm).
    Mid,
    /// End barrier: peers are done reading my buffer (zero-copy variant).
    End,
}

impl BarrierKind {
    /// Lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            BarrierKind::Start => "start",
            BarrierKind::Mid => "mid",
            BarrierKind::End => "end",
        }
    }
}

/// Byte offsets inside one rank's signal pad (PROTOCOL.md "Memory of one rank").
///
/// ```text
/// 0     abort  u32
/// 16    error  ErrorRecord (40 bytes: code, rank, block, peer, phase u32; pad; expected, seen u64)
/// 64    start  [2][MAX_BLOCKS][MAX_RANKS] u64   (16 KiB each at MAX_BLOCKS = 128)
/// 16448 mid    [2][MAX_BLOCKS][MAX_RANKS] u64
/// 32832 end    [2][MAX_BLOCKS][MAX_RANKS] u64
/// 49216 epochs [MAX_BLOCKS] u32                 (block b's last completed epoch)
/// 49728 end of fields; the pad is PAD_BYTES = 65536 bytes, data follows
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PadLayout;

impl PadLayout {
    /// `abort: u32`, 0 or `(1<<31)|((rank & 0x7f_ffff)<<8)|reason` ([`abort_word`]).
    pub const ABORT: usize = 0;
    /// The [`ErrorRecord`].
    pub const ERROR: usize = 16;
    /// Offset of `ErrorRecord::code` (u32).
    pub const ERROR_CODE: usize = Self::ERROR;
    /// Offset of `ErrorRecord::rank` (u32).
    pub const ERROR_RANK: usize = Self::ERROR + 4;
    /// Offset of `ErrorRecord::block` (u32).
    pub const ERROR_BLOCK: usize = Self::ERROR + 8;
    /// Offset of `ErrorRecord::peer` (u32).
    pub const ERROR_PEER: usize = Self::ERROR + 12;
    /// Offset of `ErrorRecord::phase` (u32).
    pub const ERROR_PHASE: usize = Self::ERROR + 16;
    /// Offset of `ErrorRecord::expected` (u64).
    pub const ERROR_EXPECTED: usize = Self::ERROR + 24;
    /// Offset of `ErrorRecord::seen` (u64).
    pub const ERROR_SEEN: usize = Self::ERROR + 32;
    /// Bytes of one flag array `[2][MAX_BLOCKS][MAX_RANKS]` of u64.
    pub const FLAG_ARRAY_BYTES: usize = 2 * MAX_BLOCKS * MAX_RANKS * 8;
    /// The start flags.
    pub const START: usize = 64;
    /// The mid flags.
    pub const MID: usize = Self::START + Self::FLAG_ARRAY_BYTES;
    /// The end flags.
    pub const END: usize = Self::MID + Self::FLAG_ARRAY_BYTES;
    /// `epochs: [u32; MAX_BLOCKS]`: `epochs[b]` is the last epoch that block b of this rank
    /// completed. Each block reads and writes only its own word (block 0 also writes the
    /// words of the blocks a call did not launch), so no counter joins the blocks at the end
    /// of a call; after every call all words hold its epoch.
    pub const EPOCHS: usize = Self::END + Self::FLAG_ARRAY_BYTES;
    /// Bytes used by the pad fields.
    pub const USED: usize = Self::EPOCHS + MAX_BLOCKS * 4;
    /// Bytes reserved for the pad (data starts here; a multiple of 4096).
    pub const PAD_BYTES: usize = 65536;

    /// Byte offset of block `block`'s epoch word.
    pub const fn epoch(block: usize) -> usize {
        Self::EPOCHS + block * 4
    }

    /// Byte offset of the flag written by rank `src` into slot `[parity][block][src]` of
    /// flag array `kind`. Arguments out of range are clamped by the caller; this function
    /// only computes.
    pub const fn flag(kind: BarrierKind, parity: usize, block: usize, src: usize) -> usize {
        let base = match kind {
            BarrierKind::Start => Self::START,
            BarrierKind::Mid => Self::MID,
            BarrierKind::End => Self::END,
        };
        base + ((parity * MAX_BLOCKS + block) * MAX_RANKS + src) * 8
    }
}

const _: () = assert!(PadLayout::USED <= PadLayout::PAD_BYTES);
const _: () = assert!(PadLayout::PAD_BYTES % 4096 == 0);

/// Mask of the rank field of the abort word (23 bits; bit 31 is the "set" bit).
pub const ABORT_RANK_MASK: u32 = 0x7f_ffff;

/// Error code: a bounded wait passed its deadline.
pub const ERR_TIMEOUT: u32 = 1;
/// Error code: a peer's flag carries a newer epoch (ranks disagree on the call count).
pub const ERR_SEQ_MISMATCH: u32 = 2;
/// Error code: same epoch, different call signature (count/dtype/op/algo differ).
pub const ERR_CALL_MISMATCH: u32 = 3;
/// Error code: another rank raised the abort word.
pub const ERR_PEER_ABORT: u32 = 4;

/// Name of an error code (`timeout`, `seq-mismatch`, `call-mismatch`, `peer-abort`).
pub const fn error_code_name(code: u32) -> &'static str {
    match code {
        ERR_TIMEOUT => "timeout",
        ERR_SEQ_MISMATCH => "seq-mismatch",
        ERR_CALL_MISMATCH => "call-mismatch",
        ERR_PEER_ABORT => "peer-abort",
        _ => "unknown",
    }
}

/// The abort word value raised by `rank` for `reason` (an error code):
/// `0x8000_0000 | ((rank & 0x7f_ffff) << 8) | reason`.
pub const fn abort_word(rank: u32, reason: u32) -> u32 {
    (1 << 31) | ((rank & ABORT_RANK_MASK) << 8) | (reason & 0xff)
}

/// The rank that raised an abort word (inverse of [`abort_word`]).
pub const fn abort_rank(word: u32) -> u32 {
    (word >> 8) & ABORT_RANK_MASK
}

/// First failure seen on a rank, as stored in the pad at [`PadLayout::ERROR`]
/// (`#[repr(C)]`, 40 bytes, same layout as the CUDA struct).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ErrorRecord {
    /// One of `ERR_*`; 0 = no error.
    pub code: u32,
    /// Rank that saw the failure.
    pub rank: u32,
    /// Block that saw it.
    pub block: u32,
    /// Peer rank involved (waited on / that aborted).
    pub peer: u32,
    /// Step index of the program (PROTOCOL.md step number).
    pub phase: u32,
    /// Padding (keeps `expected` 8-byte aligned).
    pub _pad: u32,
    /// Flag value waited for.
    pub expected: u64,
    /// Flag value last seen.
    pub seen: u64,
}

const _: () = assert!(std::mem::size_of::<ErrorRecord>() == 40);

impl fmt::Display for ErrorRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on rank {} block {} (peer {}, step {}): expected flag epoch {} sig {:#010x}, saw epoch {} sig {:#010x}",
            error_code_name(self.code),
            self.rank,
            self.block,
            self.peer,
            self.phase,
            flag_epoch(self.expected),
            flag_sig(self.expected),
            flag_epoch(self.seen),
            flag_sig(self.seen)
        )
    }
}

/// Bytes of an [`ErrorRecord`] on the device.
pub const ERROR_RECORD_BYTES: usize = 40;

const _: () = assert!(std::mem::size_of::<ErrorRecord>() == ERROR_RECORD_BYTES);

/// Decode an [`ErrorRecord`] from the little-endian bytes of the device struct.
pub fn error_record_from_le_bytes(b: &[u8; ERROR_RECORD_BYTES]) -> ErrorRecord {
    let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let u64_at = |o: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(w)
    };
    ErrorRecord {
        code: u32_at(0),
        rank: u32_at(4),
        block: u32_at(8),
        peer: u32_at(12),
        phase: u32_at(16),
        _pad: u32_at(20),
        expected: u64_at(24),
        seen: u64_at(32),
    }
}

/// Probe words (in the pad's reserved tail after the flags): one u64 per writer rank,
/// used to confirm peer mappings with a real write/read at init.
pub const PAD_PROBE: usize = PadLayout::USED;

const _: () = assert!(PAD_PROBE + 8 * MAX_RANKS <= PadLayout::PAD_BYTES);

/// XORed into the call signature of a zero-copy two-shot (symmetric tensors), so that a
/// rank making it while a peer makes the copy-in two-shot of the same size is a call
/// mismatch, not a silent mix of two protocols.
pub const ZERO_COPY_SIG: u32 = 0x5a5a_0000;

#[cfg(test)]
mod tests {

    #[test]
    fn next_epoch_skips_zero_and_keeps_the_parity_alternating() {
        assert_eq!(next_epoch(0), 1);
        assert_eq!(next_epoch(1), 2);
        assert_eq!(next_epoch(u32::MAX - 1), u32::MAX);
        assert_eq!(next_epoch(u32::MAX), 2);
        let mut e = u32::MAX - 5;
        for _ in 0..12 {
            let n = next_epoch(e);
            assert_ne!(n, 0);
            assert_ne!(n & 1, e & 1, "{e} -> {n}");
            e = n;
        }
    }
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DType::ALL {
            assert_eq!(d.to_string().parse::<DType>().unwrap(), d);
        }
        for o in ReduceOp::ALL {
            assert_eq!(o.to_string().parse::<ReduceOp>().unwrap(), o);
        }
        for a in Algo::ALL {
            assert_eq!(a.to_string().parse::<Algo>().unwrap(), a);
        }
        assert_eq!("ONE-SHOT".parse::<Algo>().unwrap(), Algo::OneShot);
        assert_eq!("push-one-shot".parse::<Algo>().unwrap(), Algo::PushOneShot);
        assert_eq!(
            call_sig(Algo::PushOneShot, DType::Bf16, ReduceOp::Max, 99),
            crate::push::push_call_sig(DType::Bf16, ReduceOp::Max, 99)
        );
        assert!("three-shot".parse::<Algo>().is_err());
        assert!("f64".parse::<DType>().is_err());
        assert_eq!(DType::Bf16.size(), 2);
        assert_eq!(DType::F32.size(), 4);
        assert_eq!(Algo::PushOneShot.kernel_name(), "push_one_shot");
        let e = "three-shot".parse::<Algo>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid algorithm (one-shot|two-shot|hcm|push-one-shot): \"three-shot\""
        );
    }

    #[test]
    fn call_sig_is_fnv1a() {
        // FNV-1a of the empty string is the offset basis; check the algorithm against an
        // independent byte-wise implementation.
        let bytes: Vec<u8> = [1u8, 2, 2]
            .into_iter()
            .chain(1000u64.to_le_bytes())
            .collect();
        let mut h: u32 = 0x811c9dc5;
        for b in bytes {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x01000193);
        }
        assert_eq!(call_sig(Algo::TwoShot, DType::F32, ReduceOp::Min, 1000), h);
        assert_ne!(
            call_sig(Algo::OneShot, DType::F32, ReduceOp::Sum, 1000),
            call_sig(Algo::OneShot, DType::F32, ReduceOp::Sum, 1001)
        );
        assert_ne!(
            call_sig(Algo::OneShot, DType::F32, ReduceOp::Sum, 8),
            call_sig(Algo::OneShot, DType::F32, ReduceOp::Max, 8)
        );
        // counts that differ only above bit 32 still differ
        assert_ne!(
            call_sig(Algo::OneShot, DType::F32, ReduceOp::Sum, 1),
            call_sig(Algo::OneShot, DType::F32, ReduceOp::Sum, 1 + (1u64 << 32))
        );
    }

    #[test]
    fn error_record_round_trips_through_bytes() {
        let r = ErrorRecord {
            code: ERR_TIMEOUT,
            rank: 3,
            block: 17,
            peer: 5,
            phase: 2,
            _pad: 0,
            expected: flag_word(9, 0xdead_beef),
            seen: flag_word(8, 0xdead_beef),
        };
        let mut b = [0u8; ERROR_RECORD_BYTES];
        b[0..4].copy_from_slice(&r.code.to_le_bytes());
        b[4..8].copy_from_slice(&r.rank.to_le_bytes());
        b[8..12].copy_from_slice(&r.block.to_le_bytes());
        b[12..16].copy_from_slice(&r.peer.to_le_bytes());
        b[16..20].copy_from_slice(&r.phase.to_le_bytes());
        b[24..32].copy_from_slice(&r.expected.to_le_bytes());
        b[32..40].copy_from_slice(&r.seen.to_le_bytes());
        assert_eq!(error_record_from_le_bytes(&b), r);
        let s = r.to_string();
        assert!(
            s.contains("timeout on rank 3 block 17 (peer 5, step 2)"),
            "{s}"
        );
        assert!(s.contains("epoch 9"), "{s}");
    }

    #[test]
    fn pad_layout_offsets() {
        assert_eq!(PadLayout::flag(BarrierKind::Start, 0, 0, 0), 64);
        assert_eq!(PadLayout::flag(BarrierKind::Start, 0, 0, 1), 72);
        assert_eq!(
            PadLayout::flag(BarrierKind::Start, 1, 0, 0),
            64 + 128 * 8 * 8
        );
        assert_eq!(PadLayout::FLAG_ARRAY_BYTES, 16384);
        assert_eq!(PadLayout::MID, 16448);
        assert_eq!(PadLayout::END, 32832);
        assert_eq!(PadLayout::EPOCHS, 49216);
        assert_eq!(PadLayout::USED, 49728);
        assert_eq!(PadLayout::PAD_BYTES, 65536);
        assert_eq!(PadLayout::ABORT, 0);
        assert_eq!(PadLayout::flag(BarrierKind::Mid, 0, 0, 0), PadLayout::MID);
        assert_eq!(
            PadLayout::flag(BarrierKind::End, 1, MAX_BLOCKS - 1, MAX_RANKS - 1) + 8,
            PadLayout::EPOCHS
        );
        assert_eq!(PadLayout::epoch(MAX_BLOCKS - 1) + 4, PadLayout::USED);
        assert_eq!(PadLayout::ERROR_SEEN + 8, PadLayout::ERROR + 40);
        assert_eq!(flag_epoch(flag_word(7, 0xdead_beef)), 7);
        assert_eq!(flag_sig(flag_word(7, 0xdead_beef)), 0xdead_beef);
        assert_eq!(abort_word(3, ERR_TIMEOUT), 0x8000_0301);
        assert_eq!(abort_word(0xff_ffff, 4), 0xffff_ff04);
        assert_eq!(abort_rank(abort_word(0x7f_fffe, 1)), 0x7f_fffe);
    }
}
