//! Launch arithmetic (pure, CPU-tested): the kernel argument block, per-algorithm buffer
//! needs in 64-bit bytes, and the grid size from SM count, occupancy and co-residency.

use crate::error::{CudaError, Result};
use crate::proto::{Algo, DType, CHUNK_BYTES, MAX_BLOCKS};
use inc_proto::areas;

pub use inc_proto::{
    KernelArgs, FLAG_DEFER_GATHER, FLAG_IO_ALIGNED, FLAG_LINES, FLAG_PREV_GATHER, FLAG_ZC_PUSH,
    FLAG_ZERO_COPY, MAX_THREADS,
};

/// The two forms of the zero-copy two-shot (symmetric tensors; PROTOCOL.md "two-shot,
/// zero-copy").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZeroCopyForm {
    /// Owners read their slice from every peer's tensor and store the result into every
    /// tensor (sim program `two_shot_zc`): no scratch, fastest up to a few MiB.
    Pull,
    /// Every rank stores each slice of its tensor into the owner's receive area, owners
    /// store the result into every tensor (sim program `two_shot_zcp`): stores only,
    /// fastest above (in pieces of the parity halves).
    Push,
    /// A call that fits the lines region: the copy-in two-shot of 128-byte lines, in place
    /// on the tensor (PROTOCOL.md "two-shot of lines"; it reads only my tensor and writes
    /// only my tensor, so symmetric memory needs nothing else). 4x H200, world 4 (GPU run
    /// 92): 1 MiB 8.5 us against the pull form's 11.7.
    Lines,
}

/// Which zero-copy form a call of `bytes` per rank at `world` ranks runs. Measured on 4
/// H200s (graph, bf16; docs/PERFORMANCE.md): at 4 ranks (GPU run 55) pull 12.55 us / push
/// 11.74 at 1 MiB, 17.0 / 16.5 at 2 MiB (512 KiB and below go to the one-shot); at 3 ranks
/// pull 15.2 / push 15.4 at 2 MiB, equal at 1 MiB; at 2 ranks (GPU run 27) pull 31.4 / push
/// 30.6 at 8 MiB, 4 MiB and below go to the one-shot anyway.
///
/// [`ZeroCopyForm::Lines`] comes first where the call fits the lines region of
/// `push_slot_bytes` ([`inc_proto::lines::use_lines`]).
pub fn zero_copy_form(world: usize, bytes: u64, push_slot_bytes: u64) -> ZeroCopyForm {
    if inc_proto::lines::use_lines(bytes, world, push_slot_bytes as usize, true) {
        return ZeroCopyForm::Lines;
    }
    // 5-8 ranks: not re-measured (no machine of more than 4 GPUs lent): the earlier 2 MiB
    let switch = match world {
        0..=2 => 4 << 20,
        4 => 512 << 10,
        _ => 2 << 20,
    };
    if bytes > switch {
        ZeroCopyForm::Push
    } else {
        ZeroCopyForm::Pull
    }
}

/// Elements per 16-byte chunk.
pub const fn lanes(dtype: DType) -> u64 {
    CHUNK_BYTES / dtype.size() as u64
}

/// Bytes of `count` elements, or `None` on u64 overflow.
pub fn tensor_bytes(dtype: DType, count: u64) -> Option<u64> {
    count.checked_mul(dtype.size() as u64)
}

/// 16-byte chunks covering `count` elements (the last may be partial).
pub fn chunks(dtype: DType, count: u64) -> Option<u64> {
    Some(tensor_bytes(dtype, count)?.div_ceil(CHUNK_BYTES))
}

/// Bytes of one parity half that a (non-zero-copy) call of `algo` at `world` ranks needs.
pub fn needed_half_bytes(algo: Algo, dtype: DType, count: u64, world: usize) -> Option<u64> {
    let c = chunks(dtype, count)?;
    let input = c.checked_mul(CHUNK_BYTES)?;
    match algo {
        // a receive area of C chunks per other rank (PROTOCOL.md "Areas")
        Algo::OneShot => areas::one_shot_chunks(c, world)?.checked_mul(CHUNK_BYTES),
        // a receive slice and a gather slice per other rank
        Algo::TwoShot => areas::two_shot_chunks(c, world)?.checked_mul(CHUNK_BYTES),
        // input copy + f32 partial of every element slot
        Algo::Hcm => input.checked_add(c.checked_mul(lanes(dtype) * 4)?),
        // push-one-shot uses the push region, not the parity halves
        Algo::PushOneShot => Some(0),
    }
}

/// Most elements of `dtype` that `algo` can reduce at `world` ranks with parity halves of
/// `half_bytes`. push-one-shot is limited by the push slot instead: [`push_max_count`] with
/// [`crate::DEFAULT_PUSH_SLOT_BYTES`] here (see [`crate::PeerBuffers::push_slot_bytes`]).
pub fn max_count(algo: Algo, dtype: DType, half_bytes: u64, world: usize) -> u64 {
    let half = half_bytes / CHUNK_BYTES;
    let chunks = match algo {
        Algo::OneShot => areas::one_shot_max_chunks(half, world),
        Algo::TwoShot => areas::two_shot_max_chunks(half, world),
        Algo::Hcm => half_bytes / (CHUNK_BYTES + lanes(dtype) * 4),
        Algo::PushOneShot => return push_max_count(dtype, crate::DEFAULT_PUSH_SLOT_BYTES),
    };
    chunks.saturating_mul(lanes(dtype))
}

/// Most elements of `dtype` one piece of a zero-copy push-form call takes at `world` ranks
/// with parity halves of `half_bytes`: of a half it needs only a receive slice per other
/// rank (the all-gather stores straight into the tensors; PROTOCOL.md "Areas"), so
/// `floor(H / (W - 1)) x W` chunks of the `H` a half holds: two halves' worth at world 2
/// (twice what the copy-in two-shot's receive + gather slices allow).
pub fn zero_copy_push_max_count(dtype: DType, half_bytes: u64, world: usize) -> u64 {
    areas::zero_copy_push_max_chunks(half_bytes / CHUNK_BYTES, world).saturating_mul(lanes(dtype))
}

/// Blocks of a zero-copy push-form two-shot (PROTOCOL.md "Push form") at `world` ranks,
/// from `blocks`, the plan's grid of `threads`-thread blocks: at worlds 3 and 4 no more
/// than every thread holding two chunks of its slice, so that every thread runs the
/// ReduceStore's two-chunk loop and Forward (`inc_zcp_reduce_store_w`, `inc_zcp_forward`)
/// rather than the one-chunk loop that stores each result into every tensor. 4x H200, GPU
/// run 139 (INC_BLOCKS against the default grid of 128), world 4 zero-copy: 4 MiB 25.36 ->
/// 24.76 us at 64 blocks, 3 MiB 21.03 -> 20.73 at 48; at 8 MiB and above the default grid
/// already gives every thread two chunks. Other worlds keep `blocks` (world 2 folds four
/// chunks at a time on the full grid; worlds 5-8 have no several-chunk loop).
pub fn zero_copy_push_blocks(
    dtype: DType,
    count: u64,
    world: usize,
    threads: u32,
    blocks: u32,
) -> u32 {
    if !(3..=4).contains(&world) {
        return blocks;
    }
    let slice = areas::slice_chunks(chunks(dtype, count).unwrap_or(u64::MAX), world);
    let want = slice.div_ceil(2 * u64::from(threads.max(1))).max(1);
    u32::try_from(want).map_or(blocks, |w| blocks.min(w))
}

/// Elements per piece of a call of `count` elements cut into pieces of at most `max`
/// (a multiple of `lanes`, the elements of one 16-byte chunk, or less than one chunk):
/// the fewest pieces, all of one size in whole chunks but the last (at most as large), so
/// every piece keeps the tensor's alignment and no piece is a sliver that pays a whole
/// kernel for a few chunks. Every rank cuts the same pieces. A call that must be cut is
/// cut against the largest power of two of elements within `max`: pieces of a size that
/// is not one ran slower (4x H200, GPU run 107: world 4 copy-in 1 GiB in 42.7 MiB pieces
/// 5194 us against 5030 in 32 MiB ones, 256 MiB 1294 against 1233; zero-copy 1 GiB in
/// 85.3 MiB pieces 4843 against 4663 in 64 MiB ones), while the power-of-two pieces that
/// the areas of PROTOCOL.md "Areas" allow at world 2 won (run 106: copy-in 1 GiB in 64 MiB
/// pieces 3340 -> 3087, zero-copy in 128 MiB pieces 3095 -> 3044).
pub fn piece_len(count: u64, max: u64, lanes: u64) -> u64 {
    let lanes = lanes.max(1);
    let max = (max / lanes * lanes).max(lanes);
    let max = if count > max {
        pow2_floor(max).max(lanes)
    } else {
        max
    };
    let n = count.div_ceil(max).max(1);
    count.div_ceil(n).div_ceil(lanes) * lanes
}

/// The largest power of two at most `x` (1 for 0).
const fn pow2_floor(x: u64) -> u64 {
    if x == 0 {
        1
    } else {
        1u64 << (63 - x.leading_zeros())
    }
}

/// Most elements of `dtype` one push-one-shot call carries with `slot_bytes` per slot
/// (every 16-byte LL line carries 8 payload bytes).
pub fn push_max_count(dtype: DType, slot_bytes: u64) -> u64 {
    push_capacity(slot_bytes) / dtype.size() as u64
}

/// Payload bytes per rank that one push one-shot (LL) slot of `slot_bytes` carries.
pub const fn push_capacity(slot_bytes: u64) -> u64 {
    slot_bytes / 2
}

/// Threads per block of the push one-shot (LL): one 8-byte line per thread, blocks of 256
/// (2x H200, graph, world 2, GPU run 19: 4 KiB 3.06 -> 2.90 us against blocks of 512,
/// 8-128 KiB 0.02-0.08 less; blocks of 128 lose at 256 KiB, where the grid caps).
pub const LL_THREADS: u32 = 256;

/// Threads per block of the one-shot while its grid stays under the co-resident cap
/// (see [`plan`]).
pub const ONE_SHOT_THREADS: u32 = 256;

/// Chunks per thread per iteration of the pull reductions (kernels: `inc_reduce`).
pub const REDUCE_UNROLL: u64 = 2;

/// Check that a call at `world` ranks fits; a clear error otherwise.
pub fn check_capacity(
    algo: Algo,
    dtype: DType,
    count: u64,
    half_bytes: u64,
    world: usize,
) -> Result<()> {
    let bytes = tensor_bytes(dtype, count).ok_or_else(|| {
        CudaError::InvalidArgument(format!("{count} elements of {dtype} overflow u64 bytes"))
    })?;
    if algo == Algo::PushOneShot {
        let cap = push_capacity(crate::DEFAULT_PUSH_SLOT_BYTES);
        if bytes > cap {
            return Err(CudaError::TooLarge {
                algo,
                bytes,
                needed: bytes,
                capacity: cap,
            });
        }
        return Ok(());
    }
    let needed = needed_half_bytes(algo, dtype, count, world).unwrap_or(u64::MAX);
    if needed > half_bytes {
        return Err(CudaError::TooLarge {
            algo,
            bytes,
            needed,
            capacity: half_bytes,
        });
    }
    Ok(())
}

/// Grid of one launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchPlan {
    /// Blocks (1..=MAX_BLOCKS), identical on every rank for one call.
    pub blocks: u32,
    /// Threads per block.
    pub threads: u32,
}

/// Device facts the plan needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceLimits {
    /// Streaming multiprocessors.
    pub sm_count: u32,
    /// Co-resident blocks per SM of the kernel at [`MAX_THREADS`] (occupancy API).
    pub blocks_per_sm: u32,
    /// Ranks whose kernels run at the same time on this device (1 for one GPU per rank;
    /// W for virtual ranks): they share the co-resident slots.
    pub ranks_on_device: u32,
}

impl DeviceLimits {
    /// Blocks one rank may launch so that every block of every rank on this device is
    /// resident at once (a block spinning on a peer must never wait for an SM).
    pub fn co_resident_blocks(&self) -> u32 {
        let slots = u64::from(self.sm_count) * u64::from(self.blocks_per_sm);
        let per_rank = slots / u64::from(self.ranks_on_device.max(1));
        u32::try_from(per_rank.min(MAX_BLOCKS as u64)).unwrap_or(MAX_BLOCKS as u32)
    }
}

/// Blocks of a two-shot of lines (PROTOCOL.md "two-shot of lines"): 8 threads move one
/// 128-byte line, so one block per `threads / 8` lines of the W slices; at least 1, at most
/// the co-resident cap.
pub fn lines_blocks(bytes: u64, world: usize, threads: u32, limits: &DeviceLimits) -> u32 {
    let lines = inc_proto::lines::LinesLayout::slice_lines(bytes, world.max(1))
        .saturating_mul(world as u64);
    let per_block = u64::from(threads / 8).max(1);
    let cap = u64::from(limits.co_resident_blocks().max(1));
    u32::try_from(lines.div_ceil(per_block).clamp(1, cap)).unwrap_or(1)
}

/// Choose the grid for `count` elements. `requested` forces a block count (checked).
/// Auto: one block per `threads` chunks of the tensor (one-shot, two-shot; hcm: `threads` x
/// [`REDUCE_UNROLL`] chunks), one block per [`LL_THREADS`] 8-byte LL lines (push one-shot, blocks of that size); at least 1, at
/// most the co-resident limit (sized from the SM count).
pub fn plan(
    algo: Algo,
    dtype: DType,
    count: u64,
    limits: &DeviceLimits,
    requested: Option<u32>,
) -> Result<LaunchPlan> {
    let threads = MAX_THREADS;
    let cap = limits.co_resident_blocks();
    if cap == 0 {
        return Err(CudaError::Launch(format!(
            "no block can be co-resident: {} SMs x {} blocks/SM shared by {} ranks",
            limits.sm_count, limits.blocks_per_sm, limits.ranks_on_device
        )));
    }
    if let Some(b) = requested {
        if b == 0 || b as usize > MAX_BLOCKS {
            return Err(CudaError::Launch(format!(
                "blocks = {b}, must be 1..={MAX_BLOCKS}"
            )));
        }
        if b > cap {
            return Err(CudaError::Launch(format!(
                "blocks = {b} cannot all be co-resident: at most {cap} per rank ({} SMs x {} blocks/SM, {} ranks on this device)",
                limits.sm_count, limits.blocks_per_sm, limits.ranks_on_device
            )));
        }
        return Ok(LaunchPlan { blocks: b, threads });
    }
    let c = chunks(dtype, count).ok_or_else(|| {
        CudaError::InvalidArgument(format!("{count} elements overflow u64 bytes"))
    })?;
    // The one-shot: blocks of ONE_SHOT_THREADS while that grid fits the co-resident cap
    // (more SMs storing into the peers; 4x H200 GPU run 56, world 4: 128 KiB 5.55 -> 5.30 us,
    // 256 KiB 6.69 -> 6.50, world 3 256 KiB 5.79 -> 5.62, zero-copy alike), else MAX_THREADS
    // (under the cap, fewer larger blocks won: 1 MiB 13.7 vs 14.1, run 55).
    let threads = if algo == Algo::PushOneShot {
        LL_THREADS
    } else if algo == Algo::OneShot && c.div_ceil(u64::from(ONE_SHOT_THREADS)) <= u64::from(cap) {
        ONE_SHOT_THREADS
    } else {
        threads
    };
    let per_block = u64::from(threads);
    let want = match algo {
        // One block per `threads` chunks (8 KiB at 512 threads); two-shot too: every thread
        // scatters and gathers chunks of the whole tensor. Twice the blocks of one block per
        // `threads` x REDUCE_UNROLL chunks: 2x H100, graph, world 2 (GPU run 15b, INC_BLOCKS
        // sweep): one-shot 256 KiB 7.59 -> 6.90 us, 512 KiB 8.2 -> 7.08; zero-copy 512 KiB
        // 8.6 -> 7.15; two-shot unchanged within noise.
        Algo::OneShot | Algo::TwoShot => c.div_ceil(per_block),
        Algo::Hcm => c.div_ceil(per_block * REDUCE_UNROLL),
        Algo::PushOneShot => (2 * c).div_ceil(per_block),
    }
    .max(1);
    let blocks = u32::try_from(want.min(u64::from(cap))).unwrap_or(cap);
    Ok(LaunchPlan { blocks, threads })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::MAX_RANKS;

    const H100: DeviceLimits = DeviceLimits {
        sm_count: 132,
        blocks_per_sm: 2,
        ranks_on_device: 1,
    };

    #[test]
    fn zero_copy_push_grid_gives_every_thread_two_chunks_at_worlds_3_and_4() {
        let mib = |m: u64| (m << 20) / 2; // bf16 elements
        assert_eq!(zero_copy_push_blocks(DType::Bf16, mib(4), 4, 512, 128), 64);
        assert_eq!(zero_copy_push_blocks(DType::Bf16, mib(3), 4, 512, 128), 48);
        assert_eq!(zero_copy_push_blocks(DType::Bf16, mib(8), 4, 512, 128), 128);
        assert_eq!(
            zero_copy_push_blocks(DType::Bf16, mib(64), 4, 512, 128),
            128
        );
        assert_eq!(zero_copy_push_blocks(DType::Bf16, mib(4), 3, 512, 128), 86);
        // other worlds, and a grid already smaller, keep theirs
        assert_eq!(zero_copy_push_blocks(DType::Bf16, mib(4), 2, 512, 128), 128);
        assert_eq!(zero_copy_push_blocks(DType::Bf16, mib(4), 8, 512, 128), 128);
        assert_eq!(zero_copy_push_blocks(DType::Bf16, mib(4), 4, 512, 40), 40);
        assert_eq!(zero_copy_push_blocks(DType::Bf16, 1, 4, 512, 1), 1);
    }

    #[test]
    fn chunk_math_handles_tails() {
        assert_eq!(chunks(DType::Bf16, 1), Some(1));
        assert_eq!(chunks(DType::Bf16, 8), Some(1));
        assert_eq!(chunks(DType::Bf16, 9), Some(2));
        assert_eq!(chunks(DType::F32, 4), Some(1));
        assert_eq!(chunks(DType::F32, 5), Some(2));
        assert_eq!(chunks(DType::F32, 0), Some(0));
    }

    #[test]
    fn sizes_cross_the_2_pow_32_boundary_in_u64() {
        // 2^31 bf16 = 2^32 bytes: a u32 byte count would wrap to 0
        let n = 1u64 << 31;
        assert_eq!(tensor_bytes(DType::Bf16, n), Some(1u64 << 32));
        assert_eq!(chunks(DType::Bf16, n), Some(1u64 << 28));
        // one-shot: a receive area of the input per other rank (world 1: one)
        assert_eq!(
            needed_half_bytes(Algo::OneShot, DType::Bf16, n, 1),
            Some(1u64 << 32)
        );
        assert_eq!(
            needed_half_bytes(Algo::OneShot, DType::Bf16, n, 4),
            Some(3 * (1u64 << 32))
        );
        // one element past: still exact; two-shot holds a receive and a gather slice per
        // other rank (2^28 + 1 chunks: slices of 2^26 + 1)
        assert_eq!(
            needed_half_bytes(Algo::TwoShot, DType::Bf16, n + 1, 4),
            Some(2 * 3 * ((1u64 << 26) + 1) * 16)
        );
        // hcm: input + f32 partial = 2 + 4 bytes/element
        assert_eq!(
            needed_half_bytes(Algo::Hcm, DType::Bf16, n, 8),
            Some(3 * (1u64 << 32))
        );
        // capacity check at the boundary, both sides
        assert!(check_capacity(Algo::OneShot, DType::Bf16, n, 1u64 << 33, 3).is_ok());
        let e = check_capacity(Algo::OneShot, DType::Bf16, n + 1, 1u64 << 33, 3).unwrap_err();
        assert!(
            matches!(e, CudaError::TooLarge { needed, capacity, .. } if needed == 2 * ((1u64 << 32) + 16) && capacity == 1u64 << 33)
        );
        // overflow is an error, not a wrap
        assert_eq!(tensor_bytes(DType::F32, u64::MAX / 2), None);
        assert!(check_capacity(Algo::OneShot, DType::F32, u64::MAX / 2, u64::MAX, 2).is_err());
    }

    #[test]
    fn max_count_is_the_exact_capacity_limit() {
        let half = 10 << 20;
        for w in [2, 3, 4, 8] {
            for algo in Algo::ALL {
                for d in DType::ALL {
                    let m = max_count(algo, d, half, w);
                    if algo == Algo::PushOneShot {
                        assert_eq!(m, crate::DEFAULT_PUSH_SLOT_BYTES / 2 / d.size() as u64);
                    }
                    assert!(
                        check_capacity(algo, d, m, half, w).is_ok(),
                        "{algo} {d} {w}"
                    );
                    assert!(
                        check_capacity(algo, d, m + 1, half, w).is_err(),
                        "{algo} {d} {w}"
                    );
                }
            }
        }
        // one-shot: W - 1 receive areas in a half
        assert_eq!(max_count(Algo::OneShot, DType::Bf16, 10 << 20, 2), 5 << 20);
        assert_eq!(
            max_count(Algo::OneShot, DType::Bf16, 8 << 20, 4),
            (8 << 20) / 16 / 3 * 8
        );
        assert_eq!(max_count(Algo::Hcm, DType::F32, 8 << 20, 8), 1 << 20);
        // two-shot: a receive and a gather slice per other rank; at world 2 a whole half
        assert_eq!(max_count(Algo::TwoShot, DType::Bf16, 10 << 20, 2), 5 << 20);
        assert_eq!(
            max_count(Algo::TwoShot, DType::Bf16, 64 << 20, 4),
            (64 << 20) / 16 / 6 * 4 * 8
        );
    }

    #[test]
    fn pieces_are_equal_whole_chunks_and_fewest() {
        // fits: one piece of the whole call
        assert_eq!(piece_len(100, 1 << 20, 8), 104);
        // 1 GiB of bf16 in halves of 32 Mi elements: 16 equal pieces
        assert_eq!(piece_len(512 << 20, 32 << 20, 8), 32 << 20);
        // one element over: two equal pieces, not a full one and a sliver
        assert_eq!(piece_len((32 << 20) + 1, 32 << 20, 8), (16 << 20) + 8);
        for count in [1u64, 7, 8, 9, 1000, 4097, 1 << 20, (3 << 20) + 5] {
            for max in [8u64, 16, 64, 1000, 4096, 3 << 20] {
                let p = piece_len(count, max, 8);
                let mut cap = (max / 8 * 8).max(8);
                if count > cap {
                    // a call that must be cut: against a power of two
                    cap = 1 << (63 - cap.leading_zeros());
                }
                assert!(p % 8 == 0 && p >= 8 && p <= cap, "{count} {max} {p}");
                // the fewest pieces
                assert_eq!(
                    count.div_ceil(p),
                    count.div_ceil(cap).max(1),
                    "{count} {max}"
                );
            }
        }
        // world 4's copy-in capacity with 64 MiB halves (42.7 MiB of bf16): 1 GiB in 32
        // MiB pieces, a call under the capacity in one piece
        let cap4 = max_count(Algo::TwoShot, DType::Bf16, 64 << 20, 4);
        assert_eq!(piece_len(512 << 20, cap4, 8), 16 << 20);
        assert_eq!(piece_len(20 << 20, cap4, 8), 20 << 20);
        // a max under one chunk still moves whole chunks
        assert_eq!(piece_len(20, 3, 8), 8);
    }

    #[test]
    fn zero_copy_push_pieces_fit_their_receive_areas() {
        for half in [1u64 << 20, 64 << 20, (10 << 20) + 48] {
            for d in [DType::Bf16, DType::F32] {
                for w in 1..=MAX_RANKS {
                    let n = zero_copy_push_max_count(d, half, w);
                    // about twice the copy-in two-shot's piece
                    assert!(n >= 2 * max_count(Algo::TwoShot, d, half, w));
                    // the receive slices of one piece lie inside the half
                    let c = chunks(d, n).unwrap();
                    let need = areas::zero_copy_push_chunks(c, w).unwrap() * CHUNK_BYTES;
                    assert!(need <= half, "{half} {d:?} {w}");
                }
            }
        }
        // a 128 MiB call at 2 ranks, 85 MiB at 4, is one piece of the default 64 MiB halves
        assert_eq!(zero_copy_push_max_count(DType::Bf16, 64 << 20, 2), 64 << 20);
        assert_eq!(
            zero_copy_push_max_count(DType::F32, 64 << 20, 4),
            (64 << 20) / 16 / 3 * 4 * 4
        );
    }

    #[test]
    fn plan_scales_with_size_and_caps_at_co_residency() {
        let p = plan(Algo::OneShot, DType::Bf16, 1, &H100, None).unwrap();
        assert_eq!(
            p,
            LaunchPlan {
                blocks: 1,
                threads: ONE_SHOT_THREADS
            }
        );
        // one-shot: 256 chunks (4 KiB) per block while under the cap: 4 * 1024 * 3 bf16 -> 6
        assert_eq!(
            plan(Algo::OneShot, DType::Bf16, 4 * 1024 * 3, &H100, None).unwrap(),
            LaunchPlan {
                blocks: 6,
                threads: ONE_SHOT_THREADS
            }
        );
        // 512 KiB: 128 blocks of 256 (the cap); 512 KiB + 16: blocks of 512 threads
        assert_eq!(
            plan(Algo::OneShot, DType::Bf16, 256 << 10, &H100, None).unwrap(),
            LaunchPlan {
                blocks: 128,
                threads: ONE_SHOT_THREADS
            }
        );
        assert_eq!(
            plan(Algo::OneShot, DType::Bf16, (256 << 10) + 8, &H100, None).unwrap(),
            LaunchPlan {
                blocks: 65,
                threads: 512
            }
        );
        // two-shot scatters and gathers the whole tensor: one block per 512 chunks
        assert_eq!(
            plan(Algo::TwoShot, DType::Bf16, 4 * 1024 * 16, &H100, None)
                .unwrap()
                .blocks,
            16
        );
        // hcm: 2 x 512 chunks per block
        assert_eq!(
            plan(Algo::Hcm, DType::Bf16, 8 * 1024 * 3, &H100, None)
                .unwrap()
                .blocks,
            3
        );
        // push one-shot: one 8-byte LL line per thread, blocks of LL_THREADS: 1 KiB -> 128
        // lines -> 1 block, 64 KiB -> 8192 lines -> 32 blocks of 256
        assert_eq!(
            plan(Algo::PushOneShot, DType::Bf16, 512, &H100, None)
                .unwrap()
                .blocks,
            1
        );
        assert_eq!(
            plan(Algo::PushOneShot, DType::Bf16, 32 << 10, &H100, None).unwrap(),
            LaunchPlan {
                blocks: 32,
                threads: LL_THREADS
            }
        );
        // huge: capped at MAX_BLOCKS (132 SMs x 2 = 264 co-resident)
        assert_eq!(
            plan(Algo::OneShot, DType::F32, 1 << 34, &H100, None)
                .unwrap()
                .blocks,
            MAX_BLOCKS as u32
        );
        // virtual ranks share the device: 8 ranks on 40 SMs x 1 -> 5 blocks each
        let small = DeviceLimits {
            sm_count: 40,
            blocks_per_sm: 1,
            ranks_on_device: 8,
        };
        assert_eq!(small.co_resident_blocks(), 5);
        assert_eq!(
            plan(Algo::OneShot, DType::F32, 1 << 30, &small, None)
                .unwrap()
                .blocks,
            5
        );
        assert!(plan(Algo::OneShot, DType::F32, 1, &small, Some(6)).is_err());
        assert_eq!(
            plan(Algo::OneShot, DType::F32, 1, &small, Some(5))
                .unwrap()
                .blocks,
            5
        );
        assert!(plan(Algo::OneShot, DType::F32, 1, &H100, Some(0)).is_err());
        assert!(plan(
            Algo::OneShot,
            DType::F32,
            1,
            &H100,
            Some(MAX_BLOCKS as u32 + 1)
        )
        .is_err());
        let none = DeviceLimits {
            sm_count: 4,
            blocks_per_sm: 1,
            ranks_on_device: 8,
        };
        assert!(plan(Algo::OneShot, DType::F32, 1, &none, None).is_err());
    }

    #[test]
    fn zero_copy_form_switches_by_size_and_world() {
        let slot = inc_proto::push::DEFAULT_PUSH_SLOT_BYTES as u64;
        assert_eq!(zero_copy_form(2, 4 << 20, slot), ZeroCopyForm::Pull);
        assert_eq!(zero_copy_form(2, (4 << 20) + 16, slot), ZeroCopyForm::Push);
        assert_eq!(zero_copy_form(4, 2 << 20, slot), ZeroCopyForm::Lines);
        assert_eq!(zero_copy_form(2, 1 << 20, slot), ZeroCopyForm::Lines);
        assert_eq!(zero_copy_form(4, 4 << 20, slot), ZeroCopyForm::Push);
        // a slot too small for lines: the size rule alone
        assert_eq!(zero_copy_form(4, 512 << 10, 32), ZeroCopyForm::Pull);
        assert_eq!(zero_copy_form(4, (512 << 10) + 16, 32), ZeroCopyForm::Push);
        assert_eq!(zero_copy_form(4, 4 << 20, 32), ZeroCopyForm::Push);
        assert_eq!(zero_copy_form(8, 2 << 20, 32), ZeroCopyForm::Pull);
        assert_eq!(zero_copy_form(8, 3 << 20, 32), ZeroCopyForm::Push);
        assert_eq!(zero_copy_form(3, 2 << 20, 32), ZeroCopyForm::Pull);
        assert_eq!(zero_copy_form(3, 3 << 20, 32), ZeroCopyForm::Push);
    }

    #[test]
    fn kernel_args_layout_matches_the_cuda_struct() {
        // offsets of IncArgs fields (kernels/proto.cuh static_asserts them), by hand
        let a = KernelArgs::default();
        let base = &a as *const KernelArgs as usize;
        assert_eq!(&a.input as *const u64 as usize - base, 128);
        assert_eq!(&a.host as *const u64 as usize - base, 176);
        assert_eq!(&a.rank as *const u32 as usize - base, 184);
        assert_eq!(&a.flags as *const u32 as usize - base, 196);
        assert_eq!(&a.hcm as *const [u32; 4] as usize - base, 200);
        assert_eq!(&a.scale as *const f32 as usize - base, 216);
        assert_eq!(&a.sym as *const [u64; MAX_RANKS] as usize - base, 224);
    }
}
