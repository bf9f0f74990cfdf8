#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The 32-bit epoch's wrap (PROTOCOL.md "Wrap"), on the CPU backend: a consumer clears
//! every flag slot it took, so no slot keeps an old epoch that reads as newer 2^31 calls
//! later; epoch 0 is never live, so fresh (zero) memory never reads as current. Each test
//! fails without the rule it names. Every form runs: one-shot, the two-shot's barrier form
//! and its lines form (PROTOCOL.md "two-shot of lines": its readers clear every line flag
//! they took), the LL push one-shot.

use std::sync::Arc;
use std::time::Duration;

use inc_proto::lines::{LinesLayout, FLAG_WORD, LINE};
use inc_sim::cpu::{reference_allreduce, CpuConfig, CpuRank, Region, RegionLayout, TwoShotForm};
use inc_sim::push::{next_scrub_epoch, PushLayout};
use inc_sim::{next_epoch, Algo, BarrierKind, DType, PadLayout, ReduceOp, MAX_BLOCKS, MAX_RANKS};

mod common;
use common::{random_input, Rng};

const WORLD: usize = 3;

/// The forms a call can take.
#[derive(Clone, Copy, Debug)]
enum Form {
    One,
    Two(TwoShotForm),
    Push,
}
use Form::{One, Push, Two};
const BARRIER: Form = Two(TwoShotForm::Barrier);
const LINES: Form = Two(TwoShotForm::Lines);

fn comm(blocks: usize) -> (Vec<Arc<Region>>, Vec<CpuRank>) {
    let regions: Vec<Arc<Region>> = (0..WORLD)
        .map(|_| Arc::new(Region::new_local(RegionLayout::with_push(4096, 8192))))
        .collect();
    let cfg = CpuConfig {
        blocks,
        threads_per_block: 2,
        timeout: Duration::from_secs(10),
    };
    let ranks = (0..WORLD)
        .map(|r| CpuRank::new(r, WORLD, regions.clone(), cfg, None).unwrap())
        .collect();
    (regions, ranks)
}

/// One call on every rank (one thread each); checks every rank's result against the
/// reference and returns the errors, if any.
fn call(ranks: &[CpuRank], form: Form, blocks: usize, bytes: usize, rng: &mut Rng) {
    let algo = match form {
        One => Algo::OneShot,
        Two(_) => Algo::TwoShot,
        Push => Algo::PushOneShot,
    };
    let d = DType::Bf16;
    let inputs: Vec<Vec<u8>> = (0..WORLD)
        .map(|_| random_input(rng, d, bytes / d.size(), 4.0))
        .collect();
    let outs: Vec<Result<Vec<u8>, String>> = std::thread::scope(|s| {
        let hs: Vec<_> = ranks
            .iter()
            .enumerate()
            .map(|(r, rank)| {
                let x = inputs[r].clone();
                s.spawn(move || {
                    let mut x = x;
                    let res = match form {
                        Two(f) => {
                            let input = x.clone();
                            rank.allreduce_two_shot(f, d, ReduceOp::Sum, blocks, &input, &mut x)
                        }
                        _ => rank.allreduce_in_place(algo, d, ReduceOp::Sum, blocks, &mut x),
                    };
                    res.map(|()| x).map_err(|e| e.to_string())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let refs: Vec<&[u8]> = inputs.iter().map(|v| v.as_slice()).collect();
    let want = reference_allreduce(algo, d, ReduceOp::Sum, &refs, None).unwrap();
    for (r, o) in outs.into_iter().enumerate() {
        let o = o.unwrap_or_else(|e| panic!("{form:?} {bytes} B, {blocks} blocks, rank {r}: {e}"));
        assert_eq!(o, want, "{form:?} {bytes} B, {blocks} blocks, rank {r}");
    }
}

/// Every flag slot of every rank's pad (both parities, every block, kind and sender) and
/// every line flag of every rank's lines region (both parities, every line) that is set.
fn nonzero_flags(regions: &[Arc<Region>]) -> Vec<String> {
    let mut out = Vec::new();
    for (r, g) in regions.iter().enumerate() {
        let parity = LinesLayout::parity_bytes(g.layout().push_slot_bytes);
        for p in 0..2 {
            let base = g.layout().lines_offset() + LinesLayout::HEADER_BYTES + p * parity;
            for line in 0..parity / LINE {
                let off = base + line * LINE + 8 * FLAG_WORD;
                let v = g
                    .u64_at(off)
                    .unwrap()
                    .load(std::sync::atomic::Ordering::Acquire);
                if v != 0 {
                    out.push(format!("rank {r} lines parity {p} line {line}: {v:#x}"));
                }
            }
        }
        for kind in [BarrierKind::Start, BarrierKind::Mid, BarrierKind::End] {
            for p in 0..2 {
                for b in 0..MAX_BLOCKS {
                    for s in 0..MAX_RANKS {
                        let v = g
                            .u64_at(PadLayout::flag(kind, p, b, s))
                            .unwrap()
                            .load(std::sync::atomic::Ordering::Acquire);
                        if v != 0 {
                            out.push(format!(
                                "rank {r} {kind:?} parity {p} block {b} from {s}: {v:#x}"
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

/// Every rank's every block epoch word set to `e` (all ranks quiescent: as if the calls in
/// between had run).
fn set_epoch(regions: &[Arc<Region>], e: u32) {
    for g in regions {
        for b in 0..MAX_BLOCKS {
            g.u32_at(PadLayout::epoch(b))
                .unwrap()
                .store(e, std::sync::atomic::Ordering::Release);
        }
    }
}

#[test]
fn every_flag_slot_is_zero_after_every_call() {
    let (regions, ranks) = comm(2);
    let mut rng = Rng(0x77ab);
    let forms = [One, BARRIER, LINES, Push];
    for k in 0..48 {
        let form = forms[(rng.next() % 4) as usize];
        let blocks = 1 + (rng.next() % 4) as usize;
        // now and then a larger call (more lines, more chunks), where it fits
        let big = k % 8 == 7 && !matches!(form, One);
        let bytes = 16 * (1 + (rng.next() % 16) as usize) * if big { 7 } else { 1 };
        call(&ranks, form, blocks, bytes, &mut rng);
        let left = nonzero_flags(&regions);
        assert!(left.is_empty(), "after call {k} ({form:?}): {left:?}");
    }
}

/// The failure a long-running job would meet: a call with many blocks, then (here: a jump
/// of the epoch words) 2^31 calls with fewer, then many blocks again. Without the clear,
/// block 3's slots still hold epoch 1's flags, which now read as newer: SEQ_MISMATCH. The
/// lines form: a large call, 2^31 smaller ones, a large one again (its upper lines).
#[test]
fn a_slot_untouched_for_2_31_calls_does_not_read_as_newer() {
    for form in [One, BARRIER] {
        let (regions, ranks) = comm(2);
        let mut rng = Rng(0x31);
        call(&ranks, form, 4, 256, &mut rng);
        set_epoch(&regions, 1 + (1 << 31) + 3);
        call(&ranks, form, 4, 256, &mut rng);
        call(&ranks, form, 1, 64, &mut rng);
    }
    let (regions, ranks) = comm(2);
    let mut rng = Rng(0x32);
    call(&ranks, LINES, 2, 1920, &mut rng);
    set_epoch(&regions, 1 + (1 << 31) + 3);
    call(&ranks, LINES, 2, 1920, &mut rng);
    call(&ranks, LINES, 1, 64, &mut rng);
    // The LL push, whose data lines nobody clears: a large call, 2^31 (or 3 x 2^30) small
    // ones, the large one again: its upper lines still carry the first calls' tags, which
    // are ahead of e modulo 2^32 but far outside the window a real epoch skew can reach
    // (SEQ_WINDOW), so they read as "not yet", not SEQ_MISMATCH. (A line untouched for
    // 2^32 - SEQ_WINDOW calls or more: the next test.)
    for jump in [1u32 << 31, (1u32 << 31) + 3, 3u32 << 30] {
        let (regions, ranks) = comm(2);
        let mut rng = Rng(0x33);
        call(&ranks, Push, 2, 1024, &mut rng);
        call(&ranks, Push, 2, 1024, &mut rng);
        set_epoch(&regions, 2u32.wrapping_add(jump));
        call(&ranks, Push, 2, 64, &mut rng);
        call(&ranks, Push, 2, 1024, &mut rng);
        call(&ranks, Push, 2, 1024, &mut rng);
    }
}

/// Every push-region word of every rank (headers and slots, both parities) that is not 0.
fn nonzero_push_words(regions: &[Arc<Region>]) -> usize {
    regions
        .iter()
        .map(|g| {
            let l = g.layout();
            (0..PushLayout::region_bytes(l.push_slot_bytes) / 8)
                .filter(|i| {
                    g.u64_at(l.push_offset() + 8 * i)
                        .unwrap()
                        .load(std::sync::atomic::Ordering::Acquire)
                        != 0
                })
                .count()
        })
        .sum()
}

/// Rule 5 (PROTOCOL.md "Wrap"): one call in SCRUB_EVERY / 2 zeroes a rotating window of its
/// own push region, so no LL word keeps a tag for a whole epoch period. A large LL call at
/// epoch e, small LL calls, then a one-shot at each of the next 8 scrubbing epochs (the
/// slots here are 2 windows each: 8 scrubs cover both parities of 2 peers; the epoch words
/// jump there, as if the calls in between had run), then the epoch words set as if
/// 2^32 - 2 calls (one period: e comes back) or 2^32 - 8 calls (e - 6: the large call's
/// lines read as 6 calls ahead) had run since e, and the large call again. Without the
/// scrub the push region keeps 1656 nonzero words, and the large call fails (the small LL
/// calls' headers read as newer) or takes its upper lines, untouched since e, as its own
/// (a wrong result, silently: GPU run 102).
#[test]
fn an_ll_line_untouched_for_an_epoch_period_is_neither_current_nor_newer() {
    for back in [1u32, 7] {
        let (regions, ranks) = comm(2);
        let mut rng = Rng(0x5c0 + u64::from(back));
        set_epoch(&regions, 1000);
        call(&ranks, Push, 2, 1024, &mut rng);
        let e = ranks[0].epoch_words().unwrap()[0];
        for _ in 0..4 {
            call(&ranks, Push, 2, 64, &mut rng);
        }
        let mut at = ranks[0].epoch_words().unwrap()[0];
        for _ in 0..8 {
            at = next_scrub_epoch(at);
            set_epoch(&regions, at - 1);
            call(&ranks, One, 2, 128, &mut rng);
        }
        assert_eq!(
            nonzero_push_words(&regions),
            0,
            "8 scrubbing one-shots zero every push word"
        );
        set_epoch(&regions, e - back);
        call(&ranks, Push, 2, 1024, &mut rng);
    }
}

/// Across the wrap: the epoch after 2^32 - 1 is 2, not 0. Fresh memory holds tag 0, so an
/// LL call at epoch 0 would take a line that no peer wrote yet as current; the call at the
/// wrap is the largest LL call of the run, so its upper lines are fresh; likewise the
/// largest lines-form two-shots follow the wrap.
#[test]
fn calls_cross_the_epoch_wrap() {
    assert_eq!(next_epoch(u32::MAX), 2);
    let (regions, ranks) = comm(2);
    let mut rng = Rng(0x3a9);
    set_epoch(&regions, u32::MAX - 6);
    let plan = [
        (Push, 64),
        (One, 128),
        (LINES, 256),
        (Push, 96),
        (BARRIER, 64),
        (One, 32),
        // the call above runs at epoch u32::MAX, this one at 2 (not 0)
        (Push, 1024),
        (Push, 1024),
        (LINES, 1920),
        (LINES, 1920),
        (BARRIER, 512),
    ];
    for (k, &(form, bytes)) in plan.iter().enumerate() {
        call(&ranks, form, 2, bytes, &mut rng);
        for r in &ranks {
            let words = r.epoch_words().unwrap();
            assert!(
                words.iter().all(|&w| w != 0),
                "call {k}: an epoch word is 0"
            );
        }
    }
    let last = ranks[0].epoch_words().unwrap()[0];
    assert_eq!(
        last, 6,
        "6 calls from u32::MAX - 6 reach u32::MAX; the next 5 are 2..=6"
    );
    assert!(nonzero_flags(&regions).is_empty());
}
