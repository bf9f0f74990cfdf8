//! The sim backend with ranks as threads of this process: every path, and every failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use half::{bf16, f16};
use inc_comm::demo::input_value;
use inc_comm::{
    AlgoChoice, AlgoPath, BackendKind, Comm, CommError, CommOptions, DType, Element, ReduceOp,
    SimTopology,
};
use inc_sim::cpu::reference_allreduce;
use inc_store::{MemStore, Store};

fn opts(timeout_ms: u64) -> CommOptions {
    CommOptions::default()
        .with_backend(BackendKind::Sim)
        .with_timeout(Duration::from_millis(timeout_ms))
        .with_buffer_bytes(Some(64 << 10))
}

/// Runs `f(comm)` on every comm in its own thread; returns the results by rank.
fn on_all<R: Send>(comms: &[Comm], f: impl Fn(&Comm) -> R + Sync) -> Vec<R> {
    std::thread::scope(|s| {
        let hs: Vec<_> = comms.iter().map(|c| s.spawn(|| f(c))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn check_path<T: Element>(comms: &[Comm], path: AlgoPath, op: ReduceOp, n: usize) {
    let world = comms.len();
    let ins: Vec<Vec<T>> = (0..world)
        .map(|r| (0..n).map(|i| T::from_f32(input_value(r, i))).collect())
        .collect();
    let views: Vec<&[u8]> = ins.iter().map(|v| bytemuck::cast_slice(v)).collect();
    let hcm = comms[0].hcm_table().copied();
    let want =
        reference_allreduce(path.algo().unwrap(), T::DTYPE, op, &views, hcm.as_ref()).unwrap();
    let outs = on_all(comms, |c| {
        let mut out = vec![T::from_f32(0.0); n];
        c.allreduce_host_using(path, &ins[c.rank()], &mut out, op)
            .unwrap()
            .wait()
            .unwrap();
        // In place through the selector too (it picks some intra path for small sizes).
        let mut inplace = ins[c.rank()].clone();
        c.allreduce_host(&mut inplace, op).unwrap().wait().unwrap();
        (out, inplace)
    });
    for (rank, (out, inplace)) in outs.iter().enumerate() {
        assert_eq!(
            bytemuck::cast_slice::<T, u8>(out),
            &want[..],
            "{path} {op:?} rank {rank} n {n}"
        );
        // All ranks agree bit for bit on the in-place result.
        assert_eq!(
            bytemuck::cast_slice::<T, u8>(inplace),
            bytemuck::cast_slice::<T, u8>(&outs[0].1),
            "in-place results differ between ranks"
        );
    }
}

#[test]
fn every_path_dtype_op_matches_the_reference() {
    for world in [1usize, 2, 3] {
        let comms = Comm::init_threads(&(0..world).collect::<Vec<_>>(), opts(5000)).unwrap();
        for path in [AlgoPath::OneShot, AlgoPath::TwoShot] {
            for op in ReduceOp::ALL {
                for n in [1usize, 37, 1000] {
                    check_path::<f32>(&comms, path, op, n);
                    check_path::<bf16>(&comms, path, op, n);
                    check_path::<f16>(&comms, path, op, n);
                }
            }
        }
        let s = comms[0].stats();
        assert!(s.one_shot + s.two_shot > 0 && s.errors == 0);
    }
}

#[test]
fn hcm_at_world_8() {
    let o = opts(10_000).with_sim_topology(Some(SimTopology::HybridCubeMesh));
    let comms = Comm::init_threads(&(0..8).collect::<Vec<_>>(), o).unwrap();
    assert!(comms[0].topology().hcm().is_some());
    assert_eq!(comms[0].select_algo(1024, DType::Bf16).path, AlgoPath::Hcm);
    // one-shot needs a fully connected group: refused, not run.
    assert!(comms[0]
        .check_path(AlgoPath::OneShot, 16, DType::F32)
        .is_err());
    for op in [ReduceOp::Sum, ReduceOp::Max] {
        check_path::<bf16>(&comms, AlgoPath::Hcm, op, 300);
        check_path::<f32>(&comms, AlgoPath::Hcm, op, 64);
    }
    assert!(comms[0].stats().hcm >= 4);
}

#[test]
fn forced_hcm_on_fully_connected_8_matches_the_reference() {
    let o = opts(10_000).with_algo(AlgoChoice::Force(AlgoPath::Hcm));
    let comms = Comm::init_threads(&(0..8).collect::<Vec<_>>(), o).unwrap();
    assert_eq!(
        comms[0].topology(),
        &inc_topo::TopologyClass::FullyConnected
    );
    // The canonical DGX-1 table, the same on every rank.
    let table = *comms[0].hcm_table().unwrap();
    assert_eq!(table, inc_sim::program::CUBE_MESH_8);
    assert!(comms.iter().all(|c| c.hcm_table() == Some(&table)));
    let r = comms[0].select_algo(1024, DType::Bf16);
    assert_eq!((r.path, r.fallback), (AlgoPath::Hcm, None));
    for op in ReduceOp::ALL {
        for n in [1usize, 37, 1000] {
            check_path::<f32>(&comms, AlgoPath::Hcm, op, n);
            check_path::<bf16>(&comms, AlgoPath::Hcm, op, n);
            check_path::<f16>(&comms, AlgoPath::Hcm, op, n);
        }
    }
    let s = comms[0].stats();
    assert!(s.hcm >= 2 * 3 * 3 * ReduceOp::ALL.len() as u64 && s.errors == 0);
    assert_eq!(s.one_shot + s.two_shot + s.push_one_shot, 0);
}

#[test]
fn auto_on_fully_connected_8_never_picks_hcm_but_pinning_runs_it() {
    let comms = Comm::init_threads(&(0..8).collect::<Vec<_>>(), opts(10_000)).unwrap();
    for bytes in [0u64, 16, 1024, 32 << 10, 256 << 10, 1 << 20, 64 << 20] {
        for dtype in DType::ALL {
            assert_ne!(comms[0].select_algo(bytes, dtype).path, AlgoPath::Hcm);
        }
    }
    // A pinned call (`allreduce_*_using`) may still run hcm on the canonical table.
    assert!(comms[0].check_path(AlgoPath::Hcm, 1024, DType::F32).is_ok());
    check_path::<bf16>(&comms, AlgoPath::Hcm, ReduceOp::Sum, 300);
    assert!(comms[0].stats().hcm >= 1);
}

#[test]
fn forced_hcm_on_fully_connected_4_falls_back() {
    let o = opts(5000).with_algo(AlgoChoice::Force(AlgoPath::Hcm));
    let comms = Comm::init_threads(&(0..4).collect::<Vec<_>>(), o).unwrap();
    assert!(comms[0].hcm_table().is_none());
    let r = comms[0].select_algo(1024, DType::F32);
    assert_eq!(r.path, AlgoPath::Nccl);
    assert!(matches!(
        r.fallback,
        Some(inc_comm::Fallback::ForcedUnfit {
            wanted: AlgoPath::Hcm,
            ..
        })
    ));
    assert!(comms[0].check_path(AlgoPath::Hcm, 16, DType::F32).is_err());
}

#[test]
fn a_rank_that_never_joins_times_out_everywhere() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let start = Instant::now();
    let errs: Vec<CommError> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|r| {
                let st = store.clone();
                s.spawn(move || Comm::init(st, r, 3, opts(1000)).unwrap_err())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    for e in errs {
        match e {
            CommError::Timeout {
                peer,
                timeout_ms,
                what,
                ..
            } => {
                assert_eq!(peer, Some(2), "{what}");
                assert_eq!(timeout_ms, 1000);
                assert!(what.contains("[2]"), "{what}");
            }
            other => panic!("expected a timeout, got {other}"),
        }
    }
}

#[test]
fn a_rank_that_dies_mid_call_fails_the_others_then_poisons() {
    let mut comms = Comm::init_threads(&[0, 1, 2], opts(1000)).unwrap();
    let dead = comms.pop().unwrap();
    drop(dead);
    let start = Instant::now();
    let errs = on_all(&comms, |c| {
        let mut v = vec![1.0f32; 256];
        c.allreduce_host(&mut v, ReduceOp::Sum).unwrap_err()
    });
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "took {:?}",
        start.elapsed()
    );
    for e in &errs {
        assert!(
            matches!(e, CommError::Timeout { .. } | CommError::PeerAborted { .. }),
            "got {e}"
        );
    }
    // Poisoned: the next call fails at once with the same cause.
    let t = Instant::now();
    let again = on_all(&comms, |c| {
        let mut v = vec![1.0f32; 4];
        c.allreduce_host(&mut v, ReduceOp::Sum).unwrap_err()
    });
    assert!(t.elapsed() < Duration::from_millis(500));
    for (e, first) in again.iter().zip(&errs) {
        match e {
            CommError::Poisoned { cause, .. } => assert_eq!(&**cause, first),
            other => panic!("expected Poisoned, got {other}"),
        }
        assert!(comms[0].poisoned().is_some());
    }
    assert_eq!(comms[0].stats().errors, 2);
}

#[test]
fn different_sizes_are_detected_on_every_rank() {
    let comms = Comm::init_threads(&[0, 1], opts(2000)).unwrap();
    let errs = on_all(&comms, |c| {
        let n = if c.rank() == 0 { 100 } else { 200 };
        let mut v = vec![1.0f32; n];
        c.allreduce_host(&mut v, ReduceOp::Sum).unwrap_err()
    });
    for e in errs {
        assert!(
            matches!(
                e,
                CommError::CallMismatch { .. } | CommError::PeerAborted { .. }
            ),
            "got {e}"
        );
    }
}

#[test]
fn different_ops_are_detected_on_every_rank() {
    let comms = Comm::init_threads(&[0, 1, 2], opts(2000)).unwrap();
    let errs = on_all(&comms, |c| {
        let op = if c.rank() == 1 {
            ReduceOp::Max
        } else {
            ReduceOp::Sum
        };
        let mut v = vec![bf16::from_f32(1.0); 64];
        c.allreduce_host(&mut v, op).unwrap_err()
    });
    let mismatch = errs
        .iter()
        .filter(|e| matches!(e, CommError::CallMismatch { .. }))
        .count();
    assert!(mismatch >= 1, "{errs:?}");
    for e in &errs {
        assert!(e.poisons(), "{e}");
    }
}

#[test]
fn two_comms_in_one_process_and_reinit() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let make = |store: &Arc<dyn Store>| -> Vec<Comm> {
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|r| {
                    let st = store.clone();
                    s.spawn(move || Comm::init(st, r, 2, opts(5000)).unwrap())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let a = make(&store);
    let b = make(&store);
    // Interleave calls on both communicators.
    let pairs: Vec<(&Comm, &Comm)> = a.iter().zip(b.iter()).collect();
    std::thread::scope(|s| {
        for (ca, cb) in pairs {
            s.spawn(move || {
                for k in 0..5 {
                    let mut x = vec![(ca.rank() + k) as f32; 33];
                    ca.allreduce_host(&mut x, ReduceOp::Sum)
                        .unwrap()
                        .wait()
                        .unwrap();
                    assert!(x.iter().all(|v| *v == (1 + 2 * k) as f32));
                    let mut y = vec![ca.rank() as f32; 10];
                    cb.allreduce_host(&mut y, ReduceOp::Max)
                        .unwrap()
                        .wait()
                        .unwrap();
                    assert!(y.iter().all(|v| *v == 1.0));
                }
            });
        }
    });
    drop(a);
    drop(b);
    // Re-init on the same store after dropping.
    let c = make(&store);
    let r = on_all(&c, |c| {
        let mut v = vec![2.0f32; 8];
        c.allreduce_host(&mut v, ReduceOp::Avg)
            .unwrap()
            .wait()
            .unwrap();
        v
    });
    assert!(r.iter().all(|v| v.iter().all(|x| *x == 2.0)));
}

#[test]
fn oversize_and_unsupported_calls_are_clear_errors() {
    let comms = Comm::init_threads(&[0, 1], opts(2000)).unwrap();
    let errs = on_all(&comms, |c| {
        let mut v = vec![0.0f32; (64 << 10) / 4 + 4];
        c.allreduce_host(&mut v, ReduceOp::Sum).unwrap_err()
    });
    for e in errs {
        match e {
            CommError::TooLarge { bytes, max, .. } => {
                assert_eq!(bytes, (64 << 10) + 16);
                assert_eq!(max, 64 << 10);
            }
            other => panic!("{other}"),
        }
    }
    // Not poisoned by a refused call.
    on_all(&comms, |c| {
        let mut v = vec![1.0f32; 4];
        c.allreduce_host(&mut v, ReduceOp::Sum)
            .unwrap()
            .wait()
            .unwrap();
    });
    // The nccl path needs the cuda backend: a clear error, on this path only.
    let e = comms[0]
        .check_path(AlgoPath::Nccl, 16, DType::F32)
        .unwrap_err();
    assert!(e.to_string().contains("cuda"), "{e}");
    let mut out = [0.0f32; 2];
    assert!(comms[0]
        .allreduce_host_using(AlgoPath::Nccl, &[1.0, 2.0], &mut out, ReduceOp::Sum)
        .is_err());
    let e = comms[0]
        .allreduce_host_out(&[1.0f32; 3], &mut out, ReduceOp::Sum)
        .unwrap_err();
    assert!(matches!(e, CommError::InvalidArgument { .. }));
}

#[test]
fn forced_nccl_on_sim_is_unsupported_not_a_hang() {
    let o = opts(2000).with_algo(AlgoChoice::Force(AlgoPath::Nccl));
    let comms = Comm::init_threads(&[0, 1], o).unwrap();
    let errs = on_all(&comms, |c| {
        let mut v = vec![1.0f32; 4];
        c.allreduce_host(&mut v, ReduceOp::Sum).unwrap_err()
    });
    for e in errs {
        assert!(matches!(e, CommError::Unsupported { .. }), "{e}");
    }
}

#[test]
fn disagreeing_options_fail_rendezvous_on_every_rank() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let errs: Vec<CommError> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|r| {
                let st = store.clone();
                let mut o = opts(3000);
                if r == 2 {
                    o.one_shot_max_bytes = Some(1024);
                }
                s.spawn(move || Comm::init(st, r, 3, o).unwrap_err())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let reasons: Vec<String> = errs
        .iter()
        .map(|e| match e {
            CommError::Rendezvous { reason, .. } => reason.clone(),
            other => panic!("{other}"),
        })
        .collect();
    assert!(reasons.iter().all(|r| r == &reasons[0]), "{reasons:?}");
    assert!(reasons[0].contains("rank 2"));
}

#[test]
fn bad_arguments_are_errors() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    assert!(matches!(
        Comm::init(store.clone(), 3, 3, opts(100)),
        Err(CommError::InvalidArgument { .. })
    ));
    assert!(Comm::init(store, 0, 9, opts(100)).is_err());
    assert!(Comm::init_threads(&[], opts(100)).is_err());
    let bad = opts(100).with_blocks(Some(0));
    assert!(matches!(
        Comm::init_threads(&[0], bad),
        Err(CommError::InvalidOption { .. })
    ));
}

#[test]
fn shared_memory_in_one_process() {
    let o = opts(5000).with_sim_shm(true);
    let comms = Comm::init_threads(&[0, 1], o).unwrap();
    check_path::<f32>(&comms, AlgoPath::TwoShot, ReduceOp::Sum, 500);
}

/// Issue 16, hole 3: teardown is collective (every rank closes its mappings, then a
/// barrier, then each frees its own buffer) and bounded: a rank that never shuts down
/// makes the others return a timeout naming it instead of hanging.
#[test]
fn shutdown_is_collective_and_bounded() {
    let comms = Comm::init_threads(&[0, 1, 2], opts(5_000)).unwrap();
    let done: Vec<Result<(), CommError>> = std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .into_iter()
            .map(|c| {
                s.spawn(move || {
                    let mut v = vec![1.0f32; 64];
                    c.allreduce_host(&mut v, ReduceOp::Sum)?.wait()?;
                    c.shutdown()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (rank, r) in done.iter().enumerate() {
        assert!(r.is_ok(), "rank {rank}: {r:?}");
    }

    let mut comms = Comm::init_threads(&[0, 1, 2], opts(500)).unwrap();
    let laggard = comms.pop().unwrap(); // rank 2 never shuts down
    let t = Instant::now();
    let errs: Vec<CommError> = std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .into_iter()
            .map(|c| s.spawn(move || c.shutdown().unwrap_err()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    for e in &errs {
        assert!(matches!(e, CommError::Timeout { peer: Some(2), .. }), "{e}");
    }
    drop(laggard); // within one process: no barrier at drop, returns at once
}

/// Symmetric tensors are device memory: the sim backend says so clearly instead of
/// pretending (and a communicator stays usable after the refusal).
#[test]
fn symmetric_tensors_need_the_cuda_backend() {
    let comms = Comm::init_threads(&[0, 1], opts(10_000)).unwrap();
    let res = on_all(&comms, |c| c.alloc_symmetric::<f32>(64).map(|_| ()));
    for r in res {
        let e = r.unwrap_err();
        assert!(matches!(e, CommError::Unsupported { .. }), "{e}");
        assert!(e.to_string().contains("cuda backend"), "{e}");
    }
    let ok = on_all(&comms, |c| {
        let mut v = vec![1.0f32; 16];
        c.allreduce_host(&mut v, ReduceOp::Sum)
            .and_then(|w| w.wait())
            .map(|_| v)
    });
    for v in ok {
        assert!(v.unwrap().iter().all(|x| *x == 2.0));
    }
}
