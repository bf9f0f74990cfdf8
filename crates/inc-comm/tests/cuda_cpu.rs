//! The cuda backend on a machine without a GPU (CI): backend choice and argument
//! validation that need no device. (GPU tests: tests/cuda_gpu.rs, `#[ignore]`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use inc_comm::{AlgoChoice, AlgoPath, BackendKind, Comm, CommError, CommOptions, DType};

fn opts(backend: BackendKind) -> CommOptions {
    CommOptions::default()
        .with_backend(backend)
        .with_timeout(Duration::from_secs(5))
        .with_buffer_bytes(Some(64 << 10))
}

#[test]
fn auto_picks_sim_without_a_gpu_and_cuda_with_one() {
    let comms = Comm::init_threads(&[0, 1], opts(BackendKind::Auto)).unwrap();
    let want = if inc_comm::cuda_available() {
        BackendKind::Cuda
    } else {
        BackendKind::Sim
    };
    assert_eq!(comms[0].backend(), want);
    if want == BackendKind::Sim {
        assert!(comms[0].cuda_context().is_none());
        assert!(comms[0].stream().is_none());
        assert_eq!(inc_comm::cuda_device_count(), 0);
    }
}

#[test]
fn cuda_without_a_gpu_is_the_same_clear_error_on_every_rank() {
    if inc_comm::cuda_available() {
        eprintln!("skip: a GPU is present (this test covers machines without one)");
        return;
    }
    let e = Comm::init_threads(&[0, 1, 2], opts(BackendKind::Cuda)).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("CUDA driver") || s.contains("CUDA device"),
        "{s}"
    );
}

#[test]
fn nccl_path_on_sim_is_an_error_and_probe_never_panics() {
    let comms = Comm::init_threads(&[0], opts(BackendKind::Sim)).unwrap();
    let e = comms[0]
        .check_path(AlgoPath::Nccl, 16, DType::F32)
        .unwrap_err();
    assert!(matches!(e, CommError::Unsupported { .. }), "{e}");
    match inc_comm::nccl::probe() {
        Ok(v) => assert!(v > 0),
        Err(why) => {
            assert!(why.starts_with("libnccl not found"), "{why}");
            assert!(!inc_comm::nccl::available());
        }
    }
    // INC_ALGO=nccl on sim: calls fail with a clear error, nothing hangs.
    let o = opts(BackendKind::Sim).with_algo(AlgoChoice::Force(AlgoPath::Nccl));
    let comms = Comm::init_threads(&[0], o).unwrap();
    let mut v = vec![1.0f32; 8];
    let e = comms[0]
        .allreduce_host(&mut v, inc_comm::ReduceOp::Sum)
        .unwrap_err();
    assert!(e.to_string().contains("cuda backend"), "{e}");
}

#[test]
fn shared_device_needs_the_option_and_the_error_says_how() {
    let e = Comm::init_threads(&[0, 0], opts(BackendKind::Sim)).unwrap_err();
    assert!(e.to_string().contains("INC_ALLOW_SHARED_DEVICE=1"), "{e}");
    let o = opts(BackendKind::Sim).with_allow_shared_device(true);
    let comms = Comm::init_threads(&[0, 0], o).unwrap();
    assert_eq!(comms[0].ranks_on_device(), 1); // sim: no co-residency budget
    std::thread::scope(|s| {
        for c in &comms {
            s.spawn(move || {
                let mut v = vec![1.0f32; 100];
                c.allreduce_host(&mut v, inc_comm::ReduceOp::Sum)
                    .unwrap()
                    .wait()
                    .unwrap();
                assert!(v.iter().all(|x| *x == 2.0));
            });
        }
    });
}
