#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]
//! GPU tests of the CUBINs embedded in the binary (issue 18). All `#[ignore]`; run with
//! `cargo test -p inc-cuda --release --test gpu_embedded -- --ignored --test-threads=1 --nocapture`
//! or through the bundle of `cargo xtask gpu-test`. Each test runs its checks in a fresh
//! child process (this binary re-executed), so that "NVRTC was never loaded" and the
//! first-use timings mean what they say, and `INC_EMBEDDED_CUBINS` is set for that process
//! only.
//!
//! - `gpu_embedded_first_call_without_nvrtc`: on a device whose arch has an archive
//!   (sm_90: H100/H200; sm_80: A100), with an empty disk cache and the default warm list,
//!   the first bf16 sum instances come from the archive (`Origin::Embedded`), give exact
//!   allreduce results, nothing is written to the cache and libnvrtc is never mapped into
//!   the process; then every instance loads from the archive.
//! - `gpu_embedded_off_by_env_uses_nvrtc`: `INC_EMBEDDED_CUBINS=0` gives the NVRTC path
//!   (`Origin::Compiled`, then `Origin::DiskCache`), with exact results.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inc_cuda::{
    all_instances, embedded, open_device, Algo, CacheMode, DType, Embedded, Kernels, LoadOptions,
    Origin, ReduceOp, Warm,
};

#[allow(dead_code)] // rng() is for the other GPU test files
mod common;
use common::gpu;
#[path = "common/pair.rs"]
mod pair;
use pair::allreduce_check;

/// Set in the child process to the name of the test it runs.
const ROLE: &str = "INC_EMBEDDED_TEST_ROLE";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn fresh_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("inc-embedded-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The libnvrtc files mapped into this process.
fn nvrtc_mapped() -> Vec<String> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("libnvrtc"))
        .filter_map(|l| l.split_whitespace().nth(5).map(str::to_string))
        .collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// In the parent: run `test` again in a child process with `env`, and require success.
/// Gives false in the child (the caller then does the work).
fn in_child(test: &str, env: &[(&str, &str)]) -> bool {
    if std::env::var(ROLE).is_ok_and(|r| r == test) {
        return false;
    }
    if gpu().is_none() {
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let st = std::process::Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            test,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, test)
        .envs(env.iter().copied())
        .status()
        .unwrap();
    assert!(st.success(), "child process of {test} failed: {st}");
    true
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_embedded_first_call_without_nvrtc() {
    let test = "gpu_embedded_first_call_without_nvrtc";
    if in_child(test, &[("INC_EMBEDDED_CUBINS", "1")]) {
        return;
    }
    let t0 = Instant::now();
    let ctx = open_device(0).unwrap();
    // SAFETY: explicit stream syncs order all work in this process.
    unsafe { ctx.disable_event_tracking() };
    let t_ctx = t0.elapsed();
    let dir = fresh_dir("first");
    let opts = LoadOptions {
        cache: CacheMode::Dir(dir.clone()),
        warm: Warm::Default,
        embedded: Embedded::FromEnv,
    };
    let t = Instant::now();
    let k = Kernels::load_opts(&ctx, &opts).unwrap();
    let t_load = t.elapsed();
    let arch = k.arch();
    println!("sm_{}{}: {}", arch.0, arch.1, k.describe_sources());
    if !embedded::ARCHES.contains(&arch) {
        // no archive for this GPU: the NVRTC path, unchanged
        assert!(!k.uses_embedded());
        println!(
            "SKIP (no embedded CUBINs for sm_{}{}): not a pass for sm_90",
            arch.0, arch.1
        );
        return;
    }
    assert!(k.uses_embedded());
    let inst = (Algo::PushOneShot, DType::Bf16, ReduceOp::Sum);
    let t = Instant::now();
    k.function(inst.0, inst.1, inst.2).unwrap();
    let t_first = t.elapsed();
    assert_eq!(k.origin(inst.0, inst.1, inst.2), Some(Origin::Embedded));
    let reports = k.take_load_reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].origin, Origin::Embedded);
    assert_eq!(reports[0].note, None);
    let t = Instant::now();
    allreduce_check([&k, &k], &ctx, inst.0, inst.1);
    let t_call = t.elapsed();
    for (a, d) in [
        (Algo::OneShot, DType::Bf16),
        (Algo::TwoShot, DType::Bf16),
        (Algo::OneShot, DType::F32),
        (Algo::TwoShot, DType::F32),
        (Algo::PushOneShot, DType::F32),
    ] {
        allreduce_check([&k, &k], &ctx, a, d);
        assert_eq!(
            k.origin(a, d, ReduceOp::Sum),
            Some(Origin::Embedded),
            "{a} {d}"
        );
    }
    // nothing compiled: no warming thread, no cache file, NVRTC never loaded
    k.wait_warm();
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        files_in(&dir).is_empty(),
        "cache written: {:?}",
        files_in(&dir)
    );
    assert!(
        nvrtc_mapped().is_empty(),
        "NVRTC loaded: {:?}",
        nvrtc_mapped()
    );
    println!(
        "embedded, empty cache: context {:.0} ms, Kernels::load {:.1} ms, first push-one-shot bf16 sum kernel {:.1} ms (unpack + module load), first 2-rank allreduce {:.0} ms; NVRTC not loaded",
        ms(t_ctx),
        ms(t_load),
        ms(t_first),
        ms(t_call)
    );
    // every instance of the archive
    let t = Instant::now();
    let k2 = Kernels::load_opts(&ctx, &opts).unwrap();
    for (a, d, o) in all_instances() {
        k2.function(a, d, o).unwrap();
        assert_eq!(k2.origin(a, d, o), Some(Origin::Embedded), "{a} {d} {o}");
    }
    println!(
        "all {} instances from the archive: {:.0} ms; NVRTC still not loaded: {}",
        all_instances().len(),
        ms(t.elapsed()),
        nvrtc_mapped().is_empty()
    );
    assert!(nvrtc_mapped().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs a GPU"]
fn gpu_embedded_off_by_env_uses_nvrtc() {
    let test = "gpu_embedded_off_by_env_uses_nvrtc";
    if in_child(test, &[("INC_EMBEDDED_CUBINS", "0")]) {
        return;
    }
    let ctx = open_device(0).unwrap();
    // SAFETY: explicit stream syncs order all work in this process.
    unsafe { ctx.disable_event_tracking() };
    let dir = fresh_dir("off");
    let opts = LoadOptions {
        cache: CacheMode::Dir(dir.clone()),
        warm: Warm::Off,
        embedded: Embedded::FromEnv,
    };
    let k = Kernels::load_opts(&ctx, &opts).unwrap();
    assert!(!k.uses_embedded(), "INC_EMBEDDED_CUBINS=0 ignored");
    println!("{}", k.describe_sources());
    let inst = (Algo::PushOneShot, DType::Bf16, ReduceOp::Sum);
    let t = Instant::now();
    k.function(inst.0, inst.1, inst.2).unwrap();
    let t_first = t.elapsed();
    assert_eq!(k.origin(inst.0, inst.1, inst.2), Some(Origin::Compiled));
    allreduce_check([&k, &k], &ctx, inst.0, inst.1);
    assert!(!nvrtc_mapped().is_empty());
    let k2 = Kernels::load_opts(&ctx, &opts).unwrap();
    k2.function(inst.0, inst.1, inst.2).unwrap();
    assert_eq!(k2.origin(inst.0, inst.1, inst.2), Some(Origin::DiskCache));
    allreduce_check([&k2, &k2], &ctx, inst.0, inst.1);
    println!(
        "INC_EMBEDDED_CUBINS=0: first push-one-shot bf16 sum by NVRTC {:.0} ms (NVRTC's first load included), then from the disk cache",
        ms(t_first)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
