//! The kernel ABI: the argument block every inc kernel takes by value ([`KernelArgs`],
//! `IncArgs` in the generated kernels/proto.cuh), its `FLAG_*` bits, the threads per block
//! and the mapped host block's offsets.

use crate::types::{ERROR_RECORD_BYTES, MAX_RANKS};

/// Threads per block of every inc kernel (`__launch_bounds__` in the sources).
pub const MAX_THREADS: u32 = 512;

/// `IncArgs` of kernels/proto.cuh, passed by value (296 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KernelArgs {
    /// Signal pad of every rank (own included).
    pub pad: [u64; MAX_RANKS],
    /// Data area of every rank.
    pub data: [u64; MAX_RANKS],
    /// User input.
    pub input: u64,
    /// User output (may equal input).
    pub output: u64,
    /// Elements.
    pub count: u64,
    /// Bytes of one parity half.
    pub half_bytes: u64,
    /// Zero-copy: offset of the input inside the data area.
    pub zc_offset: u64,
    /// Per-wait timeout in nanoseconds.
    pub timeout_ns: u64,
    /// Mapped host block (abort word + error mirror), 0 = none.
    pub host: u64,
    /// This rank.
    pub rank: u32,
    /// World size.
    pub world: u32,
    /// Call signature.
    pub sig: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// hcm: n0, n1, n2, relay.
    pub hcm: [u32; 4],
    /// avg: 1/world; else 1.
    pub scale: f32,
    /// Bytes of one slot of the push region, in every call: the LL slots, the lines
    /// region's layout, and the window of the push region every kernel zeroes (PROTOCOL.md
    /// "Wrap", rule 5); 0 only where a call has no push region (then nothing is zeroed).
    pub push_slot_bytes: u32,
    /// Zero-copy two-shot, push form ([`FLAG_ZC_PUSH`]): every rank's symmetric tensor.
    pub sym: [u64; MAX_RANKS],
    /// Copy-in two-shot in pieces ([`FLAG_PREV_GATHER`]): elements of the previous piece,
    /// whose output ends where this piece's begins; 0 otherwise.
    pub prev_count: u64,
}

/// Bytes of [`KernelArgs`] (the kernels `static_assert` the same size).
pub const KERNEL_ARGS_BYTES: usize = 296;

const _: () = assert!(std::mem::size_of::<KernelArgs>() == KERNEL_ARGS_BYTES);

/// The input already lives in the symmetric buffer (no copy-in, end barrier).
pub const FLAG_ZERO_COPY: u32 = 1;
/// Input and output are 16-byte aligned (128-bit user I/O).
pub const FLAG_IO_ALIGNED: u32 = 2;
/// With [`FLAG_ZERO_COPY`] on a two-shot: the push form (scatter into the owners' receive
/// areas, all-gather by stores into every rank's symmetric tensor, `KernelArgs::sym`).
pub const FLAG_ZC_PUSH: u32 = 4;
/// Copy-in two-shot, a piece that is not the last of its call: skip the Gather step (the
/// next piece runs it as its GatherPrev; PROTOCOL.md "Deferred gather").
pub const FLAG_DEFER_GATHER: u32 = 8;
/// Copy-in two-shot, a piece after the first of its call: the previous piece's Gather
/// (`KernelArgs::prev_count`) runs in this kernel before the mid barrier, on the last
/// `G / COPY_BLOCK_DIV` blocks of its own while the others move this piece.
pub const FLAG_PREV_GATHER: u32 = 16;
/// Copy-in two-shot, a call of its own that fits the lines region
/// ([`crate::lines::use_lines`]): the form of 128-byte flagged lines, no barrier
/// (PROTOCOL.md "two-shot of lines").
pub const FLAG_LINES: u32 = 32;
/// One block in this many copies out the previous piece under [`FLAG_PREV_GATHER`]
/// (2x H200, copy-in 1 GiB in 33 pieces, GPU run 31: 1 in 8 3337 us, 1 in 4 3401, 1 in 16
/// 3365 (the copy no longer hides), 1 in 2 3542; without the copy at all, 1 in 4: 3401).
pub const COPY_BLOCK_DIV: u32 = 8;

/// Offset of the abort word (u32) in the pinned, mapped host block.
pub const HOST_ABORT: usize = 0;
/// Offset of the error record mirror in the host block.
pub const HOST_ERROR: usize = 8;
/// Bytes of the host block: abort word (u32) + padding + error record mirror.
pub const HOST_BLOCK_BYTES: usize = HOST_ERROR + ERROR_RECORD_BYTES;
