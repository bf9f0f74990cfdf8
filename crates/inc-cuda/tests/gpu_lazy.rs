#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]
//! GPU tests of lazy kernel compilation and the per-instance disk cache (need an NVIDIA
//! GPU, its driver and libnvrtc). All `#[ignore]`; run with
//! `cargo test -p inc-cuda --release --test gpu_lazy -- --ignored --test-threads=1 --nocapture`
//! or through the bundle of `cargo xtask gpu-test` (it picks up every test binary of
//! inc-cuda). Every test uses its own fresh cache folder, so the timings are cold.
//!
//! Each kernel is checked to be valid by a real 2-rank allreduce (two virtual ranks on one
//! GPU, as in gpu.rs), rank r launching with its own `Kernels` where the test has several.

use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use inc_cuda::cache::{self, Lookup};
use inc_cuda::{
    open_device, Algo, CacheMode, DType, Embedded, Kernels, LoadOptions, Origin, ReduceOp, Warm,
};

#[allow(dead_code)] // rng() is for the other GPU test files
mod common;
use common::gpu;
#[path = "common/pair.rs"]
mod pair;
use pair::allreduce_check;

fn fresh_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("inc-lazy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The NVRTC and disk-cache path (embedded CUBINs off: gpu_embedded.rs tests those).
fn opts(dir: &Path, warm: Warm) -> LoadOptions {
    LoadOptions {
        cache: CacheMode::Dir(dir.to_path_buf()),
        warm,
        embedded: Embedded::Off,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Cold numbers for the target: init, first bf16 sum instance, first allreduce;
/// then the same with the cache warm. Printed for docs/PERFORMANCE.md.
#[test]
#[ignore = "needs a GPU"]
fn gpu_lazy_cold_init_and_first_instance_timing() {
    let Some(ctx) = gpu() else { return };
    let dir = fresh_dir("timing");
    for (label, algo) in [
        ("push-one-shot", Algo::PushOneShot),
        ("one-shot", Algo::OneShot),
        ("two-shot", Algo::TwoShot),
    ] {
        let _ = std::fs::remove_dir_all(&dir);
        let t = Instant::now();
        let k = Kernels::load_opts(&ctx, &opts(&dir, Warm::Off)).unwrap();
        let init = t.elapsed();
        let t = Instant::now();
        k.function(algo, DType::Bf16, ReduceOp::Sum).unwrap();
        let first = t.elapsed();
        assert_eq!(
            k.origin(algo, DType::Bf16, ReduceOp::Sum),
            Some(Origin::Compiled)
        );
        let t = Instant::now();
        allreduce_check([&k, &k], &ctx, algo, DType::Bf16);
        let call = t.elapsed();
        drop(k);
        // warm cache, new Kernels
        let t = Instant::now();
        let k = Kernels::load_opts(&ctx, &opts(&dir, Warm::Off)).unwrap();
        k.function(algo, DType::Bf16, ReduceOp::Sum).unwrap();
        let warm = t.elapsed();
        assert_eq!(
            k.origin(algo, DType::Bf16, ReduceOp::Sum),
            Some(Origin::DiskCache)
        );
        assert!(k.loaded_from_cache());
        println!(
            "cold {label} bf16 sum: init {:.1} ms + compile/load {:.0} ms + first 2-rank allreduce (buffers, mapping, call) {:.0} ms; warm cache init+load {:.2} ms; occupancy {} blocks/SM",
            ms(init),
            ms(first),
            ms(call),
            ms(warm),
            k.occupancy(algo, DType::Bf16, ReduceOp::Sum).unwrap()
        );
    }
    // background warming of the default list, first use while it runs
    let _ = std::fs::remove_dir_all(&dir);
    let t = Instant::now();
    let k = Kernels::load_opts(&ctx, &opts(&dir, Warm::Default)).unwrap();
    let init = t.elapsed();
    let t = Instant::now();
    k.function(Algo::TwoShot, DType::Bf16, ReduceOp::Sum)
        .unwrap();
    let first = t.elapsed();
    k.wait_warm();
    let all = t.elapsed();
    let t = Instant::now();
    for (a, d, o) in Warm::DEFAULT_LIST {
        k.function(a, d, o).unwrap();
        assert_ne!(k.origin(a, d, o), Some(Origin::DiskCache), "{a} {d} {o}");
    }
    let load = t.elapsed();
    allreduce_check([&k, &k], &ctx, Algo::OneShot, DType::F32);
    println!(
        "background warm of {} instances: init {:.1} ms, first two-shot bf16 sum {:.0} ms (while warming), all warmed after {:.0} ms, then loading them {:.1} ms",
        Warm::DEFAULT_LIST.len(),
        ms(init),
        ms(first),
        ms(all),
        ms(load)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every instance compiled one at a time, cold then warm (compare with the old
/// whole-program compile of gpu_device_and_compile_cache).
#[test]
#[ignore = "needs a GPU"]
fn gpu_lazy_every_instance_cold_and_warm() {
    let Some(ctx) = gpu() else { return };
    let dir = fresh_dir("all");
    let t = Instant::now();
    let k = Kernels::load_opts(&ctx, &opts(&dir, Warm::Off)).unwrap();
    for (a, d, o) in inc_cuda::all_instances() {
        k.function(a, d, o).unwrap();
    }
    let cold = t.elapsed();
    assert_eq!(k.loaded_instances().len(), inc_cuda::all_instances().len());
    let t = Instant::now();
    let k2 = Kernels::load_opts(&ctx, &opts(&dir, Warm::Off)).unwrap();
    for (a, d, o) in inc_cuda::all_instances() {
        k2.function(a, d, o).unwrap();
    }
    let warm = t.elapsed();
    assert!(k2.loaded_from_cache());
    // background warming of everything: the wall time with a warming thread
    let _ = std::fs::remove_dir_all(&dir);
    let t = Instant::now();
    let k3 = Kernels::load_opts(&ctx, &opts(&dir, Warm::All)).unwrap();
    k3.wait_warm();
    let bg = t.elapsed();
    println!(
        "all {} instances one by one: cold {:.2} s, warm cache {:.1} ms (min occupancy {} blocks/SM); Warm::All thread {:.2} s",
        inc_cuda::all_instances().len(),
        cold.as_secs_f64(),
        ms(warm),
        k2.blocks_per_sm(),
        bg.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two threads with separate `Kernels` and the same empty cache folder ask for the same
/// instance at once: one compile, both get a valid kernel (each drives one rank).
#[test]
#[ignore = "needs a GPU"]
fn gpu_lazy_two_threads_same_empty_cache() {
    let Some(ctx) = gpu() else { return };
    let dir = fresh_dir("threads");
    let inst = (Algo::TwoShot, DType::F32, ReduceOp::Sum);
    let ks: Vec<Kernels> = (0..2)
        .map(|_| Kernels::load_opts(&ctx, &opts(&dir, Warm::Off)).unwrap())
        .collect();
    let gate = Barrier::new(2);
    let times: Vec<Duration> = std::thread::scope(|s| {
        let hs: Vec<_> = ks
            .iter()
            .map(|k| {
                let gate = &gate;
                s.spawn(move || {
                    gate.wait();
                    let t = Instant::now();
                    k.function(inst.0, inst.1, inst.2).unwrap();
                    t.elapsed()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let origins: Vec<Origin> = ks
        .iter()
        .map(|k| k.origin(inst.0, inst.1, inst.2).unwrap())
        .collect();
    println!("two threads: origins {origins:?}, times {times:?}");
    assert_eq!(
        origins.iter().filter(|o| **o == Origin::Compiled).count(),
        1,
        "exactly one compile expected: {origins:?}"
    );
    allreduce_check([&ks[0], &ks[1]], &ctx, inst.0, inst.1);
    let p = ks[0].cache_path(inst.0, inst.1, inst.2).unwrap();
    let key = p.file_name().unwrap().to_string_lossy().into_owned();
    assert!(matches!(cache::read(&p, &key), Lookup::Hit(_)));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two processes (this binary re-executed as the second) compile the same instance into the
/// same empty cache folder at the same moment; both get a valid kernel (checked by a real
/// allreduce in each process) and the cache file is valid.
#[test]
#[ignore = "needs a GPU"]
fn gpu_lazy_two_processes_same_empty_cache() {
    let child = std::env::var("INC_LAZY_DIR").ok();
    if child.is_none() && gpu().is_none() {
        return;
    }
    let dir = match &child {
        Some(d) => PathBuf::from(d),
        None => {
            let d = fresh_dir("procs");
            std::fs::create_dir_all(&d).unwrap();
            d
        }
    };
    let mut proc = None;
    if child.is_none() {
        let exe = std::env::current_exe().unwrap();
        proc = Some(
            std::process::Command::new(exe)
                .args([
                    "--ignored",
                    "--exact",
                    "gpu_lazy_two_processes_same_empty_cache",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("INC_LAZY_DIR", &dir)
                .spawn()
                .unwrap(),
        );
    }
    let inst = (Algo::OneShot, DType::Bf16, ReduceOp::Sum);
    let ctx = open_device(0).unwrap();
    // SAFETY: explicit stream syncs order all work in this process.
    unsafe { ctx.disable_event_tracking() };
    let k = Kernels::load_opts(&ctx, &opts(&dir, Warm::Off)).unwrap();
    // start together: each announces itself, then waits for the other
    let me = usize::from(child.is_some());
    std::fs::write(dir.join(format!("ready{me}")), "").unwrap();
    let t = Instant::now();
    while !dir.join(format!("ready{}", 1 - me)).exists() {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "peer process never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let t = Instant::now();
    k.function(inst.0, inst.1, inst.2).unwrap();
    let took = t.elapsed();
    let origin = k.origin(inst.0, inst.1, inst.2).unwrap();
    println!("process {me}: origin {origin:?} in {:.0} ms", ms(took));
    allreduce_check([&k, &k], &ctx, inst.0, inst.1);
    if let Some(mut p) = proc {
        let st = p.wait().unwrap();
        assert!(st.success(), "second process failed: {st}");
        let path = k.cache_path(inst.0, inst.1, inst.2).unwrap();
        let key = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(matches!(cache::read(&path, &key), Lookup::Hit(_)));
        let stray: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("ready") && *n != key)
            .collect();
        assert!(stray.is_empty(), "temp or lock files left: {stray:?}");
        println!("two processes, one empty cache: both kernels valid");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A corrupt cache file (flipped byte, torn file, or a checksum-valid file the driver
/// rejects) is recompiled and rewritten, never loaded.
#[test]
#[ignore = "needs a GPU"]
fn gpu_lazy_corrupt_cache_file_is_recompiled() {
    let Some(ctx) = gpu() else { return };
    let dir = fresh_dir("corrupt");
    let inst = (Algo::OneShot, DType::F32, ReduceOp::Sum);
    let k = Kernels::load_opts(&ctx, &opts(&dir, Warm::Off)).unwrap();
    k.function(inst.0, inst.1, inst.2).unwrap();
    let p = k.cache_path(inst.0, inst.1, inst.2).unwrap();
    let key = p.file_name().unwrap().to_string_lossy().into_owned();
    let good = std::fs::read(&p).unwrap();
    let n = good.len();
    let mut flipped = good.clone();
    flipped[n - 200] ^= 0x10;
    let bad_files = [
        ("flipped byte", flipped),
        ("torn file", good[..n / 2].to_vec()),
        (
            "not a cubin",
            cache::encode(&key, b"definitely not a cubin image"),
        ),
    ];
    for (what, bytes) in bad_files {
        std::fs::write(&p, &bytes).unwrap();
        let k2 = Kernels::load_opts(&ctx, &opts(&dir, Warm::Off)).unwrap();
        k2.function(inst.0, inst.1, inst.2)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            k2.origin(inst.0, inst.1, inst.2),
            Some(Origin::Compiled),
            "{what}: not recompiled"
        );
        allreduce_check([&k2, &k2], &ctx, inst.0, inst.1);
        assert!(
            matches!(cache::read(&p, &key), Lookup::Hit(ref b) if !b.starts_with(b"definitely")),
            "{what}: cache file not rewritten"
        );
        println!("{what}: recompiled, rewritten, allreduce OK");
    }
    let k3 = Kernels::load_opts(&ctx, &opts(&dir, Warm::Off)).unwrap();
    k3.function(inst.0, inst.1, inst.2).unwrap();
    assert_eq!(k3.origin(inst.0, inst.1, inst.2), Some(Origin::DiskCache));
    let _ = std::fs::remove_dir_all(&dir);
}

/// First use of an instance the warming thread is compiling waits for it (no second
/// compile), and a warming thread that fails leaves the error to the call.
#[test]
#[ignore = "needs a GPU"]
fn gpu_lazy_first_use_during_background_warm() {
    let Some(ctx) = gpu() else { return };
    let dir = fresh_dir("warm");
    let inst = (Algo::PushOneShot, DType::Bf16, ReduceOp::Sum);
    let k = Kernels::load_opts(&ctx, &opts(&dir, Warm::List(vec![inst]))).unwrap();
    std::thread::sleep(Duration::from_millis(20)); // let the thread start its compile
    k.function(inst.0, inst.1, inst.2).unwrap();
    let o = k.origin(inst.0, inst.1, inst.2).unwrap();
    // Shared: waited for the thread's compile; Compiled: the thread's finished image
    // (or this thread won the race and the warming thread then waited for it).
    assert!(matches!(o, Origin::Shared | Origin::Compiled), "{o:?}");
    k.wait_warm();
    allreduce_check([&k, &k], &ctx, Algo::PushOneShot, DType::Bf16);
    println!("first use during warming: {o:?}");
    // dropping Kernels while its thread warms does not block or crash
    let _ = std::fs::remove_dir_all(&dir);
    let t = Instant::now();
    drop(Kernels::load_opts(&ctx, &opts(&dir, Warm::All)).unwrap());
    assert!(t.elapsed() < Duration::from_secs(1));
    let _ = std::fs::remove_dir_all(&dir);
}
