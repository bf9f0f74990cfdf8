//! `inc topo` end to end: the built binary on inc-topo's fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../inc-topo/tests/fixtures")
        .join(name)
}

fn inc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_inc"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

#[test]
fn json_for_a_dgx1_capture() {
    let f = fixture("dgx1-v100-8x-hcm-mlx5-pytorch-ddp.txt");
    let out = inc(&["topo", "--file", f.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let obj = v.as_object().unwrap();
    let mut keys: Vec<_> = obj.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["class", "gpus", "hcm", "mesh"]);
    assert_eq!(v["gpus"], 8);
    assert_eq!(v["class"], "hybrid_cube_mesh");
    assert_eq!(v["mesh"][0], serde_json::json!([0, 1, 1, 2, 2, 0, 0, 0]));
    assert_eq!(v["hcm"][0], serde_json::json!([1, 2, 3, 4]));
    assert_eq!(v["hcm"].as_array().unwrap().len(), 8);

    // The JSON reads back (auto-detected) to the same answer, through stdin.
    let mut child = Command::new(env!("CARGO_BIN_EXE_inc"))
        .args(["topo", "--file", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let back = child.wait_with_output().unwrap();
    assert!(back.status.success());
    assert_eq!(back.stdout, out.stdout);
}

#[test]
fn table_and_none_class() {
    let f = fixture("pcie-4xa10-sys-xuesong.txt");
    let out = inc(&["topo", "--file", f.to_str().unwrap()]);
    assert!(out.status.success());
    let s = text(&out.stdout);
    assert!(s.contains("class: none"), "{s}");
    assert!(s.contains("GPU3"), "{s}");
    let f = fixture("a100-8x-nv12-aws-p4d.txt");
    let out = inc(&["topo", "--file", f.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["class"], "fully_connected");
    assert!(v["hcm"].is_null());
}

#[test]
fn errors_are_one_line_and_exit_1() {
    let f = fixture("adversarial/truncated-row.txt");
    for args in [
        vec!["topo", "--file", f.to_str().unwrap()],
        vec!["topo", "--file", "/definitely/not/here.txt"],
    ] {
        let out = inc(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let e = text(&out.stderr);
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.starts_with("inc topo: "), "{e}");
        assert!(out.stdout.is_empty());
    }
    let e = text(&inc(&["topo", "--file", f.to_str().unwrap()]).stderr);
    assert!(e.contains("line 4") && e.contains("truncated"), "{e}");
}

/// Issue 16, hole 6: the default build reads NVML (loaded at run time). Without the
/// driver (no GPU here) it fails with one clear line about NVML; it never says the build
/// lacks NVML (as the default build did before `nvml` became a default feature).
#[test]
fn default_build_reads_nvml_or_says_why_not() {
    let out = inc(&["topo"]);
    let e = text(&out.stderr);
    assert!(
        !e.contains("no NVML support"),
        "the default build must have NVML: {e}"
    );
    if out.status.success() {
        assert!(text(&out.stdout).contains("class"), "{}", text(&out.stdout));
    } else {
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.contains("NVML"), "{e}");
    }
}
