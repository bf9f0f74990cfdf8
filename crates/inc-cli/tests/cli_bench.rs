//! `inc bench` and `inc tune` end to end on the sim backend: the built binary, its table,
//! and the CSV / JSON / SVG files it writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

fn inc(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_inc"));
    c.args(args).env("INC_TIMEOUT_MS", "20000");
    for k in [
        "RANK",
        "WORLD_SIZE",
        "INC_TUNE_FILE",
        "INC_ALGO",
        "INC_BACKEND",
        "INC_BUFFER_BYTES",
    ] {
        c.env_remove(k);
    }
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

/// Data rows of the table (lines not starting with '#').
fn rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

#[test]
fn bench_sim_writes_table_csv_json_svg() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("out/f.csv");
    let json = dir.path().join("out/f.json");
    let svg = dir.path().join("out/f.svg");
    let out = inc(
        &[
            "bench",
            "--backend",
            "sim",
            "--threads",
            "2",
            "--sizes",
            "1K:16K",
            "--iters",
            "3",
            "--warmup",
            "1",
            "--csv",
            csv.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ],
        &[],
    );
    let so = text(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}\nstdout: {so}",
        text(&out.stderr)
    );
    // Header: nccl-tests columns, and the warning that these are not GPU numbers.
    assert!(so.contains("NOT GPU numbers"), "{so}");
    for col in [
        "size", "count", "type", "redop", "time", "algbw", "busbw", "#wrong",
    ] {
        assert!(so.contains(col), "column {col} missing:\n{so}");
    }
    // One row per size: 1K, 2K, 4K, 8K, 16K; #wrong 0 everywhere.
    let r = rows(&so);
    let sizes: Vec<&str> = r.iter().map(|x| x[0].as_str()).collect();
    assert_eq!(sizes, ["1024", "2048", "4096", "8192", "16384"], "{so}");
    for row in &r {
        assert_eq!(row[2], "bfloat16");
        assert_eq!(row[3], "sum");
        let count: u64 = row[1].parse().unwrap();
        assert_eq!(count * 2, row[0].parse::<u64>().unwrap());
        let time: f64 = row[4].parse().unwrap();
        assert!(time > 0.0);
        assert_eq!(row[7], "0", "#wrong: {row:?}");
    }
    assert!(so.contains("# #wrong total: 0"));

    // CSV: header + one line per size, rectangular, numbers parse.
    let c = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = c.lines().collect();
    assert_eq!(lines.len(), 6, "{c}");
    assert!(lines[0]
        .starts_with("mode,algo,size_bytes,count,type,redop,time_us,algbw_gbps,busbw_gbps,wrong"));
    for l in &lines[1..] {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f.len(), lines[0].split(',').count());
        assert_eq!(f[0], "eager");
        assert_eq!(f[1], "auto");
        assert!(f[6].parse::<f64>().unwrap() > 0.0);
        assert_eq!(f[9], "0");
    }

    // JSON: parses, has every size, and zero wrong.
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(j["backend"], "sim");
    assert_eq!(j["gpu_numbers"], false);
    assert_eq!(j["world"], 2);
    assert_eq!(j["wrong"], 0);
    assert_eq!(j["sizes"].as_array().unwrap().len(), 5);
    assert_eq!(j["series"][0]["points"].as_array().unwrap().len(), 5);

    // SVG: a complete document with a drawn line.
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
    assert!(s.contains("<polyline"));
    assert!(s.contains("latency") && s.contains("bus bandwidth"));
}

#[test]
fn bench_bad_arguments_fail_with_one_line() {
    for args in [
        &["bench", "--backend", "sim", "--sizes", "16K:1K"][..],
        &["bench", "--backend", "sim", "--algo", "ring"],
        &["bench", "--backend", "sim", "--dtype", "f64"],
        &["bench", "--backend", "sim", "--threads", "12"],
    ] {
        let out = inc(args, &[]);
        assert!(!out.status.success(), "{args:?}");
        let e = text(&out.stderr);
        assert!(e.starts_with("inc bench: "), "{e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    }
}

#[test]
fn tune_then_bench_auto_uses_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("tune.json");
    let t = table.to_str().unwrap();
    let out = inc(
        &[
            "tune",
            "--backend",
            "sim",
            "--threads",
            "2",
            "--sizes",
            "1K:8K",
            "--iters",
            "2",
            "--warmup",
            "0",
        ],
        &[("INC_TUNE_FILE", t)],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&table).unwrap()).unwrap();
    assert_eq!(v["format"], "inc-tune/1");
    let rules = v["rules"].as_array().unwrap();
    assert!(!rules.is_empty());
    assert_eq!(rules.last().unwrap()["max_bytes"], 8192);

    // A hand-written table that forces two-shot up to 4K: auto must follow it.
    let forced = dir.path().join("forced.json");
    std::fs::write(
        &forced,
        r#"{"format":"inc-tune/1","rules":[{"world":2,"max_bytes":4096,"algo":"two-shot"}]}"#,
    )
    .unwrap();
    let out = inc(
        &[
            "bench",
            "--backend",
            "sim",
            "--sizes",
            "2K:8K",
            "--iters",
            "1",
            "--warmup",
            "0",
        ],
        &[("INC_TUNE_FILE", forced.to_str().unwrap())],
    );
    let so = text(&out.stdout);
    assert!(out.status.success(), "{}\n{so}", text(&out.stderr));
    assert!(so.contains("auto uses the tune table"), "{so}");
    let r = rows(&so);
    let algo: Vec<&str> = r.iter().map(|x| x[8].as_str()).collect();
    // 2K, 4K under the rule -> two-shot; 8K past it -> default (push-one-shot when small).
    assert_eq!(algo, ["two-shot", "two-shot", "push-one-shot"], "{so}");
}

#[test]
fn bench_under_inc_launch_uses_one_process_per_rank() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("l.json");
    let exe = env!("CARGO_BIN_EXE_inc");
    let out = inc(
        &[
            "launch",
            "-n",
            "3",
            "--",
            exe,
            "bench",
            "--backend",
            "sim",
            "--algo",
            "one-shot,two-shot",
            "--sizes",
            "1K:4K",
            "--iters",
            "2",
            "--warmup",
            "1",
            "--graph",
            "--json",
            json.to_str().unwrap(),
        ],
        &[],
    );
    let so = text(&out.stdout);
    assert!(out.status.success(), "{}\n{so}", text(&out.stderr));
    assert!(so.contains("processes (inc launch)"), "{so}");
    assert!(so.contains("# mode: graph"), "{so}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(j["world"], 3);
    assert_eq!(j["wrong"], 0);
    assert_eq!(j["series"].as_array().unwrap().len(), 2);
}

#[test]
fn cuda_bench_and_tune_without_a_gpu_fail_with_one_line() {
    // CUDA_VISIBLE_DEVICES="" hides every GPU, so this holds on GPU machines too.
    let dir = tempfile::tempdir().unwrap();
    let tune_out = dir.path().join("t.json");
    for args in [
        &[
            "bench",
            "--backend",
            "cuda",
            "--sizes",
            "1K",
            "--compare",
            "nccl",
        ][..],
        &["bench", "--backend", "cuda", "--threads", "2", "--graph"],
        &[
            "tune",
            "--backend",
            "cuda",
            "--sizes",
            "1K",
            "--out",
            tune_out.to_str().unwrap(),
        ],
    ] {
        let out = inc(args, &[("CUDA_VISIBLE_DEVICES", "")]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains("no CUDA device") || err.contains("cuda"),
            "{args:?}: {err}"
        );
        assert!(text(&out.stdout).is_empty(), "{args:?}");
        assert!(!tune_out.exists());
    }
}
