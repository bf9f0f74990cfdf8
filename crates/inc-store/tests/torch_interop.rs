#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Opt-in interop with real PyTorch: runs `tests/torch_interop.py` (torch TCPStore server <->
//! `inc store` client, `inc store serve` <-> torch client, gloo rendezvous through inc).
//!
//! Skipped, with a message, when `python3 -c "import torch"` fails or no `inc` binary is found.
//! The binary is `$INC_BIN`, else `inc` in `$CARGO_TARGET_DIR` (or `target/`) `/release` or
//! `/debug`: build it first with `cargo build -p inc-cli --bin inc`.

use std::path::PathBuf;
use std::process::Command;

fn inc_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("INC_BIN") {
        return Some(PathBuf::from(p));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    ["release", "debug"]
        .iter()
        .map(|p| target.join(p).join("inc"))
        .find(|p| p.is_file())
}

#[test]
fn torch_interop() {
    let has_torch = Command::new("python3")
        .args(["-c", "import torch"])
        .output()
        .map(|o| o.status.success());
    if !matches!(has_torch, Ok(true)) {
        eprintln!("SKIPPED torch_interop: `python3 -c \"import torch\"` fails on this machine");
        return;
    }
    let Some(bin) = inc_bin() else {
        eprintln!("SKIPPED torch_interop: no inc binary (set INC_BIN or `cargo build -p inc-cli --bin inc`)");
        return;
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/torch_interop.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg("--inc-bin")
        .arg(&bin)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "torch interop failed:\n{text}");
    assert!(text.contains("ALL PASSED"));
}
