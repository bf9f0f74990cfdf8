#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! NVRTC-only tests: they need libnvrtc (no GPU, no driver) and are `#[ignore]`d because
//! each compile takes CPU seconds. Run with
//! `cargo test -p inc-cuda --release --test nvrtc -- --ignored --test-threads=1 --nocapture`
//! (add the folder of libnvrtc.so.13 or .12 to LD_LIBRARY_PATH). Without NVRTC they print
//! a SKIP line. `INC_NVRTC_ALL=1` compiles every instance instead of a sample; `INC_NVRTC_ARCH=86`
//! picks another target than sm_90.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inc_cuda::cache::{self, Lookup};
use inc_cuda::compile::{self, Job, Origin};
use inc_cuda::{all_instances, source, Algo, DType, Instance, ReduceOp};

fn nvrtc() -> bool {
    if inc_cuda::sys::nvrtc_present() {
        return true;
    }
    if std::env::var("INC_REQUIRE_NVRTC").is_ok_and(|v| v == "1") {
        panic!("INC_REQUIRE_NVRTC=1 but libnvrtc cannot be loaded");
    }
    eprintln!("SKIP (no NVRTC): libnvrtc.so.13/.12 not found; this is not a pass.");
    false
}

fn arch() -> (u32, u32) {
    let a: u32 = std::env::var("INC_NVRTC_ARCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(90);
    (a / 10, a % 10)
}

fn job(inst: Instance, dir: Option<&Path>) -> Job {
    let (a, d, o) = inst;
    let src = source::instance_source(a, d, o).unwrap();
    let arch = arch();
    let options = source::compile_options(&format!("sm_{}{}", arch.0, arch.1));
    let key = source::instance_cache_key(
        &source::entry_name(a, d, o),
        &src,
        &options,
        arch,
        0,
        (0, 0),
    );
    Job {
        key,
        source: src.into(),
        options: options.into(),
        arch,
        dir: dir.map(Path::to_path_buf),
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("inc-nvrtc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
#[ignore = "needs libnvrtc; CPU seconds per instance"]
fn nvrtc_each_instance_compiles_alone() {
    if !nvrtc() {
        return;
    }
    let all = std::env::var("INC_NVRTC_ALL").is_ok_and(|v| v == "1");
    let list: Vec<Instance> = if all {
        all_instances()
    } else {
        vec![
            (Algo::OneShot, DType::Bf16, ReduceOp::Sum),
            (Algo::TwoShot, DType::F32, ReduceOp::Avg),
            (Algo::Hcm, DType::F16, ReduceOp::Max),
            (Algo::PushOneShot, DType::Bf16, ReduceOp::Min),
        ]
    };
    let mut total = Duration::ZERO;
    for inst in &list {
        let j = job(*inst, None);
        let t = Instant::now();
        let bin = compile::compile(&j.source, &j.options, j.arch).unwrap();
        let dt = t.elapsed();
        total += dt;
        let (a, d, o) = *inst;
        let name = source::entry_name(a, d, o);
        assert!(contains(&bin, &name), "{name} missing from its CUBIN");
        // only this instance: no other entry point of any instance in the image
        for (a2, d2, o2) in all_instances() {
            let other = source::entry_name(a2, d2, o2);
            if other != name {
                assert!(
                    !contains(&bin, &format!("{other}\0")),
                    "{other} in {name}'s CUBIN"
                );
            }
        }
        println!(
            "compile {name}: {:.0} ms, {} KiB",
            dt.as_secs_f64() * 1e3,
            bin.len() >> 10
        );
    }
    println!(
        "{} instances alone: {:.2} s total, {:.0} ms mean (sm_{}{})",
        list.len(),
        total.as_secs_f64(),
        total.as_secs_f64() * 1e3 / list.len() as f64,
        arch().0,
        arch().1
    );
    if all || std::env::var("INC_NVRTC_WHOLE").is_ok_and(|v| v == "1") {
        let src = source::assemble();
        let a = arch();
        let t = Instant::now();
        let bin = compile::compile(
            &src,
            &source::compile_options(&format!("sm_{}{}", a.0, a.1)),
            a,
        )
        .unwrap();
        println!(
            "whole program (all {} instances in one module): {:.2} s, {} KiB",
            all_instances().len(),
            t.elapsed().as_secs_f64(),
            bin.len() >> 10
        );
    }
}

#[test]
#[ignore = "needs libnvrtc; CPU seconds per instance"]
fn nvrtc_corrupt_cache_file_is_recompiled() {
    if !nvrtc() {
        return;
    }
    let d = tmp("corrupt");
    let j = job((Algo::OneShot, DType::F32, ReduceOp::Sum), Some(&d));
    let (b1, o1) = compile::obtain(&j, false).unwrap();
    assert_eq!(o1, Origin::Compiled);
    let p = d.join(&j.key);
    assert_eq!(cache::read(&p, &j.key), Lookup::Hit(b1.to_vec()));
    let (_, o2) = compile::obtain(&j, false).unwrap();
    assert_eq!(o2, Origin::DiskCache);
    // flip one payload byte, then truncate: each time recompiled and rewritten
    let mut f = std::fs::read(&p).unwrap();
    let n = f.len();
    f[n - 100] ^= 0x40;
    std::fs::write(&p, &f).unwrap();
    assert!(matches!(cache::read(&p, &j.key), Lookup::Invalid(_)));
    let (b3, o3) = compile::obtain(&j, false).unwrap();
    assert_eq!(o3, Origin::Compiled, "a corrupt file was trusted");
    assert_eq!(b3, b1, "NVRTC output is deterministic");
    assert_eq!(cache::read(&p, &j.key), Lookup::Hit(b1.to_vec()));
    std::fs::write(&p, &f[..n / 2]).unwrap();
    let (_, o4) = compile::obtain(&j, false).unwrap();
    assert_eq!(o4, Origin::Compiled);
    assert!(matches!(cache::read(&p, &j.key), Lookup::Hit(_)));
    println!("corrupt and torn cache files were recompiled and rewritten");
    let _ = std::fs::remove_dir_all(&d);
}

/// N processes (this binary re-executed) compile the same instance into one empty cache
/// folder at the same moment; every one gets the same valid image, and the cache file is
/// valid afterwards.
#[test]
#[ignore = "needs libnvrtc; CPU seconds per instance"]
fn nvrtc_concurrent_processes_share_one_cache() {
    let child = std::env::var("INC_NVRTC_ROLE").ok();
    if let Some(dir) = child {
        let j = job(
            (Algo::TwoShot, DType::Bf16, ReduceOp::Sum),
            Some(Path::new(&dir)),
        );
        let go = Path::new(&dir).join("go");
        while !go.exists() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let t = Instant::now();
        let (b, o) = compile::obtain(&j, false).unwrap();
        println!(
            "CHILD origin={o:?} bytes={} fnv={:016x} ms={:.0}",
            b.len(),
            source::fnv64(&b),
            t.elapsed().as_secs_f64() * 1e3
        );
        return;
    }
    if !nvrtc() {
        return;
    }
    let d = tmp("procs");
    std::fs::create_dir_all(&d).unwrap();
    let exe = std::env::current_exe().unwrap();
    let kids: Vec<_> = (0..3)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "nvrtc_concurrent_processes_share_one_cache",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("INC_NVRTC_ROLE", &d)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(d.join("go"), "").unwrap();
    let mut lines = Vec::new();
    for k in kids {
        let out = k.wait_with_output().unwrap();
        assert!(out.status.success(), "child failed: {}", out.status);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text
            .lines()
            .find_map(|l| l.find("CHILD ").map(|i| l[i..].to_string()))
            .unwrap_or_else(|| panic!("no CHILD line in {text}"));
        lines.push(line);
    }
    for l in &lines {
        println!("{l}");
    }
    let sums: Vec<&str> = lines
        .iter()
        .map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("fnv="))
                .unwrap()
        })
        .collect();
    assert!(
        sums.iter().all(|s| *s == sums[0]),
        "different images: {sums:?}"
    );
    let compiled = lines
        .iter()
        .filter(|l| l.contains("origin=Compiled"))
        .count();
    assert!(compiled >= 1);
    let j = job((Algo::TwoShot, DType::Bf16, ReduceOp::Sum), Some(&d));
    assert!(matches!(
        cache::read(&d.join(&j.key), &j.key),
        Lookup::Hit(_)
    ));
    let leftovers: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "go" && *n != j.key)
        .collect();
    assert!(
        leftovers.is_empty(),
        "left in the cache folder: {leftovers:?}"
    );
    println!("3 processes, one empty cache: {compiled} compiled, the others waited and loaded");
    let _ = std::fs::remove_dir_all(&d);
}

/// 3 processes each warm the same 3 instances in the same order into one empty cache
/// folder: the lock spreads the work (each instance compiled once in all), and every
/// process ends with all 3 images.
#[test]
#[ignore = "needs libnvrtc; CPU seconds per instance"]
fn nvrtc_warming_processes_split_the_work() {
    let list: Vec<Instance> = vec![
        (Algo::OneShot, DType::F32, ReduceOp::Sum),
        (Algo::OneShot, DType::Bf16, ReduceOp::Sum),
        (Algo::TwoShot, DType::F32, ReduceOp::Sum),
    ];
    if let Ok(dir) = std::env::var("INC_NVRTC_WARM_ROLE") {
        let d = PathBuf::from(dir);
        let go = d.join("go");
        while !go.exists() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let jobs: Vec<(Instance, Job)> = list.iter().map(|&i| (i, job(i, Some(&d)))).collect();
        let warmed: compile::Warmed<Instance> = Default::default();
        let t = Instant::now();
        compile::spawn_warm(jobs, warmed.clone(), Default::default())
            .unwrap()
            .join()
            .unwrap();
        let w = warmed.lock().unwrap();
        assert_eq!(w.len(), list.len());
        let compiled = w.values().filter(|(_, o)| *o == Origin::Compiled).count();
        println!(
            "WARM compiled={compiled} ms={:.0}",
            t.elapsed().as_secs_f64() * 1e3
        );
        return;
    }
    if !nvrtc() {
        return;
    }
    let d = tmp("warmsplit");
    std::fs::create_dir_all(&d).unwrap();
    let exe = std::env::current_exe().unwrap();
    let kids: Vec<_> = (0..3)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "nvrtc_warming_processes_split_the_work",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("INC_NVRTC_WARM_ROLE", &d)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(d.join("go"), "").unwrap();
    let mut total = 0;
    for k in kids {
        let out = k.wait_with_output().unwrap();
        assert!(out.status.success(), "child failed: {}", out.status);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text
            .lines()
            .find_map(|l| l.find("WARM ").map(|i| l[i..].to_string()))
            .unwrap_or_else(|| panic!("no WARM line in {text}"));
        println!("{line}");
        let n: usize = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("compiled="))
            .unwrap()
            .parse()
            .unwrap();
        total += n;
    }
    println!("3 warming processes, 3 instances: {total} compiles in all");
    assert_eq!(
        total,
        list.len(),
        "each instance should be compiled once in all"
    );
    let _ = std::fs::remove_dir_all(&d);
}
