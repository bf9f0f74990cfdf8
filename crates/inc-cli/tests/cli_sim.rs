//! `inc sim`: the default (PCT) scheduler finds the seed's race at 4 KB per rank, the
//! uniform walk does not, and `--replay` re-runs a `--json` report's shrunk schedule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

const INC: &str = env!("CARGO_BIN_EXE_inc");

fn inc(args: &[&str]) -> Output {
    Command::new(INC).args(args).output().unwrap()
}

const SEED_4K: [&str; 13] = [
    "sim",
    "--protocol",
    "seed",
    "--algo",
    "one-shot",
    "--world",
    "2",
    "--bytes",
    "4096",
    "--calls",
    "2",
    "--seed",
    "7",
];

#[test]
fn default_scheduler_finds_the_seed_race_at_4k_and_replays_it() {
    let mut a = SEED_4K.to_vec();
    a.extend(["--schedules", "20", "--json"]);
    let o = inc(&a);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["scheduler"], "pct");
    assert_eq!(v["config"]["bytes"], 4096);
    let first = &v["violations"][0];
    assert_eq!(first["kind"], "stale-read");
    assert!(first["schedule"].as_str().unwrap().starts_with('b'));
    let dir = std::env::temp_dir().join(format!("inc-cli-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("report.json");
    std::fs::write(&f, &out).unwrap();
    let o = inc(&["sim", "--replay", f.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains(first["message"].as_str().unwrap()),
        "{text}\nwant {}",
        first["message"]
    );
    let trace_last = first["trace"].as_array().unwrap().last().unwrap();
    assert!(text.contains(trace_last.as_str().unwrap()), "{text}");
    let o = inc(&["sim", "--replay", f.to_str().unwrap(), "--violation", "99"]);
    assert_eq!(o.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn uniform_walk_misses_it_and_inc_is_clean() {
    let mut a = SEED_4K.to_vec();
    a.extend(["--schedules", "50", "--scheduler", "random"]);
    let o = inc(&a);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let o = inc(&[
        "sim",
        "--protocol",
        "inc",
        "--algo",
        "two-shot",
        "--world",
        "3",
        "--bytes",
        "4096",
        "--calls",
        "3",
        "--blocks",
        "2,1,3",
        "--schedules",
        "50",
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let o = inc(&["sim", "--algo", "one-shot"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn deferred_gather_is_clean_and_checked() {
    let two_shot = [
        "sim",
        "--protocol",
        "inc",
        "--algo",
        "two-shot",
        "--world",
        "2",
        "--bytes",
        "256",
        "--calls",
        "4",
        "--blocks",
        "2,1",
        "--schedules",
        "50",
        "--deferred-gather",
        "--json",
    ];
    let o = inc(&two_shot);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["config"]["deferred_gather"], true);
    // Only the copy-in two-shot of protocol inc has pieces.
    let o = inc(&[
        "sim",
        "--protocol",
        "inc",
        "--algo",
        "one-shot",
        "--deferred-gather",
    ]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("deferred"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
