//! GPU tests of the cuda backend (need an NVIDIA GPU, its driver and libnvrtc; NCCL tests
//! also libnccl). All `#[ignore]`; without a GPU they print `SKIP (no GPU)` and return
//! (fail with `INC_REQUIRE_GPU=1`). Run with
//! `cargo test -p inc-comm --release --test cuda_gpu -- --ignored --test-threads=1 --nocapture`.
//!
//! Virtual ranks: W communicators of this process share GPU 0
//! (`CommOptions::allow_shared_device`), each with its own stream and symmetric buffer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::{CudaSlice, CudaStream, DeviceRepr};
use half::{bf16, f16};
use inc_comm::demo::input_value;
use inc_comm::{
    AlgoChoice, AlgoPath, BackendKind, Comm, CommError, CommOptions, DType, Element, ReduceOp,
};
use inc_sim::cpu::reference_allreduce;

fn gpu() -> bool {
    if inc_comm::cuda_available() {
        return true;
    }
    if std::env::var("INC_REQUIRE_GPU").is_ok_and(|v| v == "1") {
        panic!("INC_REQUIRE_GPU=1 but no GPU");
    }
    eprintln!("SKIP (no GPU): these tests need an NVIDIA GPU; this is not a pass.");
    false
}

fn opts(timeout_ms: u64) -> CommOptions {
    // The timeout also bounds the rendezvous, where a peer may still be compiling the
    // kernels on a cold cache: never below 60 s there; the failure test sets its own.
    CommOptions::default()
        .with_backend(BackendKind::Cuda)
        .with_timeout(Duration::from_millis(timeout_ms))
        .with_buffer_bytes(Some(2 << 20))
        .with_allow_shared_device(true)
}

fn on_all<R: Send>(comms: &[Comm], f: impl Fn(&Comm) -> R + Sync) -> Vec<R> {
    std::thread::scope(|s| {
        let hs: Vec<_> = comms.iter().map(|c| s.spawn(|| f(c))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn inputs<T: Element>(world: usize, n: usize) -> Vec<Vec<T>> {
    (0..world)
        .map(|r| (0..n).map(|i| T::from_f32(input_value(r, i))).collect())
        .collect()
}

fn stream(c: &Comm) -> Arc<CudaStream> {
    c.stream().unwrap().clone()
}

/// Every rank reduces out of place on `path` and in place through the selector; each
/// result must equal the CPU reference bit for bit (same fold order).
fn check<T: Element + DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    comms: &[Comm],
    path: AlgoPath,
    op: ReduceOp,
    n: usize,
) -> Result<(), String> {
    let world = comms.len();
    let ins = inputs::<T>(world, n);
    let views: Vec<&[u8]> = ins.iter().map(|v| bytemuck::cast_slice(v)).collect();
    let want = reference_allreduce(path.algo().unwrap(), T::DTYPE, op, &views, None).unwrap();
    let outs = on_all(comms, |c| -> Result<(Vec<T>, Vec<T>), CommError> {
        let s = stream(c);
        let input: CudaSlice<T> = s.clone_htod(&ins[c.rank()]).unwrap();
        let mut out: CudaSlice<T> = s.alloc_zeros(n).unwrap();
        c.allreduce_using(path, Some(&input), &mut out, op, &s)?
            .wait()?;
        let mut inplace: CudaSlice<T> = s.clone_htod(&ins[c.rank()]).unwrap();
        c.allreduce(&mut inplace, op, &s)?.wait()?;
        Ok((s.clone_dtoh(&out).unwrap(), s.clone_dtoh(&inplace).unwrap()))
    });
    let outs: Vec<(Vec<T>, Vec<T>)> = outs
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    for (rank, (out, inplace)) in outs.iter().enumerate() {
        if bytemuck::cast_slice::<T, u8>(out) != &want[..] {
            return Err(format!(
                "{path} {} {op:?} W={world} n={n}: rank {rank} differs from the reference",
                T::DTYPE.name()
            ));
        }
        if bytemuck::cast_slice::<T, u8>(inplace) != bytemuck::cast_slice::<T, u8>(&outs[0].1) {
            return Err(format!("in-place results differ between rank 0 and {rank}"));
        }
    }
    Ok(())
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_virtual_ranks_every_path_dtype_op() {
    if !gpu() {
        return;
    }
    let t = Instant::now();
    let mut cases = 0;
    for world in [2usize, 3, 4, 8] {
        let comms = Comm::init_threads(&vec![0; world], opts(60_000)).unwrap();
        assert_eq!(comms[0].ranks_on_device(), world);
        assert_eq!(comms[0].backend(), BackendKind::Cuda);
        for path in [AlgoPath::OneShot, AlgoPath::TwoShot, AlgoPath::PushOneShot] {
            for op in ReduceOp::ALL {
                for n_bytes in [4088usize, 96 << 10] {
                    for d in DType::ALL {
                        let n = n_bytes / d.size();
                        let r = match d {
                            DType::F32 => check::<f32>(&comms, path, op, n),
                            DType::F16 => check::<f16>(&comms, path, op, n),
                            DType::Bf16 => check::<bf16>(&comms, path, op, n),
                        };
                        r.unwrap();
                        cases += 1;
                    }
                }
            }
        }
        let st = comms[0].stats();
        assert!(
            st.one_shot > 0 && st.two_shot > 0 && st.push_one_shot > 0,
            "{st:?}"
        );
    }
    println!("cuda virtual ranks: {cases} cases (W=2,3,4,8 x one/two/push-one-shot x 3 dtypes x 4 ops x 2 sizes, out-of-place + in-place) bit-identical to the reference in {:?}", t.elapsed());
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_host_staging_and_validation() {
    if !gpu() {
        return;
    }
    let comms = Comm::init_threads(&[0, 0], opts(60_000)).unwrap();
    let res = on_all(&comms, |c| {
        let mut v: Vec<f32> = (0..1000).map(|i| (i + c.rank()) as f32).collect();
        c.allreduce_host(&mut v, ReduceOp::Sum)
            .unwrap()
            .wait()
            .unwrap();
        v
    });
    for v in &res {
        for (i, x) in v.iter().enumerate() {
            assert_eq!(*x, (2 * i + 1) as f32);
        }
    }
    // Length mismatch and a too-large call are errors, not hangs (nothing is launched).
    let c = &comms[0];
    let s = stream(c);
    let a: CudaSlice<f32> = s.alloc_zeros(10).unwrap();
    let mut b: CudaSlice<f32> = s.alloc_zeros(11).unwrap();
    let e = c.allreduce_out(&a, &mut b, ReduceOp::Sum, &s).unwrap_err();
    assert!(matches!(e, CommError::InvalidArgument { .. }), "{e}");
    let mut big: CudaSlice<f32> = s.alloc_zeros(4 << 20).unwrap();
    let e = c
        .allreduce_using(AlgoPath::OneShot, None, &mut big, ReduceOp::Sum, &s)
        .unwrap_err();
    assert!(matches!(e, CommError::TooLarge { .. }), "{e}");
    let e = c.check_path(AlgoPath::Nccl, 16, DType::F32).unwrap_err();
    assert!(
        e.to_string().contains("GPU per rank") || matches!(e, CommError::Nccl { .. }),
        "{e}"
    );
    println!("host staging + validation OK");
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_rank_that_never_calls_times_out_the_others() {
    if !gpu() {
        return;
    }
    let comms = Comm::init_threads(&[0, 0, 0], opts(500)).unwrap();
    let t = Instant::now();
    let errs = on_all(&comms[..2], |c| {
        let s = stream(c);
        let mut x: CudaSlice<f32> = s.clone_htod(&[1.0f32; 4096]).unwrap();
        c.allreduce_using(AlgoPath::OneShot, None, &mut x, ReduceOp::Sum, &s)
            .unwrap()
            .wait()
            .unwrap_err()
    });
    let dt = t.elapsed();
    assert!(dt < Duration::from_secs(10), "took {dt:?}");
    for e in &errs {
        assert!(
            matches!(e, CommError::Timeout { .. } | CommError::PeerAborted { .. }),
            "{e}"
        );
    }
    assert!(
        errs.iter()
            .any(|e| matches!(e, CommError::Timeout { peer: Some(2), .. })),
        "{errs:?}"
    );
    // Poisoned: later calls fail fast.
    let s = stream(&comms[0]);
    let mut x: CudaSlice<f32> = s.clone_htod(&[1.0f32; 16]).unwrap();
    let e = comms[0].allreduce(&mut x, ReduceOp::Sum, &s).unwrap_err();
    assert!(matches!(e, CommError::Poisoned { .. }), "{e}");
    println!("timeout: {} / {} after {dt:?}", errs[0], errs[1]);
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_graph_capture_of_allreduce() {
    if !gpu() {
        return;
    }
    use cudarc::driver::sys::CUstreamCaptureMode;
    let comms = Comm::init_threads(&[0, 0], opts(60_000)).unwrap();
    let n = 2048usize;
    let res = on_all(&comms, |c| {
        let ctx = c.cuda_context().unwrap().clone();
        // SAFETY: (test) all work below is ordered on one stream with explicit syncs.
        unsafe { ctx.disable_event_tracking() };
        let s = ctx.new_stream().unwrap();
        let mut x: CudaSlice<f32> = s.clone_htod(&vec![1.0f32; n]).unwrap();
        s.synchronize().unwrap();
        s.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .unwrap();
        for _ in 0..5 {
            let w = c.allreduce(&mut x, ReduceOp::Sum, &s).unwrap();
            assert!(w.event().is_none());
            w.wait().unwrap();
        }
        let g = s
            .end_capture(cudarc::driver::sys::CUgraphInstantiate_flags(0))
            .unwrap()
            .unwrap();
        g.launch().unwrap();
        s.synchronize().unwrap();
        c.check().unwrap();
        s.clone_dtoh(&x).unwrap()
    });
    for v in res {
        assert!(v.iter().all(|x| *x == 32.0), "{}", v[0]); // 1 * 2^5
    }
    println!("graph: 5 captured calls x 2 ranks replayed OK");
}

#[test]
#[ignore = "needs a GPU and libnccl"]
fn gpu_nccl_world_1() {
    if !gpu() {
        return;
    }
    if let Err(e) = inc_comm::nccl::probe() {
        if std::env::var("INC_REQUIRE_NCCL").is_ok_and(|v| v == "1") {
            panic!("INC_REQUIRE_NCCL=1: {e}");
        }
        eprintln!("SKIP (no libnccl): {e}");
        return;
    }
    let o = opts(60_000).with_algo(AlgoChoice::Force(AlgoPath::Nccl));
    let comms = Comm::init_threads(&[0], o).unwrap();
    let c = &comms[0];
    let s = stream(c);
    let v: Vec<f32> = (0..5000).map(|i| i as f32 * 0.5).collect();
    let mut x: CudaSlice<f32> = s.clone_htod(&v).unwrap();
    c.allreduce(&mut x, ReduceOp::Sum, &s)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(s.clone_dtoh(&x).unwrap(), v);
    let vb: Vec<bf16> = v.iter().map(|x| bf16::from_f32(*x)).collect();
    let xb: CudaSlice<bf16> = s.clone_htod(&vb).unwrap();
    let mut yb: CudaSlice<bf16> = s.alloc_zeros(vb.len()).unwrap();
    c.allreduce_out(&xb, &mut yb, ReduceOp::Avg, &s)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(s.clone_dtoh(&yb).unwrap(), vb);
    // Larger than every intra-node path: the selector falls back to NCCL (auto choice).
    let auto = Comm::init_threads(&[0], opts(60_000)).unwrap();
    let big = 3usize << 20; // 12 MiB of f32 > the 2 MiB buffer
    let mut y: CudaSlice<f32> = s.alloc_zeros(big).unwrap();
    let sel = auto[0].select_algo((big * 4) as u64, DType::F32);
    assert_eq!(sel.path, AlgoPath::Nccl);
    auto[0]
        .allreduce(&mut y, ReduceOp::Max, &s)
        .unwrap()
        .wait()
        .unwrap();
    let st = auto[0].stats();
    assert_eq!(st.calls(AlgoPath::Nccl), 1, "{st:?}");
    println!(
        "nccl world 1 (version {:?}): f32 sum, bf16 avg, fallback of {} MiB OK",
        inc_comm::nccl::probe(),
        (big * 4) >> 20
    );
}

/// Issue 16, hole 2: a peer's failure recorded by the kernels while the caller dropped the
/// `Work` unread must come back from the next call (before: the next call was enqueued,
/// its kernels saw the abort word and exited early, and the caller got garbage).
#[test]
#[ignore = "needs a GPU"]
fn gpu_failure_of_a_dropped_work_is_returned_by_the_next_call() {
    if !gpu() {
        return;
    }
    // Rank 2 never calls: the first call of ranks 0 and 1 times out on it.
    let comms = Comm::init_threads(&[0, 0, 0], opts(500)).unwrap();
    let res = on_all(&comms[..2], |c| {
        let s = stream(c);
        let mut x: CudaSlice<f32> = s.clone_htod(&[1.0f32; 4096]).unwrap();
        let w = c
            .allreduce_using(AlgoPath::OneShot, None, &mut x, ReduceOp::Sum, &s)
            .unwrap();
        drop(w); // never waited: the failure is only in the host error mirror
        s.synchronize().unwrap(); // the kernels gave up (timeout or peer abort)
        let second = c.allreduce(&mut x, ReduceOp::Sum, &s).map(|w| w.wait());
        let third = c.allreduce(&mut x, ReduceOp::Sum, &s).map(|_| ());
        (second, third, c.poisoned().cloned())
    });
    for (rank, (second, third, poisoned)) in res.into_iter().enumerate() {
        let e = match second {
            Err(e) => e,
            Ok(waited) => panic!(
                "rank {rank}: the call after a recorded failure was enqueued (wait: {waited:?})"
            ),
        };
        assert!(
            matches!(e, CommError::Timeout { .. } | CommError::PeerAborted { .. }),
            "rank {rank}: {e}"
        );
        assert!(poisoned.is_some(), "rank {rank}: not poisoned");
        let e3 = third.unwrap_err();
        assert!(
            matches!(e3, CommError::Poisoned { .. }),
            "rank {rank}: {e3}"
        );
    }
    println!("dropped Work: the failure came back from the next call on both ranks");
}

/// Issue 16, hole 1: two calls of one communicator on two streams, back to back, run in
/// call order. Each rank keeps one of its streams busy (rank 0 the first, rank 1 the
/// second) so that, unordered, rank 0 would run B before A and rank 1 A before B: a call
/// mismatch (or wrong data) before the fix.
#[test]
#[ignore = "needs a GPU"]
fn gpu_calls_on_two_streams_run_in_call_order() {
    if !gpu() {
        return;
    }
    let comms = Comm::init_threads(&[0, 0], opts(20_000)).unwrap();
    let (na, nb) = (1024usize, 3000usize);
    for round in 0..3 {
        let res = on_all(&comms, |c| -> Result<(Vec<f32>, Vec<f32>), CommError> {
            let ctx = c.cuda_context().unwrap().clone();
            let s1 = ctx.new_stream().unwrap();
            let s2 = ctx.new_stream().unwrap();
            let r = (c.rank() + 1) as f32;
            let mut xa: CudaSlice<f32> = s1.clone_htod(&vec![r; na]).unwrap();
            let mut xb: CudaSlice<f32> = s2.clone_htod(&vec![10.0 * r; nb]).unwrap();
            let busy = if c.rank() == 0 { &s1 } else { &s2 };
            let src: CudaSlice<u8> = busy.alloc_zeros(256 << 20).unwrap();
            let mut dst: CudaSlice<u8> = busy.alloc_zeros(256 << 20).unwrap();
            s1.synchronize().unwrap();
            s2.synchronize().unwrap();
            // ~10 ms of copies ahead of this rank's call on its busy stream.
            for _ in 0..24 {
                busy.memcpy_dtod(&src, &mut dst).unwrap();
            }
            let wa = c.allreduce(&mut xa, ReduceOp::Sum, &s1)?;
            let wb = c.allreduce(&mut xb, ReduceOp::Sum, &s2)?;
            let ra = wa.wait();
            let rb = wb.wait();
            ra?;
            rb?;
            Ok((s1.clone_dtoh(&xa).unwrap(), s2.clone_dtoh(&xb).unwrap()))
        });
        for (rank, r) in res.into_iter().enumerate() {
            let (a, b) = r.unwrap_or_else(|e| panic!("round {round} rank {rank}: {e}"));
            assert!(
                a.iter().all(|x| *x == 3.0),
                "round {round} rank {rank}: A {}",
                a[0]
            );
            assert!(
                b.iter().all(|x| *x == 30.0),
                "round {round} rank {rank}: B {}",
                b[0]
            );
        }
    }
    println!("two streams: 3 rounds of A (stream 1) then B (stream 2) ran in call order");
}

/// Issue 16, hole 5: host calls on the cuda backend reuse the communicator's staging
/// buffers; calls of growing and shrinking sizes, in place and out of place, stay right,
/// and the returned Work is complete (host calls block).
#[test]
#[ignore = "needs a GPU"]
fn gpu_host_calls_reuse_staging_across_sizes() {
    if !gpu() {
        return;
    }
    let comms = Comm::init_threads(&[0, 0], opts(60_000)).unwrap();
    let res = on_all(&comms, |c| {
        for n in [1000usize, 100, 70_000, 1000, 3] {
            let v: Vec<f32> = (0..n).map(|i| (i % 97 + c.rank()) as f32).collect();
            let mut inplace = v.clone();
            let w = c.allreduce_host(&mut inplace, ReduceOp::Sum).unwrap();
            assert!(w.is_completed());
            w.wait().unwrap();
            let mut out = vec![0.0f32; n];
            c.allreduce_host_out(&v, &mut out, ReduceOp::Max)
                .unwrap()
                .wait()
                .unwrap();
            for i in 0..n {
                assert_eq!(inplace[i], (2 * (i % 97) + 1) as f32, "n {n} i {i}");
                assert_eq!(out[i], (i % 97 + 1) as f32, "n {n} i {i}");
            }
        }
    });
    assert_eq!(res.len(), 2);
    println!("host staging reused across sizes OK");
}

/// Issue 16, hole 6: the default build of inc-comm (and so `inc topo`) reads NVML on a
/// GPU machine (before, `nvml` was not a default feature and `inc topo` said "this build
/// has no NVML support").
#[test]
#[ignore = "needs a GPU"]
fn gpu_default_build_reads_nvml() {
    if !gpu() {
        return;
    }
    #[cfg(not(feature = "nvml"))]
    panic!("this build of inc-comm has no NVML (the default build must have it)");
    #[cfg(feature = "nvml")]
    {
        let t = inc_topo::from_nvml().unwrap();
        assert!(!t.gpus.is_empty());
        println!("NVML: {} GPU(s), class {}", t.gpus.len(), t.class.name());
    }
}

/// Issue 16, hole 3: the collective teardown on the cuda backend: every rank closes its
/// mappings, meets the others, frees; a rank that never shuts down makes the others
/// return a timeout naming it, without hanging.
#[test]
#[ignore = "needs a GPU"]
fn gpu_shutdown_is_collective_and_bounded() {
    if !gpu() {
        return;
    }
    let comms = Comm::init_threads(&[0, 0], opts(60_000)).unwrap();
    let res: Vec<Result<(), CommError>> = std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .into_iter()
            .map(|c| {
                s.spawn(move || {
                    let s = stream(&c);
                    let mut x: CudaSlice<f32> = s.clone_htod(&[1.0f32; 4096]).unwrap();
                    c.allreduce(&mut x, ReduceOp::Sum, &s)?.wait()?;
                    c.shutdown()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &res {
        assert!(r.is_ok(), "{r:?}");
    }
    let mut comms = Comm::init_threads(&[0, 0, 0], opts(10_000)).unwrap();
    let laggard = comms.pop().unwrap();
    let short = Duration::from_secs(10);
    let t = Instant::now();
    let errs: Vec<CommError> = std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .into_iter()
            .map(|c| s.spawn(move || c.shutdown().unwrap_err()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        t.elapsed() < short + Duration::from_secs(30),
        "{:?}",
        t.elapsed()
    );
    for e in &errs {
        assert!(matches!(e, CommError::Timeout { peer: Some(2), .. }), "{e}");
    }
    drop(laggard);
    println!(
        "cuda shutdown: collective OK; a missing rank times out in {:?}",
        t.elapsed()
    );
}

/// Issue 16 (surface): device calls take any cudarc `DevicePtr`/`DevicePtrMut`, so views
/// of a slice work as well as whole slices; the elements outside the view are untouched.
#[test]
#[ignore = "needs a GPU"]
fn gpu_views_of_slices_work() {
    if !gpu() {
        return;
    }
    let comms = Comm::init_threads(&[0, 0], opts(60_000)).unwrap();
    let res = on_all(&comms, |c| {
        let s = stream(c);
        let mut x: CudaSlice<f32> = s.clone_htod(&vec![1.0f32; 4096]).unwrap();
        {
            let mut mid = x.slice_mut(1024..3072);
            c.allreduce(&mut mid, ReduceOp::Sum, &s)
                .unwrap()
                .wait()
                .unwrap();
        }
        let src: CudaSlice<f32> = s.clone_htod(&vec![2.0f32; 512]).unwrap();
        let mut out: CudaSlice<f32> = s.alloc_zeros(1024).unwrap();
        {
            let inp = src.slice(0..512);
            let mut o = out.slice_mut(256..768);
            c.allreduce_out(&inp, &mut o, ReduceOp::Sum, &s)
                .unwrap()
                .wait()
                .unwrap();
        }
        (s.clone_dtoh(&x).unwrap(), s.clone_dtoh(&out).unwrap())
    });
    for (x, out) in res {
        for (i, v) in x.iter().enumerate() {
            let want = if (1024..3072).contains(&i) { 2.0 } else { 1.0 };
            assert_eq!(*v, want, "x[{i}]");
        }
        for (i, v) in out.iter().enumerate() {
            let want = if (256..768).contains(&i) { 4.0 } else { 0.0 };
            assert_eq!(*v, want, "out[{i}]");
        }
    }
    println!("views: in place and out of place OK");
}

/// Issue 14: symmetric tensors. The zero-copy two-shot reduces a range of a symmetric
/// tensor in place (forced and through the selector), at sizes above the communicator's
/// own buffer (no pieces: it needs no scratch), bit-identical to the reference on every
/// rank, and leaves the elements outside the range untouched; an unaligned range runs the
/// copy-in path; mismatched allocations are an error on every rank.
#[test]
#[ignore = "needs a GPU"]
fn gpu_symmetric_tensors_zero_copy() {
    if !gpu() {
        return;
    }
    fn run<T: Element + DeviceRepr>(comms: &[Comm], path: Option<AlgoPath>, lo: usize, n: usize) {
        let world = comms.len();
        let ins = inputs::<T>(world, n);
        let views: Vec<&[u8]> = ins.iter().map(|v| bytemuck::cast_slice(v)).collect();
        let want = reference_allreduce(
            inc_sim::Algo::TwoShot,
            T::DTYPE,
            ReduceOp::Sum,
            &views,
            None,
        )
        .unwrap();
        let total = lo + n + 5;
        let sentinel = T::from_f32(-7.0);
        let outs = on_all(comms, |c| {
            let s = stream(c);
            let mut t = c.alloc_symmetric::<T>(total).unwrap();
            let mut host = vec![sentinel; total];
            host[lo..lo + n].copy_from_slice(&ins[c.rank()]);
            s.memcpy_htod(&host, &mut t.view_mut()).unwrap();
            let w = match path {
                Some(p) => c.allreduce_symmetric_using(p, &mut t, lo..lo + n, ReduceOp::Sum, &s),
                None => c.allreduce_symmetric(&mut t, lo..lo + n, ReduceOp::Sum, &s),
            };
            w.unwrap().wait().unwrap();
            s.clone_dtoh(&t.view()).unwrap()
        });
        for (rank, out) in outs.iter().enumerate() {
            let got: &[u8] = bytemuck::cast_slice(&out[lo..lo + n]);
            assert!(
                got == &want[..],
                "{:?} {} W={world} lo={lo} n={n}: rank {rank} differs from the reference",
                path,
                T::DTYPE.name()
            );
            assert!(out[..lo]
                .iter()
                .chain(&out[lo + n..])
                .all(|v| *v == sentinel));
        }
    }
    let t = Instant::now();
    let mut cases = 0;
    for world in [2usize, 3, 4] {
        let comms = Comm::init_threads(&vec![0; world], opts(60_000)).unwrap();
        // the comm's buffer is 2 MiB a half: 3 MiB tensors exceed it
        // pull form up to 2 MiB (3-4 ranks) / 4 MiB (2 ranks), push form (in pieces of
        // the 2 MiB halves) above: both forms run at every world
        for n_bytes in [4usize, 28, 16 << 10, 200_004, 3 << 20, (9 << 20) + 4] {
            for path in [Some(AlgoPath::TwoShot), None] {
                for lo in [0usize, 8, 1] {
                    run::<f32>(&comms, path, lo, n_bytes / 4);
                    run::<bf16>(&comms, path, lo * 2, n_bytes / 2);
                    cases += 2;
                }
            }
        }
        // mismatched allocations: an error on every rank, nothing hangs
        let errs = on_all(&comms, |c| c.alloc_symmetric::<f32>(100 + c.rank()).err());
        assert!(errs.iter().all(|e| e.is_some()), "{errs:?}");
    }
    // Worlds 2, 3, 4 on 8 blocks: a thread owns tens of chunks of each slice, so the push
    // form's ReduceStore runs its several-chunks-at-a-time loop (inc_zcp_reduce_store_w:
    // four chunks at world 2, two at 3 and 4) and then the one-chunk loop for the rest; on
    // the default grid these sizes give a thread at most two chunks of a piece.
    for world in [2usize, 3, 4] {
        let comms = Comm::init_threads(&vec![0; world], opts(60_000).with_blocks(Some(8))).unwrap();
        for n_bytes in [(5 << 20) + 100_004, (9 << 20) + 4] {
            for lo in [0usize, 8] {
                run::<f32>(&comms, Some(AlgoPath::TwoShot), lo, n_bytes / 4);
                run::<bf16>(&comms, Some(AlgoPath::TwoShot), lo * 2, n_bytes / 2);
                cases += 2;
            }
        }
    }
    println!(
        "symmetric tensors: {cases} cases (W=2,3,4, zero-copy two-shot pull and push forms, forced and auto, aligned and unaligned ranges, up to 9 MiB > the 2 MiB buffer halves; W=2,3,4 on 8 blocks) bit-identical; mismatched allocation refused on every rank, in {:?}",
        t.elapsed()
    );
}

/// Issue 14: registration of the caller's own `cuMemAlloc` memory (16-byte aligned, at an
/// offset inside its allocation) as a symmetric tensor: zero-copy allreduce on it,
/// bit-identical to the reference, the caller's memory outside the tensor untouched; a rank
/// that never registers makes the others fail within the timeout, without a hang.
#[test]
#[ignore = "needs a GPU"]
fn gpu_registered_buffers_zero_copy() {
    if !gpu() {
        return;
    }
    let world = 3;
    let comms = Comm::init_threads(&vec![0; world], opts(60_000)).unwrap();
    let n = (3 << 20) / 4 + 7; // above the 2 MiB halves: push form at 3 ranks
    let ins = inputs::<f32>(world, n);
    let views: Vec<&[u8]> = ins.iter().map(|v| bytemuck::cast_slice(v)).collect();
    let want = reference_allreduce(
        inc_sim::Algo::TwoShot,
        DType::F32,
        ReduceOp::Sum,
        &views,
        None,
    )
    .unwrap();
    let outs = on_all(&comms, |c| {
        let s = stream(c);
        c.cuda_context().unwrap().bind_to_thread().unwrap();
        // the caller's own allocation, with 64 bytes before and after the tensor
        let total = 4 * n + 128;
        // SAFETY: test code: live device memory of this context, sizes as allocated.
        let raw = unsafe { inc_cuda::sys::mem_alloc(total) }.unwrap();
        let fill = vec![0xABu8; total];
        // SAFETY: test code: live device memory of this context, sizes as allocated.
        unsafe { inc_cuda::sys::copy_htod(raw, &fill) }.unwrap();
        // SAFETY: test code: live device memory of this context, sizes as allocated.
        unsafe { inc_cuda::sys::copy_htod(raw + 64, bytemuck::cast_slice(&ins[c.rank()])) }
            .unwrap();
        // SAFETY: test code: live device memory of this context, sizes as allocated.
        let mut t = unsafe { c.register_symmetric::<f32>(raw + 64, n) }.unwrap();
        c.allreduce_symmetric(&mut t, .., ReduceOp::Sum, &s)
            .unwrap()
            .wait()
            .unwrap();
        let mut back = vec![0u8; total];
        // SAFETY: test code: live device memory of this context, sizes as allocated.
        unsafe { inc_cuda::sys::copy_dtoh(&mut back, raw) }.unwrap();
        (raw, back)
    });
    for (rank, (_, back)) in outs.iter().enumerate() {
        assert!(back[64..64 + 4 * n] == want[..], "rank {rank} differs");
        assert!(
            back[..64].iter().all(|b| *b == 0xAB),
            "rank {rank}: bytes before"
        );
        assert!(
            back[64 + 4 * n..].iter().all(|b| *b == 0xAB),
            "rank {rank}: bytes after"
        );
    }
    drop(comms); // before freeing the registered memory
    for (raw, _) in outs {
        // SAFETY: test code: live device memory of this context, sizes as allocated.
        unsafe { inc_cuda::sys::mem_free(raw) }.unwrap();
    }
    // a rank that never registers: the others fail within the timeout
    let comms =
        Comm::init_threads(&[0, 0], opts(60_000).with_timeout(Duration::from_secs(2))).unwrap();
    let t0 = Instant::now();
    let res = on_all(&comms, |c| {
        if c.rank() == 1 {
            return None;
        }
        let s = stream(c);
        let buf: CudaSlice<f32> = s.alloc_zeros(1024).unwrap();
        let (p, _g) = cudarc::driver::DevicePtr::device_ptr(&buf, &s);
        // SAFETY: test code: live device memory of this context, sizes as allocated.
        Some(unsafe { c.register_symmetric::<f32>(p, 1024) }.map(|_| ()))
    });
    let e = res[0].as_ref().unwrap().as_ref().unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(e.to_string().contains("rank"), "{e}");
    println!(
        "registered buffers: W=3 push-form zero-copy on caller memory bit-identical, surrounding bytes untouched; a rank that never registers: error after {:?}: {e}",
        t0.elapsed()
    );
}

/// Issue 14: a copy-in two-shot larger than the buffer runs in pieces, each piece copying
/// out the previous one beside its scatter (PROTOCOL.md "Deferred gather"). With 2 MiB
/// halves (pieces of 2 MiB at W = 2, 1.5 MiB at 3, 1.33 MiB at 4: PROTOCOL.md "Areas"):
/// 1, 2 and 3 pieces (odd tails), aligned and unaligned outputs,
/// out of place and in place, W = 2, 3, 4 virtual ranks, grids of 4 and 12 blocks (no copy
/// block, one), then a graph of pieced calls replayed twice; every result bit-identical to the reference, and the elements around an
/// unaligned output view untouched.
#[test]
#[ignore = "needs a GPU"]
fn gpu_two_shot_in_pieces() {
    if !gpu() {
        return;
    }
    use cudarc::driver::sys::CUstreamCaptureMode;
    let t = Instant::now();
    let mut cases = 0;
    for world in [2usize, 3, 4] {
        let comms = Comm::init_threads(&vec![0; world], opts(60_000)).unwrap();
        for bytes in [
            (1usize << 20) - 64,
            (2 << 20) + 8,
            (3 << 20) + 40,
            (4 << 20) - 4,
        ] {
            for op in [ReduceOp::Sum, ReduceOp::Max] {
                check::<bf16>(&comms, AlgoPath::TwoShot, op, bytes / 2).unwrap();
                check::<f32>(&comms, AlgoPath::TwoShot, op, bytes / 4).unwrap();
                cases += 2;
            }
            // Unaligned output view (one element in): the pieces keep the misalignment.
            let n = bytes / 2;
            let ins = inputs::<bf16>(world, n);
            let views: Vec<&[u8]> = ins.iter().map(|v| bytemuck::cast_slice(v)).collect();
            let want = reference_allreduce(
                AlgoPath::TwoShot.algo().unwrap(),
                DType::Bf16,
                ReduceOp::Sum,
                &views,
                None,
            )
            .unwrap();
            let outs = on_all(&comms, |c| {
                let s = stream(c);
                let input: CudaSlice<bf16> = s.clone_htod(&ins[c.rank()]).unwrap();
                let mut out: CudaSlice<bf16> =
                    s.clone_htod(&vec![bf16::from_f32(7.0); n + 2]).unwrap();
                {
                    let mut o = out.slice_mut(1..n + 1);
                    c.allreduce_using(AlgoPath::TwoShot, Some(&input), &mut o, ReduceOp::Sum, &s)
                        .unwrap()
                        .wait()
                        .unwrap();
                }
                s.clone_dtoh(&out).unwrap()
            });
            for (rank, out) in outs.iter().enumerate() {
                assert_eq!(
                    out[0],
                    bf16::from_f32(7.0),
                    "W={world} rank {rank} before the view"
                );
                assert_eq!(
                    out[n + 1],
                    bf16::from_f32(7.0),
                    "W={world} rank {rank} after the view"
                );
                assert!(
                    bytemuck::cast_slice::<bf16, u8>(&out[1..n + 1]) == &want[..],
                    "W={world} {bytes} B unaligned: rank {rank} differs from the reference"
                );
            }
            cases += 1;
        }
        assert!(comms[0].stats().two_shot > 0);
    }
    // Forced small grids: 4 blocks (no copy blocks: every block copies out the previous
    // piece itself before its mid flag) and 12 (one copy block).
    for blocks in [4u32, 12] {
        let comms = Comm::init_threads(&[0, 0, 0], opts(60_000).with_blocks(Some(blocks))).unwrap();
        for bytes in [(3usize << 20) + 40, (4 << 20) - 4] {
            check::<bf16>(&comms, AlgoPath::TwoShot, ReduceOp::Sum, bytes / 2).unwrap();
            check::<f32>(&comms, AlgoPath::TwoShot, ReduceOp::Max, bytes / 4).unwrap();
            cases += 2;
        }
    }
    // A graph of three pieced calls in place (2 pieces each), replayed twice.
    let comms = Comm::init_threads(&[0, 0], opts(60_000)).unwrap();
    let n = (4 << 20) / 4 - 3;
    let res = on_all(&comms, |c| {
        let ctx = c.cuda_context().unwrap().clone();
        // SAFETY: (test) all work below is ordered on one stream with explicit syncs.
        unsafe { ctx.disable_event_tracking() };
        let s = ctx.new_stream().unwrap();
        let init: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
        let mut x: CudaSlice<f32> = s.clone_htod(&init).unwrap();
        s.synchronize().unwrap();
        s.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .unwrap();
        for _ in 0..3 {
            c.allreduce_using(AlgoPath::TwoShot, None, &mut x, ReduceOp::Sum, &s)
                .unwrap()
                .wait()
                .unwrap();
        }
        let g = s
            .end_capture(cudarc::driver::sys::CUgraphInstantiate_flags(0))
            .unwrap()
            .unwrap();
        g.launch().unwrap();
        g.launch().unwrap();
        s.synchronize().unwrap();
        c.check().unwrap();
        s.clone_dtoh(&x).unwrap()
    });
    for v in res {
        for (i, x) in v.iter().enumerate() {
            assert_eq!(*x, (i % 7) as f32 * 64.0, "graph x[{i}]"); // 2^6 after 6 calls
        }
    }
    println!(
        "two-shot in pieces: {cases} cases (W=2,3,4; 1-3 pieces; bf16/f32; sum/max; unaligned view; grids of 4 and 12 blocks) + a graph of pieced calls replayed twice, bit-identical, in {:?}",
        t.elapsed()
    );
}
