//! The receive and gather areas of a parity half (PROTOCOL.md "Areas"): one area per
//! *other* rank, in rank order, so a half holds `W - 1` areas where it held `W` (the
//! owner's own area was never used). The one-shot keeps a receive area of the whole input
//! per peer; the copy-in two-shot a receive slice and a gather slice per peer; the
//! zero-copy two-shot's push form only the receive slices.

/// Index of rank `s`'s area among rank `owner`'s areas (`s != owner`): the other ranks in
/// rank order, `owner` skipped.
pub const fn area_index(s: usize, owner: usize) -> usize {
    if s > owner {
        s - 1
    } else {
        s
    }
}

/// Chunks of a slice: `ceil(chunks / world)`.
pub const fn slice_chunks(chunks: u64, world: usize) -> u64 {
    chunks.div_ceil(ranks(world))
}

/// The world as a divisor (at least 1).
const fn ranks(world: usize) -> u64 {
    if world == 0 {
        1
    } else {
        world as u64
    }
}

/// The other ranks as a divisor (at least 1: a world of one keeps one area's room).
const fn others(world: usize) -> u64 {
    if world > 1 {
        (world - 1) as u64
    } else {
        1
    }
}

/// Chunks of a half the one-shot needs: a receive area of `chunks` per other rank.
pub const fn one_shot_chunks(chunks: u64, world: usize) -> Option<u64> {
    chunks.checked_mul(others(world))
}

/// Chunks of a half the copy-in two-shot needs: a receive slice and a gather slice per
/// other rank.
pub const fn two_shot_chunks(chunks: u64, world: usize) -> Option<u64> {
    slice_chunks(chunks, world).checked_mul(2 * others(world))
}

/// Chunks of a half the zero-copy two-shot's push form needs: a receive slice per other
/// rank.
pub const fn zero_copy_push_chunks(chunks: u64, world: usize) -> Option<u64> {
    slice_chunks(chunks, world).checked_mul(others(world))
}

/// Most chunks a one-shot call takes with `half_chunks` chunks a half.
pub const fn one_shot_max_chunks(half_chunks: u64, world: usize) -> u64 {
    half_chunks / others(world)
}

/// Most chunks a copy-in two-shot call (or piece) takes with `half_chunks` chunks a half:
/// `W` slices of at most `half / (2 (W - 1))` chunks.
pub const fn two_shot_max_chunks(half_chunks: u64, world: usize) -> u64 {
    half_chunks / (2 * others(world)) * ranks(world)
}

/// Most chunks a zero-copy push-form call (or piece) takes with `half_chunks` chunks a half.
pub const fn zero_copy_push_max_chunks(half_chunks: u64, world: usize) -> u64 {
    half_chunks / others(world) * ranks(world)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_skip_the_owner_and_capacities_are_exact() {
        assert_eq!(area_index(0, 1), 0);
        assert_eq!(area_index(2, 1), 1);
        assert_eq!(area_index(3, 0), 2);
        for w in 1..=8usize {
            for half in [0u64, 1, 7, 96, 4096, 4097, 1 << 22] {
                for (max, need) in [
                    (
                        one_shot_max_chunks(half, w),
                        one_shot_chunks as fn(u64, usize) -> Option<u64>,
                    ),
                    (two_shot_max_chunks(half, w), two_shot_chunks),
                    (zero_copy_push_max_chunks(half, w), zero_copy_push_chunks),
                ] {
                    // the largest call fits, one chunk more does not (when peers exist)
                    assert!(need(max, w).is_some_and(|n| n <= half), "w {w} half {half}");
                    if w > 1 {
                        assert!(
                            need(max + 1, w).is_some_and(|n| n > half),
                            "w {w} half {half}"
                        );
                    }
                }
            }
        }
        // world 2: a copy-in two-shot takes a whole half (one receive and one gather slice)
        assert_eq!(two_shot_max_chunks(1 << 22, 2), 1 << 22);
        assert_eq!(zero_copy_push_max_chunks(1 << 22, 2), 2 << 22);
        assert_eq!(one_shot_max_chunks(1 << 22, 4), (1 << 22) / 3);
    }
}
