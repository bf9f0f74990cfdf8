//! Multi-process runs through `inc launch`: a real TCP store, shared memory, real processes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

const INC: &str = env!("CARGO_BIN_EXE_inc");

fn inc(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(INC);
    c.args(args);
    for k in [
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
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

#[test]
fn launch_four_sim_ranks_passes() {
    let o = inc(
        &[
            "launch",
            "-n",
            "4",
            "--",
            "inc",
            "demo",
            "--backend",
            "sim",
            "--max-bytes",
            "4096",
        ],
        &[("INC_TIMEOUT_MS", "20000")],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("[rank 0] inc demo: backend sim, world 4"),
        "{out}"
    );
    assert!(out.contains("[rank 0] PASS"), "{out}");
    assert!(
        out.contains("[rank 0] one-shot") && out.contains("[rank 0] two-shot"),
        "{out}"
    );
}

#[test]
fn launch_demo_json() {
    let o = inc(
        &[
            "launch",
            "-n",
            "2",
            "--",
            "inc",
            "demo",
            "--backend",
            "sim",
            "--json",
            "--max-bytes",
            "4096",
        ],
        &[("INC_TIMEOUT_MS", "20000")],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("[rank 0] {"))
        .expect("json line");
    let v: serde_json::Value = serde_json::from_str(line.trim_start_matches("[rank 0] ")).unwrap();
    assert_eq!(v["backend"], "sim");
    assert_eq!(v["world"], 2);
    assert_eq!(v["wrong"], 0);
    let cases = v["cases"].as_array().unwrap();
    // paths (one-shot, two-shot, push-one-shot) x dtypes x ops
    assert_eq!(cases.len(), 3 * 3 * 4);
    assert!(cases.iter().all(|c| c["wrong"] == 0 && c["bytes"] == 4088));
}

#[test]
fn a_process_that_never_joins_fails_the_job_within_the_timeout() {
    let start = Instant::now();
    let script = r#"if [ "$RANK" = 2 ]; then exit 3; fi; exec "$INC_BIN" demo --backend sim --max-bytes 4096"#;
    let o = inc(
        &[
            "launch",
            "-n",
            "3",
            "--grace-ms",
            "10000",
            "--",
            "sh",
            "-c",
            script,
        ],
        &[("INC_TIMEOUT_MS", "2000"), ("INC_BIN", INC)],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}\n{err}");
    // The other two ranks report a timeout naming rank 2 (they finish within the grace).
    for r in [0, 1] {
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("[rank {r}] inc demo:")))
            .unwrap_or_else(|| panic!("no error from rank {r}:\n{err}"));
        assert!(
            line.contains("timed out after 2000 ms") && line.contains("[2]"),
            "{line}"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_process_killed_mid_run_fails_the_others_without_a_hang() {
    let start = Instant::now();
    // Rank 1 runs the demo in the background and is killed after a moment (mid-rendezvous
    // or mid-call, whichever it is in); rank 0 must error out, not hang.
    let script = r#"if [ "$RANK" = 1 ]; then "$INC_BIN" demo --backend sim --max-bytes 1048576 & sleep 0.3; kill -9 $!; exit 9; fi; exec "$INC_BIN" demo --backend sim --max-bytes 1048576"#;
    let o = inc(
        &[
            "launch",
            "-n",
            "2",
            "--grace-ms",
            "10000",
            "--",
            "sh",
            "-c",
            script,
        ],
        &[("INC_TIMEOUT_MS", "2000"), ("INC_BIN", INC)],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(9), "{out}\n{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("[rank 0] inc demo:"))
        .unwrap_or_else(|| panic!("rank 0 did not fail:\n{out}\n{err}"));
    assert!(
        line.contains("timed out") || line.contains("abort"),
        "{line}"
    );
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn bad_env_and_bad_args_exit_non_zero_with_one_line() {
    let o = inc(&["demo", "--backend", "sim"], &[("INC_ALGO", "three-shot")]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("INC_ALGO"), "{err}");
    let o = inc(&["demo", "--backend", "tpu"], &[]);
    assert!(!o.status.success());
    let o = inc(&["launch", "-n", "2", "--", "/nonexistent/program"], &[]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn demo_threads_world_8_runs_hcm() {
    let o = inc(
        &[
            "demo",
            "--backend",
            "sim",
            "--world",
            "8",
            "--max-bytes",
            "4096",
            "--json",
        ],
        &[],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let algos: Vec<&str> = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["algo"].as_str().unwrap())
        .collect();
    for a in ["one-shot", "two-shot", "hcm"] {
        assert!(algos.contains(&a), "{algos:?}");
    }
    assert_eq!(v["wrong"], 0);
}
