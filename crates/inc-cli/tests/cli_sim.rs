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

const LINES: [&str; 13] = [
    "sim", "--algo", "two-shot", "--form", "lines", "--world", "3", "--bytes", "360", "--calls",
    "4", "--blocks", "2,1",
];

/// `--form lines`: the copy-in two-shot's form of lines (inc-sim's lines family) is clean,
/// its `--json` report carries the form and `--replay` re-runs a schedule under it (a
/// report without the field, as written before it existed, replays the barrier form). The
/// CLI has no weakenings, so a lines violation comes from the library's replay only.
#[test]
fn form_lines_is_clean_and_replays_under_its_form() {
    use inc_sim::{check, replay, Algo, Protocol, SimConfig, Weakening};
    let mut a = LINES.to_vec();
    a.extend(["--schedules", "60"]);
    let o = inc(&a);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(text.contains("algo two-shot form lines world 3"), "{text}");
    assert!(text.contains("no violations"), "{text}");
    a.push("--json");
    let o = inc(&a);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["config"]["lines"], true);
    assert_eq!(v["config"]["protocol"], "inc");
    assert_eq!(v["failing_schedules"], 0);
    // The barrier form says so too.
    let o = inc(&[
        "sim",
        "--protocol",
        "inc",
        "--algo",
        "two-shot",
        "--form",
        "barrier",
        "--schedules",
        "5",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let b: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(b["config"]["lines"], false);

    // A real schedule of the lines family: one parity instead of two hangs.
    let mut cfg = SimConfig::new(Protocol::Inc, Algo::TwoShot, 3, 360, 4);
    cfg.blocks = vec![2, 1];
    cfg.lines = true;
    cfg.shrink_runs = 0;
    let weak = SimConfig {
        weaken: Some(Weakening::NoRotation),
        ..cfg.clone()
    };
    let found = check(&weak, 300, 1).unwrap();
    let viol = found.violations.first().expect("one parity is caught");
    let lines_steps = replay(&cfg, &viol.schedule).unwrap().steps;
    let barrier = SimConfig {
        lines: false,
        ..cfg.clone()
    };
    let barrier_steps = replay(&barrier, &viol.schedule).unwrap().steps;
    assert_ne!(lines_steps, barrier_steps);
    v["violations"] = serde_json::json!([{
        "kind": viol.kind.name(),
        "message": viol.message,
        "schedule": inc_sim::format_schedule(&viol.schedule),
    }]);
    let dir = std::env::temp_dir().join(format!("inc-cli-sim-lines-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("lines.json");
    std::fs::write(&f, v.to_string()).unwrap();
    let o = inc(&["sim", "--replay", f.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    // The protocol is sound: the weakening's schedule shows nothing without it.
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("algo two-shot form lines world 3"), "{text}");
    assert!(
        text.contains(&format!(" {lines_steps} steps")),
        "{text}\nwant {lines_steps} steps"
    );
    // Written before the field existed: the barrier form.
    v["config"].as_object_mut().unwrap().remove("lines");
    std::fs::write(&f, v.to_string()).unwrap();
    let o = inc(&["sim", "--replay", f.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!text.contains("form lines"), "{text}");
    assert!(
        text.contains(&format!(" {barrier_steps} steps")),
        "{text}\nwant {barrier_steps} steps"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn form_lines_needs_the_inc_two_shot() {
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let o = inc(&["sim", "--algo", "one-shot", "--form", "lines"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        stderr(&o).contains("--form lines is a form of the copy-in two-shot"),
        "{}",
        stderr(&o)
    );
    let o = inc(&[
        "sim",
        "--protocol",
        "inc",
        "--algo",
        "push-one-shot",
        "--form",
        "barrier",
    ]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let o = inc(&[
        "sim",
        "--protocol",
        "seed",
        "--algo",
        "two-shot",
        "--form",
        "lines",
    ]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(stderr(&o).contains("seed"), "{}", stderr(&o));
    let mut a = LINES.to_vec();
    a.push("--deferred-gather");
    let o = inc(&a);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(stderr(&o).contains("deferred"), "{}", stderr(&o));
    let o = inc(&["sim", "--algo", "two-shot", "--form", "rows"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}
