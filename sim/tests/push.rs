#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The push one-shot: protocol checker (clean over many schedules, weakenings caught) and
//! the CPU data path on real threads (bit-exact vs the reference, faults detected).
//!
//! Long runs: `cargo test -p inc-sim --release --test push -- --ignored`.

use std::sync::Arc;
use std::time::Duration;

use inc_sim::cpu::{reference_allreduce, CpuConfig, CpuRank, Region, RegionLayout};
use inc_sim::push::{check_push, replay_push, PushConfig, PushFault, PushScheduler, PushWeakening};
use inc_sim::{
    check, replay, Algo, DType, Protocol, ReduceOp, SimConfig, SimError, ViolationKind, Weakening,
    ERR_CALL_MISMATCH, ERR_TIMEOUT,
};

fn clean(cfg: &PushConfig, schedules: u64, seed: u64) {
    let r = check_push(cfg, schedules, seed).unwrap();
    if let Some(v) = r.violations.first() {
        panic!("{cfg:?}\n{}", v.render());
    }
}

/// Sizes for `calls` consecutive calls that vary (1..=4 chunks).
fn sizes(calls: usize, salt: usize) -> Vec<usize> {
    (0..calls)
        .map(|i| 4 + 16 * ((i * 7 + salt * 3) % 4) + 4 * ((i + salt) % 3))
        .collect()
}

#[test]
fn push_is_clean_world_2_to_8_up_to_4_calls() {
    for world in 2..=8 {
        for calls in 1..=4 {
            let mut cfg = PushConfig::new(world, sizes(calls, world));
            cfg.blocks = vec![1 + world % 2, 2, 1];
            let n = if world > 5 { 20 } else { 60 };
            clean(&cfg, n, (world * 100 + calls) as u64);
        }
    }
}

#[test]
fn push_is_clean_with_a_slow_rank() {
    for world in [2, 3, 4] {
        for slow in 0..world {
            let mut cfg = PushConfig::new(world, sizes(4, slow));
            cfg.scheduler = PushScheduler::Adversarial { slow_rank: slow };
            clean(&cfg, 10, 7);
        }
    }
}

#[test]
fn push_detects_kill_and_mismatch_faults() {
    for world in [2, 3, 4] {
        for call in 0..3 {
            let mut cfg = PushConfig::new(world, vec![48, 32, 64, 16]);
            cfg.fault = Some(PushFault::Kill {
                rank: world - 1,
                call,
            });
            clean(&cfg, 15, 3);
            for more in [true, false] {
                cfg.fault = Some(PushFault::Mismatch {
                    rank: call % world,
                    call,
                    more,
                });
                clean(&cfg, 15, 5);
            }
            cfg.fault = Some(PushFault::OtherOp {
                rank: (call + 1) % world,
                call,
            });
            clean(&cfg, 15, 6);
        }
        let mut cfg = PushConfig::new(world, vec![32, 32, 32]);
        for delta in [1, 2, 3] {
            cfg.fault = Some(PushFault::EpochSkew { rank: 0, delta });
            clean(&cfg, 10, 9);
        }
    }
}

/// Every surviving rank of a mismatched call ends with CALL_MISMATCH or (when another rank
/// raised the abort first) PEER_ABORT, and at least one with CALL_MISMATCH: checked by the
/// checker's final checks (any other error or a completed call is a violation); here the
/// same runs must also be violation-free for every world.
#[test]
fn push_mismatch_both_ways_on_every_world() {
    for world in 2..=8 {
        let n = if world > 5 { 5 } else { 15 };
        for (i, fault) in [
            PushFault::Mismatch {
                rank: 0,
                call: 1,
                more: true,
            },
            PushFault::Mismatch {
                rank: world - 1,
                call: 1,
                more: false,
            },
            PushFault::OtherOp {
                rank: world / 2,
                call: 0,
            },
        ]
        .into_iter()
        .enumerate()
        {
            let mut cfg = PushConfig::new(world, vec![32, 48, 32]);
            cfg.fault = Some(fault);
            clean(&cfg, n, 40 + i as u64);
        }
    }
}

fn finds(cfg: &PushConfig, schedules: u64) -> Vec<ViolationKind> {
    let r = check_push(cfg, schedules, 1).unwrap();
    eprintln!(
        "{:?} {:?}: {}/{} schedules fail; first: {}",
        cfg.weaken,
        cfg.fault,
        r.failing_schedules,
        r.schedules,
        r.violations
            .first()
            .map_or(String::new(), |v| v.message.clone())
    );
    let mut k: Vec<ViolationKind> = r.violations.iter().map(|v| v.kind).collect();
    k.sort_by_key(|k| k.name());
    k.dedup();
    k
}

#[test]
fn weakened_push_protocols_are_caught() {
    // One buffer: a fast peer's call-(e+1) lines overwrite call-e lines not read yet (the
    // reader sees a newer tag: a spurious seq-mismatch, or the lines are simply gone).
    let mut cfg = PushConfig::new(2, vec![32; 4]);
    cfg.weaken = Some(PushWeakening::OneBuffer);
    let one = finds(&cfg, 300);
    assert!(!one.is_empty(), "one buffer must be caught");
    // 4-byte words landing separately: the new tag can be seen with the old data word.
    cfg.weaken = Some(PushWeakening::SplitWords);
    assert!(finds(&cfg, 300).contains(&ViolationKind::StaleRead));
    // One tag checked per line while the two 8-byte halves land separately.
    cfg.weaken = Some(PushWeakening::OneTagPerLine);
    assert!(finds(&cfg, 300).contains(&ViolationKind::StaleRead));
    // No header check: a peer sending one chunk more, or the same bytes with another op,
    // finishes a call the ranks disagree on.
    cfg.weaken = Some(PushWeakening::NoHdrCheck);
    for fault in [
        PushFault::Mismatch {
            rank: 1,
            call: 1,
            more: true,
        },
        PushFault::OtherOp { rank: 0, call: 2 },
    ] {
        cfg.fault = Some(fault);
        assert!(
            finds(&cfg, 100).contains(&ViolationKind::SeqMismatch),
            "{fault:?} without the header check must be an undetected mismatch"
        );
    }
    // The protocol itself: halves landing separately (always modelled) are fine.
    cfg.weaken = None;
    cfg.fault = None;
    assert!(finds(&cfg, 300).is_empty());
    eprintln!("one buffer: {one:?}");
}

/// Push violations are shrunk like the pull family's: the first of each kind of a
/// weakened protocol (the ones `weakened_push_protocols_are_caught` shows are caught) is
/// replaced by a run no longer than the one the seed found, which replays to the same
/// violation and trace; the seed alone finds and shrinks it again.
#[test]
fn push_violations_are_shrunk_and_replay() {
    let mut shrunk_somewhere = false;
    for w in [PushWeakening::SplitWords, PushWeakening::OneTagPerLine] {
        let mut cfg = PushConfig::new(2, vec![32; 4]);
        cfg.weaken = Some(w);
        // Deterministic in the run budget, not cut by the clock on a loaded machine.
        cfg.shrink_runs = 300;
        cfg.shrink_time = Duration::from_secs(60);
        let r = check_push(&cfg, 300, 1).unwrap();
        let v = r
            .violations
            .iter()
            .find(|v| v.kind == ViolationKind::StaleRead)
            .unwrap_or_else(|| panic!("{w:?}: no stale read"));
        let sh = v
            .shrink
            .as_ref()
            .unwrap_or_else(|| panic!("{w:?}: not shrunk"));
        assert!(v.events <= sh.original_events, "{w:?}");
        assert!(v.schedule.len() <= sh.original_decisions, "{w:?}");
        shrunk_somewhere |= v.events < sh.original_events;
        assert!(v.trace.last().unwrap().contains("!! "), "{w:?}");
        let again = replay_push(&cfg, &v.schedule).unwrap();
        let x = again
            .violations
            .iter()
            .find(|x| x.kind == v.kind)
            .unwrap_or_else(|| panic!("{w:?}: replay lost the stale read"));
        assert_eq!((&x.message, &x.trace), (&v.message, &v.trace), "{w:?}");
        let b = check_push(&cfg, 1, v.seed).unwrap();
        let y = b.violations.iter().find(|y| y.kind == v.kind).unwrap();
        assert_eq!((&y.trace, &y.schedule), (&v.trace, &v.schedule), "{w:?}");
        println!("{w:?}:\n{}", v.render());
    }
    // Through `check`/`replay` (what `inc sim` and `inc sim --replay` call): one buffer
    // instead of two parities, 3 ranks, a longer run (a fast peer overtakes a call).
    let mut c = SimConfig::new(Protocol::Inc, Algo::PushOneShot, 3, 48, 4);
    c.weaken = Some(Weakening::NoRotation);
    c.shrink_time = Duration::from_secs(60);
    let r = check(&c, 300, 1).unwrap();
    assert!(!r.violations.is_empty(), "one buffer must be caught");
    for v in r.violations.iter().filter(|v| v.shrink.is_some()) {
        let sh = v.shrink.as_ref().unwrap();
        assert!(v.events <= sh.original_events, "{}", v.render());
        shrunk_somewhere |= v.events < sh.original_events;
        let again = replay(&c, &v.schedule).unwrap();
        let x = again.violations.iter().find(|x| x.kind == v.kind).unwrap();
        assert_eq!((&x.message, &x.trace), (&v.message, &v.trace));
        println!("one buffer:\n{}", v.render());
    }
    assert!(shrunk_somewhere, "shrinking never removed an event");
}

#[test]
fn push_between_v1_calls_is_clean_and_one_buffer_is_caught() {
    // push, v1, v1, push, push, v1, push: epochs advance on every call; the v1 calls copy
    // into their parity halves and read every peer's, so both buffer-reuse arguments are
    // exercised across algorithm changes.
    let calls = vec![32, 32, 32, 48, 16, 32, 64];
    for world in [2, 3, 4] {
        let mut cfg = PushConfig::new(world, calls.clone());
        cfg.barrier_calls = vec![1, 2, 5];
        clean(&cfg, 40, 21);
        cfg.blocks = vec![1, 3, 2];
        clean(&cfg, 40, 23);
        cfg.fault = Some(PushFault::Kill { rank: 1, call: 4 });
        clean(&cfg, 10, 22);
        cfg.fault = Some(PushFault::Mismatch {
            rank: 0,
            call: 3,
            more: false,
        });
        clean(&cfg, 10, 24);
        cfg.fault = None;
        cfg.weaken = Some(PushWeakening::OneBuffer);
        cfg.barrier_calls = vec![2, 5];
        assert!(
            !finds(&cfg, 100).is_empty(),
            "one buffer must be caught between v1 calls too"
        );
    }
}

#[test]
#[ignore = "long: cargo test -p inc-sim --release --test push -- --ignored --nocapture"]
fn push_is_clean_long() {
    let start = std::time::Instant::now();
    let mut total = 0u64;
    for world in 2..=8 {
        for calls in [1, 4, 7] {
            for salt in 0..3 {
                let mut cfg = PushConfig::new(world, sizes(calls, salt));
                cfg.blocks = vec![1, 3, 2];
                if calls == 7 && salt > 0 {
                    cfg.barrier_calls = vec![1, 3 + salt];
                }
                if salt == 2 {
                    cfg.threads_per_block = 2;
                }
                clean(&cfg, 2500, salt as u64 * 1000 + world as u64);
                total += 2500;
            }
        }
        eprintln!(
            "world {world} done: {total} schedules, {:?}",
            start.elapsed()
        );
    }
    eprintln!(
        "push long: {total} clean schedules in {:?}",
        start.elapsed()
    );
}

#[test]
#[ignore = "long: cargo test -p inc-sim --release --test push -- --ignored --nocapture"]
fn push_faults_long() {
    // Every fault on every world, with v1 calls in between: the checker's final checks
    // require each surviving rank to end with the right error (no deadlock, no silent
    // completion of a call the ranks disagree on).
    let start = std::time::Instant::now();
    let mut total = 0u64;
    for world in 2..=8 {
        let calls = vec![32, 48, 16, 64, 32];
        let faults = [
            PushFault::Kill {
                rank: world - 1,
                call: 1,
            },
            PushFault::Kill { rank: 0, call: 3 },
            PushFault::Mismatch {
                rank: 0,
                call: 1,
                more: true,
            },
            PushFault::Mismatch {
                rank: world - 1,
                call: 3,
                more: false,
            },
            PushFault::OtherOp {
                rank: world / 2,
                call: 4,
            },
            PushFault::EpochSkew { rank: 1, delta: 1 },
            PushFault::EpochSkew { rank: 0, delta: 2 },
        ];
        for (i, fault) in faults.into_iter().enumerate() {
            let mut cfg = PushConfig::new(world, calls.clone());
            cfg.blocks = vec![2, 1, 3];
            cfg.barrier_calls = vec![2];
            cfg.fault = Some(fault);
            clean(&cfg, 500, 7000 + i as u64);
            total += 500;
        }
    }
    eprintln!(
        "push faults long: {total} schedules in {:?}",
        start.elapsed()
    );
}

// ---------------------------------------------------------------- CPU data path

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn input(rng: &mut Rng, dtype: DType, count: usize, zeros: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * dtype.size());
    for i in 0..count {
        let mut v = ((rng.next() % 2001) as f32 - 1000.0) / 64.0;
        if zeros && i % 3 == 0 {
            v = if i % 2 == 0 { -0.0 } else { 0.0 };
        }
        match dtype {
            DType::F32 => out.extend_from_slice(&v.to_ne_bytes()),
            DType::F16 => out.extend_from_slice(&half::f16::from_f32(v).to_ne_bytes()),
            DType::Bf16 => out.extend_from_slice(&half::bf16::from_f32(v).to_ne_bytes()),
        }
    }
    out
}

/// The one-shot reference (rank-order f32 fold): push results are bit-identical to it.
fn reference(dtype: DType, op: ReduceOp, inputs: &[Vec<u8>]) -> Vec<u8> {
    let refs: Vec<&[u8]> = inputs.iter().map(|v| v.as_slice()).collect();
    reference_allreduce(Algo::OneShot, dtype, op, &refs, None).unwrap()
}

fn comm(world: usize, timeout: Duration) -> Vec<CpuRank> {
    let regions: Vec<Arc<Region>> = (0..world)
        // (two-shot needs 2 x C + W chunks of a half: 256 bytes hold a 64-byte call)
        .map(|_| Arc::new(Region::new_local(RegionLayout::with_push(256, 8192))))
        .collect();
    let cfg = CpuConfig {
        blocks: 2,
        threads_per_block: 2,
        timeout,
    };
    (0..world)
        .map(|r| CpuRank::new(r, world, regions.clone(), cfg, None).unwrap())
        .collect()
}

type Call = (DType, ReduceOp, usize, usize, Vec<Vec<u8>>);

fn run(ranks: &[CpuRank], calls: &[Call]) -> Vec<Vec<Result<Vec<u8>, SimError>>> {
    std::thread::scope(|s| {
        let hs: Vec<_> = ranks
            .iter()
            .enumerate()
            .map(|(r, rank)| {
                s.spawn(move || {
                    calls
                        .iter()
                        .map(|(d, op, blocks, _, inputs)| {
                            let mut data = inputs[r].clone();
                            rank.push_allreduce_in_place(*d, *op, *blocks, &mut data)
                                .map(|()| data)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn cpu_push_is_bit_exact_across_many_calls_dtypes_and_sizes() {
    let mut rng = Rng(0x1234_5678);
    for world in [1, 2, 3, 5, 8] {
        let ranks = comm(world, Duration::from_secs(10));
        let mut calls: Vec<Call> = Vec::new();
        for i in 0..40 {
            let d = DType::ALL[i % 3];
            let op = ReduceOp::ALL[(i / 3) % 4];
            let max = 4096 / d.size();
            let count = match i % 5 {
                0 => 1,
                1 => max,
                _ => 1 + (rng.next() as usize % max),
            };
            let blocks = 1 + i % 3;
            let inputs = (0..world)
                .map(|_| input(&mut rng, d, count, i % 4 == 0))
                .collect();
            calls.push((d, op, blocks, count, inputs));
        }
        let out = run(&ranks, &calls);
        for (k, (d, op, _, count, inputs)) in calls.iter().enumerate() {
            let want = reference(*d, *op, inputs);
            for (r, res) in out.iter().enumerate() {
                let got = res[k].as_ref().unwrap();
                assert_eq!(
                    got, &want,
                    "world {world} call {k} rank {r} {d} {op} n={count}"
                );
            }
        }
    }
}

#[test]
fn cpu_push_keeps_negative_zero() {
    // -0.0 + -0.0 = -0.0 and min(-0.0, -0.0) = -0.0, exactly as the one-shot computes them.
    let ranks = comm(2, Duration::from_secs(10));
    let neg = vec![(-0.0f32).to_ne_bytes().to_vec().repeat(5); 2];
    let h = half::bf16::from_f32(-0.0).to_ne_bytes().to_vec().repeat(9);
    let out = run(
        &ranks,
        &[
            (DType::F32, ReduceOp::Sum, 1, 5, neg.clone()),
            (DType::F32, ReduceOp::Min, 2, 5, neg),
            (DType::Bf16, ReduceOp::Avg, 1, 9, vec![h; 2]),
        ],
    );
    for r in out {
        for (k, res) in r.iter().take(2).enumerate() {
            let v = res.as_ref().unwrap();
            assert!(
                v.chunks_exact(4).all(|c| c == (-0.0f32).to_ne_bytes()),
                "{k}"
            );
        }
        let v = r[2].as_ref().unwrap();
        assert!(v
            .chunks_exact(2)
            .all(|c| u16::from_ne_bytes([c[0], c[1]]) == 0x8000));
    }
}

#[test]
fn cpu_push_rejects_bad_input_and_detects_faults() {
    let ranks = comm(2, Duration::from_millis(300));
    let mut big = vec![0u8; 4096 + 4];
    assert!(ranks[0]
        .push_allreduce_in_place(DType::F32, ReduceOp::Sum, 1, &mut big)
        .is_err());
    let mut odd = vec![0u8; 6];
    assert!(ranks[0]
        .push_allreduce_in_place(DType::F32, ReduceOp::Sum, 1, &mut odd)
        .is_err());
    assert!(ranks[0]
        .push_allreduce_in_place(DType::F32, ReduceOp::Sum, 0, &mut [0u8; 16])
        .is_err());
    // Mismatched sizes (rank 1 sends one more chunk): call-mismatch on both ranks.
    let out = std::thread::scope(|s| {
        let h: Vec<_> = ranks
            .iter()
            .enumerate()
            .map(|(r, rank)| {
                s.spawn(move || {
                    let mut d = vec![0u8; if r == 0 { 32 } else { 48 }];
                    rank.push_allreduce_in_place(DType::F32, ReduceOp::Sum, 1, &mut d)
                })
            })
            .collect();
        h.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    for o in &out {
        let code = o.as_ref().unwrap_err().code();
        assert!(
            code == Some(ERR_CALL_MISMATCH) || code == Some(inc_sim::ERR_PEER_ABORT),
            "{o:?}"
        );
    }
    assert!(out
        .iter()
        .any(|o| o.as_ref().unwrap_err().code() == Some(ERR_CALL_MISMATCH)));
    // Same bytes, another dtype (rank 1) or op (second round): only the header line
    // tells; every rank fails with call-mismatch (or the peer's abort).
    for (d1, op1) in [(DType::Bf16, ReduceOp::Sum), (DType::F32, ReduceOp::Max)] {
        let ranks = comm(2, Duration::from_millis(2000));
        let out = std::thread::scope(|s| {
            let h: Vec<_> = ranks
                .iter()
                .enumerate()
                .map(|(r, rank)| {
                    s.spawn(move || {
                        let (d, op) = if r == 0 {
                            (DType::F32, ReduceOp::Sum)
                        } else {
                            (d1, op1)
                        };
                        let mut x = vec![0u8; 64];
                        rank.push_allreduce_in_place(d, op, 2, &mut x)
                    })
                })
                .collect();
            h.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
        });
        let codes: Vec<_> = out.iter().map(|o| o.as_ref().unwrap_err().code()).collect();
        assert!(codes.contains(&Some(ERR_CALL_MISMATCH)), "{codes:?}");
        assert!(codes
            .iter()
            .all(|c| *c == Some(ERR_CALL_MISMATCH) || *c == Some(inc_sim::ERR_PEER_ABORT)));
    }
    // A missing rank: timeout, not a hang.
    let ranks = comm(2, Duration::from_millis(200));
    let mut d = vec![0u8; 64];
    let e = ranks[0]
        .push_allreduce_in_place(DType::Bf16, ReduceOp::Max, 2, &mut d)
        .unwrap_err();
    assert_eq!(e.code(), Some(ERR_TIMEOUT), "{e}");
    // Poisoned afterwards: fails fast.
    assert!(ranks[0]
        .push_allreduce_in_place(DType::Bf16, ReduceOp::Max, 2, &mut d)
        .is_err());
}

#[test]
fn cpu_push_interleaved_with_one_shot_and_two_shot() {
    // Epochs advance on every call of any algorithm; the parity buffers stay correct.
    let mut rng = Rng(0xfeed);
    let world = 3;
    let ranks = comm(world, Duration::from_secs(10));
    let algos = [Algo::PushOneShot, Algo::OneShot, Algo::TwoShot];
    let mut plan = Vec::new();
    for i in 0..60 {
        let algo = algos[(rng.next() % 3) as usize];
        let d = DType::ALL[i % 3];
        let count = 1 + (rng.next() as usize % (64 / d.size()));
        let inputs: Vec<Vec<u8>> = (0..world)
            .map(|_| input(&mut rng, d, count, true))
            .collect();
        plan.push((algo, d, inputs));
    }
    let out: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
        let hs: Vec<_> = ranks
            .iter()
            .enumerate()
            .map(|(r, rank)| {
                let plan = &plan;
                s.spawn(move || {
                    plan.iter()
                        .map(|(algo, d, inputs)| {
                            let mut x = inputs[r].clone();
                            rank.allreduce_in_place(*algo, *d, ReduceOp::Sum, 2, &mut x)
                                .unwrap();
                            x
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (k, (algo, d, inputs)) in plan.iter().enumerate() {
        let refs: Vec<&[u8]> = inputs.iter().map(|v| v.as_slice()).collect();
        let want = reference_allreduce(*algo, *d, ReduceOp::Sum, &refs, None).unwrap();
        for (r, o) in out.iter().enumerate() {
            assert_eq!(o[k], want, "call {k} {algo} {d} rank {r}");
        }
    }
}

/// PCT (the default scheduler) on the LL protocol at the checker's largest size, 4 KB per
/// rank: clean, and the weakenings that need a store to stay pending while many steps pass
/// (data word landing after its tag; a reader checking one tag per line) are still caught.
#[test]
fn pct_at_4k_is_clean_and_catches_weakened_ll() {
    for world in [2, 3] {
        let mut cfg = PushConfig::new(world, vec![4096, 4096]);
        cfg.blocks = vec![2];
        cfg.threads_per_block = 32;
        assert!(matches!(cfg.scheduler, PushScheduler::Pct { .. }));
        clean(&cfg, 10, 40 + world as u64);
        for w in [PushWeakening::SplitWords, PushWeakening::OneTagPerLine] {
            let mut bad = cfg.clone();
            bad.weaken = Some(w);
            let r = check_push(&bad, 24, 7).unwrap();
            assert!(
                r.failing_schedules > 0,
                "{w:?} at 4 KB, world {world}: not caught in 24 PCT schedules"
            );
        }
    }
}
