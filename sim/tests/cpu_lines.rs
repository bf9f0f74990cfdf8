#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The two-shot of lines on the CPU backend (PROTOCOL.md "two-shot of lines"): a copy-in
//! two-shot call whose lines fit the lines region runs without barriers, in 128-byte lines
//! of 120 payload bytes and a flag. Results equal the reference and the barrier form bit
//! for bit; the form is really taken (every writer's header word, written only by the
//! lines form, holds this call's flag at every peer); every flag taken is cleared; a
//! mismatched call fails on every rank without waiting for the timeout; lines calls mix
//! with every other algorithm.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use inc_proto::lines::{LinesLayout, FLAG_WORD, LINE};
use inc_sim::cpu::{reference_allreduce, CpuConfig, CpuRank, Region, RegionLayout, TwoShotForm};
use inc_sim::{
    call_sig, flag_word, Algo, DType, PadLayout, ReduceOp, SimError, ERR_CALL_MISMATCH,
    ERR_PEER_ABORT, ERR_SEQ_MISMATCH, ERR_TIMEOUT,
};

mod common;
use common::{random_input, Rng};

/// Push slot of these tests: a lines parity of 64 KiB (up to ~38 KB a call at world 5).
const SLOT: usize = 8192;

/// How one call runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Form {
    One,
    Push,
    /// `Algo::TwoShot` through `allreduce` (the form rule picks).
    Two,
    /// The two-shot in a forced form.
    TwoIn(TwoShotForm),
}

fn comm(
    world: usize,
    half: usize,
    slot: usize,
    timeout: Duration,
) -> (Vec<Arc<Region>>, Vec<CpuRank>) {
    let regions: Vec<Arc<Region>> = (0..world)
        .map(|_| Arc::new(Region::new_local(RegionLayout::with_push(half, slot))))
        .collect();
    let cfg = CpuConfig {
        blocks: 2,
        threads_per_block: 2,
        timeout,
    };
    let ranks = (0..world)
        .map(|r| CpuRank::new(r, world, regions.clone(), cfg, None).unwrap())
        .collect();
    (regions, ranks)
}

fn run_one(
    rank: &CpuRank,
    form: Form,
    d: DType,
    op: ReduceOp,
    blocks: usize,
    input: &[u8],
    in_place: bool,
) -> Result<Vec<u8>, SimError> {
    let mut out = if in_place {
        input.to_vec()
    } else {
        vec![0xa5; input.len()]
    };
    match form {
        Form::One | Form::Push | Form::Two => {
            let algo = match form {
                Form::One => Algo::OneShot,
                Form::Push => Algo::PushOneShot,
                _ => Algo::TwoShot,
            };
            if in_place {
                rank.allreduce_in_place(algo, d, op, blocks, &mut out)?;
            } else {
                rank.allreduce(algo, d, op, blocks, input, &mut out)?;
            }
        }
        Form::TwoIn(f) => rank.allreduce_two_shot(f, d, op, blocks, input, &mut out)?,
    }
    Ok(out)
}

/// One call on every rank (a thread each, joined): every rank's result.
fn call_all(
    ranks: &[CpuRank],
    form: Form,
    d: DType,
    op: ReduceOp,
    blocks: usize,
    inputs: &[Vec<u8>],
) -> Vec<Result<Vec<u8>, SimError>> {
    std::thread::scope(|s| {
        let hs: Vec<_> = ranks
            .iter()
            .zip(inputs)
            .enumerate()
            .map(|(r, (rank, x))| {
                s.spawn(move || run_one(rank, form, d, op, blocks, x, r % 2 == 1))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn reference(d: DType, op: ReduceOp, inputs: &[Vec<u8>]) -> Vec<u8> {
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    reference_allreduce(Algo::TwoShot, d, op, &refs, None).unwrap()
}

/// The header word writer `s` wrote into rank `r`'s lines region for parity `p`.
fn header(reg: &Region, p: usize, s: usize) -> u64 {
    reg.u64_at(reg.layout().lines_offset() + LinesLayout::hdr(p, s))
        .unwrap()
        .load(Ordering::Acquire)
}

/// Every nonzero flag word of every rank's lines region (both parities, every line).
fn nonzero_line_flags(regions: &[Arc<Region>]) -> Vec<String> {
    let mut out = Vec::new();
    for (r, g) in regions.iter().enumerate() {
        let parity = LinesLayout::parity_bytes(g.layout().push_slot_bytes);
        for p in 0..2 {
            let base = g.layout().lines_offset() + LinesLayout::HEADER_BYTES + p * parity;
            for line in 0..parity / LINE {
                let off = base + line * LINE + 8 * FLAG_WORD;
                let v = g.u64_at(off).unwrap().load(Ordering::Acquire);
                if v != 0 {
                    out.push(format!("rank {r} parity {p} line {line}: {v:#x}"));
                }
            }
        }
    }
    out
}

/// Asserts that the last call (on every rank, epoch e) ran as lines: every writer's
/// header word at every peer holds its flag (the barrier form never writes it).
fn assert_lines_taken(regs: &[Arc<Region>], ranks: &[CpuRank], sig: u32, what: &str) {
    let e = ranks[0].epoch_words().unwrap()[0];
    for (r, reg) in regs.iter().enumerate() {
        for s in (0..ranks.len()).filter(|&s| s != r) {
            let h = header(reg, (e % 2) as usize, s);
            assert_eq!(h, flag_word(e, sig), "{what}: header of {s} at rank {r}");
        }
    }
}

fn check_results<'a>(
    res: impl IntoIterator<Item = &'a Result<Vec<u8>, SimError>>,
    want: &[u8],
    what: &str,
) {
    for (r, o) in res.into_iter().enumerate() {
        let o = o
            .as_ref()
            .unwrap_or_else(|e| panic!("{what}, rank {r}: {e}"));
        assert!(
            o == want,
            "{what}, rank {r}: result differs from the reference"
        );
    }
}

#[test]
fn lines_match_the_reference_bit_for_bit_and_clear_every_flag() {
    let mut rng = Rng(0x11e5);
    for world in 2..=5usize {
        let (regs, ranks) = comm(world, 64 << 10, SLOT, Duration::from_secs(20));
        for d in DType::ALL {
            for op in ReduceOp::ALL {
                // one element; exactly 1 or 2 lines (bf16/f16, f32); a line and a bit; odd
                // counts, byte counts that are not multiples of 120 (up to 81 lines)
                for count in [1usize, 60, 61, 333, 2401] {
                    let bytes = count * d.size();
                    assert_eq!(ranks[0].two_shot_form(bytes), TwoShotForm::Lines);
                    let blocks = 1 + rng.below(4) as usize;
                    let inputs: Vec<Vec<u8>> = (0..world)
                        .map(|_| random_input(&mut rng, d, count, 3.0))
                        .collect();
                    let what = format!("world {world} {d} {op} {count} elements {blocks} blocks");
                    let res = call_all(&ranks, Form::Two, d, op, blocks, &inputs);
                    check_results(&res, &reference(d, op, &inputs), &what);
                    let sig = call_sig(Algo::TwoShot, d, op, count as u64);
                    assert_lines_taken(&regs, &ranks, sig, &what);
                    let left = nonzero_line_flags(&regs);
                    assert!(left.is_empty(), "{what}: flags left {left:?}");
                }
            }
        }
    }
}

/// Both forms on the same inputs (signed zeros, a NaN, subnormal-ish and large values):
/// the same bits, the reference's; the barrier form leaves the lines region alone.
#[test]
fn both_forms_give_the_same_bits() {
    let mut rng = Rng(0xb175);
    for world in [2usize, 3, 5] {
        let (regs, ranks) = comm(world, 64 << 10, SLOT, Duration::from_secs(20));
        for d in DType::ALL {
            for op in ReduceOp::ALL {
                let count = 7 + rng.below(900) as usize;
                let mut inputs: Vec<Vec<u8>> = (0..world)
                    .map(|_| random_input(&mut rng, d, count, 3.0))
                    .collect();
                // -0.0 at element 0 of every rank, NaN at element 1 of rank 0
                for (r, x) in inputs.iter_mut().enumerate() {
                    let n = d.size();
                    x[..n].copy_from_slice(&special(d, -0.0));
                    if r == 0 {
                        x[n..2 * n].copy_from_slice(&special(d, f32::NAN));
                    }
                }
                let want = reference(d, op, &inputs);
                let what = format!("world {world} {d} {op} {count}");
                let before: Vec<u64> = (1..world).map(|s| header(&regs[0], 0, s)).collect();
                let before1: Vec<u64> = (1..world).map(|s| header(&regs[0], 1, s)).collect();
                let barrier = TwoShotForm::Barrier;
                let res = call_all(&ranks, Form::TwoIn(barrier), d, op, 2, &inputs);
                check_results(&res, &want, &format!("{what} barrier"));
                let after: Vec<u64> = (1..world).map(|s| header(&regs[0], 0, s)).collect();
                let after1: Vec<u64> = (1..world).map(|s| header(&regs[0], 1, s)).collect();
                assert_eq!((before, before1), (after, after1), "{what}: barrier form");
                let lines = Form::TwoIn(TwoShotForm::Lines);
                let res = call_all(&ranks, lines, d, op, 3, &inputs);
                check_results(&res, &want, &format!("{what} lines"));
                assert_lines_taken(
                    &regs,
                    &ranks,
                    call_sig(Algo::TwoShot, d, op, count as u64),
                    &what,
                );
            }
        }
    }
}

fn special(d: DType, v: f32) -> Vec<u8> {
    match d {
        DType::F32 => v.to_ne_bytes().to_vec(),
        DType::F16 => half::f16::from_f32(v).to_ne_bytes().to_vec(),
        DType::Bf16 => half::bf16::from_f32(v).to_ne_bytes().to_vec(),
    }
}

/// The rule is `use_lines(bytes, world, slot, true)`: a two-shot that does not fit the lines
/// region runs in the barrier form (and does not touch the lines region); forcing the lines
/// form on it is a configuration error; the two-shot's capacity is unchanged.
#[test]
fn the_form_follows_the_rule() {
    let slot = 1024; // a lines parity of 8 KiB: 64 lines at world 2
    let (regs, ranks) = comm(2, 64 << 10, slot, Duration::from_secs(20));
    for bytes in [4usize, 120, 3840, 7680, 7684, 20_000] {
        let lines = inc_proto::lines::use_lines(bytes as u64, 2, slot, true);
        let want = if lines {
            TwoShotForm::Lines
        } else {
            TwoShotForm::Barrier
        };
        assert_eq!(ranks[0].two_shot_form(bytes), want, "{bytes}");
    }
    assert_eq!(ranks[0].two_shot_form(7680), TwoShotForm::Lines);
    assert_eq!(ranks[0].two_shot_form(7684), TwoShotForm::Barrier);
    let mut rng = Rng(5);
    let d = DType::F32;
    let inputs: Vec<Vec<u8>> = (0..2)
        .map(|_| random_input(&mut rng, d, 5000, 8.0))
        .collect();
    let res = call_all(&ranks, Form::Two, d, ReduceOp::Sum, 2, &inputs);
    check_results(&res, &reference(d, ReduceOp::Sum, &inputs), "20000 B");
    assert_eq!(
        header(&regs[0], 1, 1),
        0,
        "a barrier-form call wrote a header"
    );
    let mut out = vec![0u8; 20_000];
    let e = ranks[0].allreduce_two_shot(
        TwoShotForm::Lines,
        d,
        ReduceOp::Sum,
        1,
        &inputs[0],
        &mut out,
    );
    assert!(matches!(e, Err(SimError::Config(_))), "{e:?}");
    let (_, world1) = comm(1, 4096, slot, Duration::from_secs(1));
    assert_eq!(world1[0].two_shot_form(64), TwoShotForm::Barrier);
    // the capacity is the barrier form's (world 2: a receive and a gather slice, a whole
    // half; PROTOCOL.md "Areas")
    assert_eq!(ranks[0].max_bytes(Algo::TwoShot), 64 << 10);
}

/// One rank makes another call (another count, a count with another slice length, another
/// dtype): every rank fails with CALL_MISMATCH or PEER_ABORT, at least one with
/// CALL_MISMATCH, long before the timeout.
#[test]
fn a_mismatched_call_fails_on_every_rank_without_a_timeout() {
    let cases: [(usize, DType, usize, DType); 4] = [
        (48, DType::F32, 40, DType::F32),
        (4800, DType::F32, 480, DType::F32),
        (480, DType::F32, 9600, DType::F32),
        (960, DType::F32, 960, DType::Bf16),
    ];
    for world in 2..=4usize {
        for (k, &(n, d, n1, d1)) in cases.iter().enumerate() {
            let (_regs, ranks) = comm(world, 64 << 10, SLOT, Duration::from_secs(20));
            let label = format!("w{world} case {k}");
            fails_with_call_mismatch(&ranks, &label, |r| {
                if r == world - 1 {
                    (Algo::TwoShot, n1, d1)
                } else {
                    (Algo::TwoShot, n, d)
                }
            });
        }
    }
}

/// A poll judges what it reads by the rules (rank 0 alone, rank 1's words planted):
/// this epoch with another signature in a line -> CALL_MISMATCH; a newer epoch ->
/// SEQ_MISMATCH; the header word of this epoch with another signature while no line comes
/// -> CALL_MISMATCH (the slow path); an older epoch -> "not yet" (TIMEOUT at the deadline).
#[test]
fn a_poll_judges_flags_by_the_rules() {
    let d = DType::F32;
    let n = 64; // one line a rank's slice: rank 0 owns lines 0..4, polls line 0 from rank 1
    let sig = call_sig(Algo::TwoShot, d, ReduceOp::Sum, 16);
    let other = call_sig(Algo::TwoShot, d, ReduceOp::Sum, 17);
    let cases: [(&str, u32, u64, bool, u32); 4] = [
        (
            "line of another call",
            0,
            flag_word(1, other),
            false,
            ERR_CALL_MISMATCH,
        ),
        ("newer line", 0, flag_word(3, sig), false, ERR_SEQ_MISMATCH),
        (
            "header of another call",
            0,
            flag_word(1, other),
            true,
            ERR_CALL_MISMATCH,
        ),
        ("older line", 10, flag_word(9, sig), false, ERR_TIMEOUT),
    ];
    for (what, start, word, in_header, code) in cases {
        let (regs, ranks) = comm(2, 4096, SLOT, Duration::from_millis(600));
        for b in 0..inc_sim::MAX_BLOCKS {
            regs[0]
                .u32_at(PadLayout::epoch(b))
                .unwrap()
                .store(start, Ordering::Release);
        }
        let e = start + 1;
        let p = (e % 2) as usize;
        let sl = LinesLayout::slice_lines(n as u64, 2);
        let off = if in_header {
            LinesLayout::hdr(p, 1)
        } else {
            LinesLayout::recv(p, 0, 1, 0, sl, 2, SLOT) as usize + 8 * FLAG_WORD
        };
        let g = &regs[0];
        g.u64_at(g.layout().lines_offset() + off)
            .unwrap()
            .store(word, Ordering::Release);
        let t0 = Instant::now();
        let mut out = vec![0u8; n];
        let err = ranks[0]
            .allreduce(Algo::TwoShot, d, ReduceOp::Sum, 1, &[0u8; 64], &mut out)
            .unwrap_err();
        let rec = ranks[0].error_record();
        assert_eq!(err.code(), Some(code), "{what}: {err}");
        assert_eq!((rec.code, rec.peer), (code, 1), "{what}: {rec:?}");
        assert_eq!(rec.phase, inc_proto::lines::step::REDUCE_STORE, "{what}");
        if code != ERR_TIMEOUT {
            assert!(
                t0.elapsed() < Duration::from_millis(500),
                "{what}: took {:?}",
                t0.elapsed()
            );
        }
        assert!(ranks[1].is_aborted(), "{what}: the peer's abort word");
    }
}

/// A rank that never calls: the others fail (TIMEOUT or PEER_ABORT) within the timeout, and
/// stay poisoned.
#[test]
fn a_rank_that_never_calls_makes_the_others_fail() {
    let (_regs, ranks) = comm(3, 4096, SLOT, Duration::from_millis(300));
    let t0 = Instant::now();
    let res: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = ranks[..2]
            .iter()
            .map(|r| {
                s.spawn(move || {
                    let x = vec![0u8; 1000];
                    let mut out = vec![0u8; 1000];
                    let first =
                        r.allreduce(Algo::TwoShot, DType::Bf16, ReduceOp::Max, 3, &x, &mut out);
                    let second =
                        r.allreduce(Algo::TwoShot, DType::Bf16, ReduceOp::Max, 3, &x, &mut out);
                    (first, second)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(t0.elapsed() < Duration::from_secs(5));
    common::assert_dead_peer_outcome(&res);
    assert!(ranks[2].is_aborted());
}

/// Lines calls among barrier-form two-shots, LL push and one-shot calls, ranks running
/// ahead of each other (random pauses, no join between calls), in and out of place: every
/// result is the reference's, and afterwards no flag word of any lines region is set.
#[test]
fn lines_mix_with_every_other_algorithm() {
    for world in [3usize, 4] {
        let (regs, ranks) = comm(world, 16 << 10, SLOT, Duration::from_secs(20));
        let mut rng = Rng(0x5eed + world as u64);
        let forms = [
            Form::One,
            Form::Push,
            Form::Two,
            Form::TwoIn(TwoShotForm::Barrier),
            Form::TwoIn(TwoShotForm::Lines),
        ];
        let d = DType::Bf16;
        let calls: Vec<(Form, usize, Vec<Vec<u8>>)> = (0..60)
            .map(|_| {
                let form = forms[rng.below(5) as usize];
                let count = 1 + rng.below(if form == Form::One { 600 } else { 1800 }) as usize;
                let blocks = 1 + rng.below(4) as usize;
                let inputs = (0..world)
                    .map(|_| random_input(&mut rng, d, count, 8.0))
                    .collect();
                (form, blocks, inputs)
            })
            .collect();
        let res: Vec<Vec<Result<Vec<u8>, SimError>>> = std::thread::scope(|s| {
            let hs: Vec<_> = ranks
                .iter()
                .enumerate()
                .map(|(r, rank)| {
                    let calls = &calls;
                    s.spawn(move || {
                        let mut rng = Rng(77 + r as u64);
                        calls
                            .iter()
                            .enumerate()
                            .map(|(i, (form, blocks, inputs))| {
                                std::thread::sleep(Duration::from_micros(rng.below(200)));
                                let in_place = (i + r) % 2 == 0;
                                run_one(
                                    rank,
                                    *form,
                                    d,
                                    ReduceOp::Sum,
                                    *blocks,
                                    &inputs[r],
                                    in_place,
                                )
                            })
                            .collect()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, (form, _, inputs)) in calls.iter().enumerate() {
            let want = reference(d, ReduceOp::Sum, inputs);
            check_results(
                res.iter().map(|rr| &rr[i]),
                &want,
                &format!("world {world} call {i} {form:?}"),
            );
        }
        let left = nonzero_line_flags(&regs);
        assert!(left.is_empty(), "world {world}: {left:?}");
    }
}

/// A rank whose call takes another form (a count past the lines rule: the barrier form) or
/// another algorithm (the LL push) at the same epoch as ranks in the lines form: the lines
/// form's slow path sees that rank's start flag or LL header of this epoch and fails with
/// CALL_MISMATCH, the others stop with it — no timeout.
#[test]
fn another_form_or_algorithm_at_the_same_epoch_is_a_call_mismatch() {
    let d = DType::F32;
    // (bytes and algorithm of the odd rank, bytes of the others in the lines form)
    let cases: [(usize, Algo, usize); 2] = [
        (200_000, Algo::TwoShot, 4800),
        (2400, Algo::PushOneShot, 2400),
    ];
    for world in 2..=4usize {
        for (k, &(n1, a1, n)) in cases.iter().enumerate() {
            let (_regs, ranks) = comm(world, 1 << 20, SLOT, Duration::from_secs(20));
            assert_eq!(ranks[0].two_shot_form(n), TwoShotForm::Lines);
            if a1 == Algo::TwoShot {
                assert_eq!(ranks[0].two_shot_form(n1), TwoShotForm::Barrier);
            }
            let label = format!("w{world} case {k}");
            fails_with_call_mismatch(&ranks, &label, |r| {
                if r == world - 1 {
                    (a1, n1, d)
                } else {
                    (Algo::TwoShot, n, d)
                }
            });
        }
    }
}

/// Every rank makes the call `call(rank)` gives (algorithm, bytes, dtype) on zeros: every
/// rank must fail with CALL_MISMATCH or PEER_ABORT, at least one with CALL_MISMATCH, in
/// under 8 s (the timeout is 20).
fn fails_with_call_mismatch(
    ranks: &[CpuRank],
    label: &str,
    call: impl Fn(usize) -> (Algo, usize, DType) + Sync,
) {
    let t0 = Instant::now();
    let res: Vec<Result<(), SimError>> = std::thread::scope(|s| {
        let hs: Vec<_> = ranks
            .iter()
            .enumerate()
            .map(|(r, rank)| {
                let (a, n, d) = call(r);
                s.spawn(move || {
                    let x = vec![0u8; n];
                    let mut out = vec![0u8; n];
                    rank.allreduce(a, d, ReduceOp::Sum, 2, &x, &mut out)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "{label}: {:?}",
        t0.elapsed()
    );
    let codes: Vec<u32> = res
        .iter()
        .map(|r| r.as_ref().unwrap_err().code().unwrap())
        .collect();
    assert!(codes.contains(&ERR_CALL_MISMATCH), "{label}: {codes:?}");
    assert!(
        codes
            .iter()
            .all(|&c| c == ERR_CALL_MISMATCH || c == ERR_PEER_ABORT),
        "{label}: {codes:?}"
    );
}
