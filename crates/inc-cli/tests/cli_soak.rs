//! `inc soak` end to end on the sim backend: threads and `inc launch` processes, the
//! summary, sampled checks, an injected wrong element, the time limit, a killed rank.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

const INC: &str = env!("CARGO_BIN_EXE_inc");

fn inc(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(INC);
    c.args(args).env("INC_TIMEOUT_MS", "20000");
    for k in [
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
        "INC_ALGO",
        "INC_BACKEND",
        "INC_TUNE_FILE",
    ] {
        c.env_remove(k);
    }
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const SMALL: [&str; 6] = [
    "soak",
    "--backend",
    "sim",
    "--max-bytes",
    "8192",
    "--batch=40",
];

#[test]
fn threads_pass_with_every_element_checked() {
    let o = inc(
        &[&SMALL[..], &["--threads", "3", "--calls", "300"]].concat(),
        &[],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    for r in 0..3 {
        assert!(out.contains(&format!("rank {r}: PASS: 300 calls")), "{out}");
    }
    assert!(
        out.contains("300 calls (100.0%) in full, 0 at <= 64 sampled"),
        "{out}"
    );
    assert!(out.contains("(100.00%): 0 wrong in 0 call(s)"), "{out}");
    assert!(out.contains("3 ranks): identical"), "{out}");
    assert!(out.contains("soak: PASS: 3 ranks, 300 calls each"), "{out}");
    assert!(out.contains("calls/s"), "{out}");
}

#[test]
fn sampled_batches_check_a_fraction_and_say_so() {
    let o = inc(
        &[&SMALL[..], &["--calls", "400", "--full-every", "4"]].concat(),
        &[],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    // 10 batches of 40: batches 0, 4 and 8 in full
    assert!(
        out.contains("120 calls (30.0%) in full, 280 at <= 64 sampled"),
        "{out}"
    );
    let pct: f64 = out
        .lines()
        .find(|l| l.starts_with("rank 0: element-wise"))
        .and_then(|l| l.split(" compared (").nth(1))
        .and_then(|l| l.split('%').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(pct > 5.0 && pct < 100.0, "{pct}");
}

#[test]
fn a_wrong_element_fails_every_rank_and_names_the_call() {
    let o = inc(
        &[
            &SMALL[..],
            &[
                "--calls",
                "200",
                "--full-every",
                "2",
                "--inject-wrong",
                "77",
            ],
        ]
        .concat(),
        &[],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(out.contains("rank 0: FAIL"), "{out}");
    assert!(out.contains("rank 1: FAIL"), "{out}");
    assert!(out.contains(": 1 wrong in 1 call(s)"), "{out}");
    assert!(out.contains("1 call(s) differ"), "{out}");
    assert!(err.contains("rank 0: call 77 ("), "{err}");
    assert!(err.contains("ranks differ: call 77:"), "{err}");
}

#[test]
fn the_time_limit_stops_every_rank_at_the_same_call() {
    let start = Instant::now();
    let o = inc(
        &[
            "soak",
            "--backend",
            "sim",
            "--max-bytes",
            "256",
            "--calls",
            "100000000",
            "--time-limit",
            "0.5",
        ],
        &[],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let stopped: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("stopped by --time-limit 0.5 s after"))
        .map(|l| l.split(" after ").nth(1).unwrap())
        .collect();
    assert_eq!(stopped.len(), 2, "{out}");
    assert_eq!(stopped[0], stopped[1], "{out}");
    assert!(start.elapsed() < Duration::from_secs(120));
}

#[test]
fn launch_three_processes_pass() {
    let o = inc(
        &[
            &["launch", "-n", "3", "--", "inc"][..],
            &SMALL[..],
            &["--calls", "300"],
        ]
        .concat(),
        &[],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    for r in 0..3 {
        assert!(
            out.contains(&format!("[rank {r}] rank {r}: PASS: 300 calls")),
            "{out}"
        );
    }
    assert!(out.contains("[rank 0] soak: PASS: 3 ranks"), "{out}");
}

#[test]
fn a_rank_killed_mid_soak_ends_the_others_with_an_error() {
    let start = Instant::now();
    let run = r#""$INC_BIN" soak --backend sim --max-bytes 16384 --calls 100000000"#;
    let script = format!(
        r#"if [ "$RANK" = 1 ]; then {run} & sleep 1.5; kill -9 $!; exit 9; fi; exec {run}"#
    );
    let o = inc(
        &[
            "launch",
            "-n",
            "3",
            "--grace-ms",
            "20000",
            "--",
            "sh",
            "-c",
            &script,
        ],
        &[("INC_TIMEOUT_MS", "2000"), ("INC_BIN", INC)],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(9), "{out}\n{err}");
    for r in [0, 2] {
        // mid-soak (stdout), or still in the rendezvous on a slow machine (stderr)
        let line = out
            .lines()
            .chain(err.lines())
            .find(|l| {
                l.starts_with(&format!("[rank {r}] rank {r}: ERROR:"))
                    || l.starts_with(&format!("[rank {r}] inc soak:"))
            })
            .unwrap_or_else(|| panic!("rank {r} did not fail:\n{out}\n{err}"));
        assert!(
            line.contains("timed out") || line.contains("abort") || line.contains("exchange"),
            "{line}"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn bad_arguments_exit_2_and_cuda_without_a_gpu_fails_with_one_line() {
    for args in [
        &["soak", "--backend", "nccl"][..],
        &["soak", "--backend", "sim", "--max-bytes", "2"],
        &["soak", "--backend", "sim", "--batch", "0"],
        &["soak", "--backend", "sim", "--time-limit", "-1"],
        &["soak", "--backend", "sim", "--full-every", "0"],
    ] {
        let o = inc(args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {:?}", text(&o));
    }
    // CUDA_VISIBLE_DEVICES="" hides every GPU, so this holds on GPU machines too.
    let o = inc(&["soak", "--calls", "10"], &[("CUDA_VISIBLE_DEVICES", "")]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("inc soak: "), "{err}");
}
