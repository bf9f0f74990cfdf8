#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! CPU backend, zero-copy two-shot on symmetric tensors (`CpuRank::allreduce_symmetric`,
//! PROTOCOL.md "two-shot, zero-copy"): ranks as threads, each rank's tensor in its own
//! region, in place, back-to-back calls where every rank rewrites its own tensor as soon
//! as its call returns, mixed with copy-in calls and with push-form calls
//! (`CpuRank::allreduce_symmetric_form(ZcForm::Push, ..)`, program `inc::two_shot_zcp`);
//! bit-identical to the reference, bytes around the tensor untouched.

use std::sync::Arc;
use std::time::Duration;

use inc_sim::cpu::{reference_allreduce, CpuConfig, CpuRank, Region, RegionLayout};
use inc_sim::{Algo, DType, ReduceOp, SimError, ZcForm, ERR_CALL_MISMATCH, ERR_PEER_ABORT};

mod common;
use common::{random_input, Rng};

const GUARD: u8 = 0xab;
const OFFSET: usize = 32;
const AREA: usize = 8192;

struct Setup {
    ranks: Vec<CpuRank>,
    tensors: Vec<Arc<Region>>,
}

fn setup(world: usize, timeout: Duration) -> Setup {
    let cfg = CpuConfig {
        blocks: 2,
        threads_per_block: 2,
        timeout,
    };
    let regions: Vec<Arc<Region>> = (0..world)
        .map(|_| Arc::new(Region::new_local(RegionLayout::new(4096))))
        .collect();
    let ranks = (0..world)
        .map(|r| CpuRank::new(r, world, regions.clone(), cfg, None).unwrap())
        .collect();
    // The user's symmetric allocations: one region per rank, data area filled with a guard
    // pattern (RegionLayout::with_push(.., 0): no push region needed).
    let tensors: Vec<Arc<Region>> = (0..world)
        .map(|_| {
            let t = Region::new_local(RegionLayout::with_push(AREA / 2, 0));
            let area = t.data_range();
            t.write_bytes(area.start, &vec![GUARD; area.len()]).unwrap();
            Arc::new(t)
        })
        .collect();
    Setup { ranks, tensors }
}

/// One call: (dtype, op, blocks, per-rank inputs); `copy_in` = an ordinary one-shot call
/// (through the comm's own regions) instead of a symmetric one.
struct Call {
    dtype: DType,
    op: ReduceOp,
    blocks: usize,
    inputs: Vec<Vec<u8>>,
    copy_in: bool,
    /// The zero-copy form (symmetric calls).
    form: ZcForm,
}

/// `n` calls; push-form calls stay within `push_max` bytes (the two-shot's receive areas
/// in the comm's regions), copy-in (one-shot) calls within `one_shot_max` (its W - 1 receive
/// areas in the comm's regions).
fn calls(rng: &mut Rng, world: usize, n: usize, push_max: usize, one_shot_max: usize) -> Vec<Call> {
    (0..n)
        .map(|i| {
            let dtype = DType::ALL[rng.below(3) as usize];
            let op = ReduceOp::ALL[rng.below(4) as usize];
            let form = if rng.below(2) == 0 {
                ZcForm::Push
            } else {
                ZcForm::Pull
            };
            // 1..=400 elements: partial tail chunks, slices shorter than the world.
            let copy_in = i % 4 == 3;
            let max = match form {
                _ if copy_in => (one_shot_max / dtype.size()).min(400),
                ZcForm::Push => (push_max / dtype.size()).min(400),
                ZcForm::Pull => 400,
            };
            let count = 1 + rng.below(max as u64) as usize;
            Call {
                form,
                dtype,
                op,
                blocks: 1 + rng.below(4) as usize,
                inputs: (0..world)
                    .map(|_| random_input(rng, dtype, count, 64.0))
                    .collect(),
                copy_in,
            }
        })
        .collect()
}

#[test]
fn symmetric_two_shot_matches_reference_back_to_back() {
    let mut rng = Rng(0x5eed_2a11);
    for world in 1..=5usize {
        let Setup { ranks, tensors } = setup(world, Duration::from_secs(20));
        let push_max = ranks[0].zero_copy_push_max_bytes();
        assert!(push_max >= 2 * ranks[0].max_bytes(Algo::TwoShot));
        assert!(push_max >= 400, "push-form calls too small: {push_max}");
        let one_shot_max = ranks[0].max_bytes(Algo::OneShot);
        let calls = calls(&mut rng, world, 24, push_max, one_shot_max);
        assert!(calls.iter().any(|c| !c.copy_in && c.form == ZcForm::Push));
        assert!(calls.iter().any(|c| !c.copy_in && c.form == ZcForm::Pull));
        let tensors = &tensors;
        let calls = &calls;
        let results: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
            let hs: Vec<_> = ranks
                .iter()
                .enumerate()
                .map(|(r, rank)| {
                    s.spawn(move || {
                        let mut delay = Rng(r as u64 * 977 + 13);
                        let own = &tensors[r];
                        let base = own.data_range().start + OFFSET;
                        calls
                            .iter()
                            .map(|c| {
                                std::thread::sleep(Duration::from_micros(delay.below(200)));
                                let input = &c.inputs[r];
                                if c.copy_in {
                                    let mut out = vec![0u8; input.len()];
                                    rank.allreduce(
                                        Algo::OneShot,
                                        c.dtype,
                                        c.op,
                                        c.blocks,
                                        input,
                                        &mut out,
                                    )
                                    .unwrap();
                                    return out;
                                }
                                // The user writes its next input into its own tensor as
                                // soon as its previous call returned.
                                own.write_bytes(base, input).unwrap();
                                rank.allreduce_symmetric_form(
                                    c.form,
                                    tensors,
                                    OFFSET,
                                    input.len(),
                                    c.dtype,
                                    c.op,
                                    c.blocks,
                                )
                                .unwrap_or_else(|e| panic!("world {world} rank {r}: {e}"));
                                let mut out = vec![0u8; input.len()];
                                own.read_bytes(base, &mut out).unwrap();
                                out
                            })
                            .collect()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, c) in calls.iter().enumerate() {
            let refs: Vec<&[u8]> = c.inputs.iter().map(Vec::as_slice).collect();
            let algo = if c.copy_in {
                Algo::OneShot
            } else {
                Algo::TwoShot
            };
            let want = reference_allreduce(algo, c.dtype, c.op, &refs, None).unwrap();
            for (r, res) in results.iter().enumerate() {
                assert_eq!(
                    res[i], want,
                    "world {world} rank {r} call {i} {} {} {:?}",
                    c.dtype, c.op, c.form
                );
            }
        }
        // Every byte of the data area outside the largest tensor keeps the guard.
        let longest = calls.iter().map(|c| c.inputs[0].len()).max().unwrap_or(0);
        for (r, t) in tensors.iter().enumerate() {
            let area = t.data_range();
            let mut all = vec![0u8; area.len()];
            t.read_bytes(area.start, &mut all).unwrap();
            assert!(all[..OFFSET].iter().all(|&b| b == GUARD), "rank {r} head");
            assert!(
                all[OFFSET + longest..].iter().all(|&b| b == GUARD),
                "rank {r} tail"
            );
        }
    }
}

#[test]
fn symmetric_two_shot_tail_leaves_the_next_bytes_alone() {
    for form in [ZcForm::Pull, ZcForm::Push] {
        tail_leaves_the_next_bytes_alone(form);
    }
}

fn tail_leaves_the_next_bytes_alone(form: ZcForm) {
    // 3 f16 = 6 bytes: one partial chunk whose last in-range word is half covered.
    let Setup { ranks, tensors } = setup(2, Duration::from_secs(20));
    let inputs = [
        random_input(&mut Rng(3), DType::F16, 3, 64.0),
        random_input(&mut Rng(4), DType::F16, 3, 64.0),
    ];
    let tensors = &tensors;
    std::thread::scope(|s| {
        for (r, rank) in ranks.iter().enumerate() {
            let input = &inputs[r];
            s.spawn(move || {
                let base = tensors[r].data_range().start + OFFSET;
                tensors[r].write_bytes(base, input).unwrap();
                rank.allreduce_symmetric_form(
                    form,
                    tensors,
                    OFFSET,
                    6,
                    DType::F16,
                    ReduceOp::Sum,
                    1,
                )
                .unwrap();
            });
        }
    });
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let want = reference_allreduce(Algo::TwoShot, DType::F16, ReduceOp::Sum, &refs, None).unwrap();
    for t in tensors {
        let mut got = [0u8; 16];
        t.read_bytes(t.data_range().start + OFFSET, &mut got)
            .unwrap();
        assert_eq!(&got[..6], &want[..]);
        assert_eq!(&got[6..], &[GUARD; 10]);
    }
}

#[test]
fn symmetric_two_shot_mismatch_fails_on_every_rank() {
    for form in [ZcForm::Pull, ZcForm::Push] {
        mismatch_fails_on_every_rank(form);
    }
}

fn mismatch_fails_on_every_rank(form: ZcForm) {
    let Setup { ranks, tensors } = setup(3, Duration::from_secs(5));
    let tensors = &tensors;
    let res: Vec<Result<(), SimError>> = std::thread::scope(|s| {
        let hs: Vec<_> = ranks
            .iter()
            .enumerate()
            .map(|(r, rank)| {
                s.spawn(move || {
                    let bytes = if r == 0 { 64 } else { 68 };
                    rank.allreduce_symmetric_form(
                        form,
                        tensors,
                        0,
                        bytes,
                        DType::F32,
                        ReduceOp::Sum,
                        2,
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (r, x) in res.iter().enumerate() {
        let code = x.as_ref().unwrap_err().code().unwrap();
        assert!(
            code == ERR_CALL_MISMATCH || code == ERR_PEER_ABORT,
            "{form:?} rank {r}: code {code}"
        );
    }
}

#[test]
fn symmetric_bad_arguments_are_errors() {
    let Setup { ranks, tensors } = setup(2, Duration::from_secs(5));
    let r = &ranks[0];
    let (f, s) = (DType::F32, ReduceOp::Sum);
    assert!(r
        .allreduce_symmetric(&tensors[..1], 0, 64, f, s, 1)
        .is_err());
    assert!(r.allreduce_symmetric(&tensors, 8, 64, f, s, 1).is_err());
    assert!(r.allreduce_symmetric(&tensors, 0, 6, f, s, 1).is_err());
    assert!(r
        .allreduce_symmetric(&tensors, 0, AREA + 16, f, s, 1)
        .is_err());
    assert!(r.allreduce_symmetric(&tensors, 0, 64, f, s, 0).is_err());
    // The push form's receive slices live in the comm's regions: only they count (at
    // world 3, two slices of a third of the call in a 4096-byte half: 6144 bytes).
    let Setup {
        ranks: r3,
        tensors: t3,
    } = setup(3, Duration::from_secs(5));
    let over = r3[0].zero_copy_push_max_bytes() + 16;
    assert!(over <= AREA);
    assert!(r3[0]
        .allreduce_symmetric_form(ZcForm::Push, &t3, 0, over, f, s, 1)
        .is_err());
    // Nothing was started: the comms are not poisoned.
    assert!(!r.is_aborted() && !r3[0].is_aborted());
}
