//! `cargo xtask gpu-test [--bundle-only DIR]`: build the GPU test binaries here (release,
//! `--no-run`: every test binary of inc-cuda, and inc-comm's `cuda_gpu`, see [`SPECS`]) and
//! the `inc` binary of inc-cli,
//! copy them with a `run.sh` (which runs each, `#[ignore]`d GPU tests included) into one folder (default `bundle/gpu-test`,
//! git-ignored, < 64 MiB) so that one command on a GPU machine runs them all.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What goes into the bundle: every test binary of a package (`tests: None`), or only
/// the named integration tests of it.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Cargo package name.
    pub package: &'static str,
    /// `None`: all of the package's test binaries; `Some(names)`: these `--test` targets;
    /// `Some(&[])`: no tests, only the `bins` (built by `cargo build`).
    pub tests: Option<&'static [&'static str]>,
    /// Binaries of the package copied to the bundle's top folder (not run as tests).
    pub bins: &'static [&'static str],
}

/// The test binaries of the bundle: all of inc-cuda's, and inc-comm's GPU tests
/// (`tests/cuda_gpu.rs`: virtual ranks, stream order, dropped-Work errors, graphs, NCCL);
/// and the `inc` tool of inc-cli (no tests of it).
pub const SPECS: &[Spec] = &[
    Spec {
        package: "inc-cuda",
        tests: None,
        bins: &[],
    },
    Spec {
        package: "inc-comm",
        tests: Some(&["cuda_gpu"]),
        bins: &[],
    },
    Spec {
        package: "inc-cli",
        tests: Some(&[]),
        // `run.sh` runs `./inc topo`: the default build reads NVML on a GPU machine.
        bins: &["inc"],
    },
];

/// Whether `spec` builds only binaries (`tests: Some(&[])`), no test executables.
fn bins_only(spec: &Spec) -> bool {
    spec.tests.is_some_and(|t| t.is_empty())
}

/// The cargo arguments that build `spec`'s test binaries (release, not run), or only its
/// `bins` (`cargo build --release`) when it names no tests.
pub fn cargo_args(spec: &Spec) -> Vec<String> {
    if bins_only(spec) {
        let mut v: Vec<String> = ["build", "--release", "--message-format=json", "-p"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.push(spec.package.to_string());
        for b in spec.bins {
            v.push("--bin".into());
            v.push(b.to_string());
        }
        return v;
    }
    let mut v: Vec<String> = [
        "test",
        "--release",
        "--no-run",
        "--message-format=json",
        "-p",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(spec.package.to_string());
    for t in spec.tests.unwrap_or(&[]) {
        v.push("--test".into());
        v.push(t.to_string());
    }
    v
}

/// Largest bundle the device tool carries.
const MAX_BUNDLE_BYTES: u64 = 64 << 20;

const RUN_SH: &str = r#"#!/bin/bash
# Runs every test binary of this bundle on a GPU machine, GPU (#[ignore]) tests included.
# Made by `cargo xtask gpu-test`. Exit status 0 only if every binary passed.
cd "$(dirname "$0")" || exit 2
export INC_REQUIRE_GPU=1
export INC_CACHE_DIR="${INC_CACHE_DIR:-/tmp/inc-cache}"
# libnvrtc is dlopen'ed by name; add its folder when the loader does not know it.
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64; do
    if ls "$d"/libnvrtc.so* >/dev/null 2>&1; then export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH}"; break; fi
  done
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
status=0
for t in bin/*; do
  echo "== $t"
  "./$t" --include-ignored --test-threads=1 --nocapture || status=1
done
# The default build of `inc` reads this machine's topology through NVML.
if [ -x ./inc ]; then
  echo "== inc topo"
  ./inc topo || status=1
fi
if [ "$status" = 0 ]; then echo "gpu-test bundle: PASS"; else echo "gpu-test bundle: FAIL"; fi
exit $status
"#;

/// Pull the string value of `"key":"..."` out of one JSON line (cargo's messages escape
/// no characters that occur in a Unix path we accept).
fn json_str<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":\"");
    let start = line.find(&pat)? + pat.len();
    let rest = line.get(start..)?;
    let end = rest.find('"')?;
    rest.get(..end)
}

/// Whether a compiler-artifact line is a test build: `"test":true` inside its
/// `"profile"` object (the target object has a `"test"` key of its own, true for bins).
fn profile_is_test(line: &str) -> bool {
    line.find("\"profile\":{")
        .and_then(|i| line.get(i..))
        .and_then(|p| p.find('}').and_then(|j| p.get(..j)))
        .is_some_and(|p| p.contains("\"test\":true"))
}

/// The executable of the binary target `name` in cargo's JSON output lines, if built.
pub fn binary_from_json<'a>(lines: impl Iterator<Item = &'a str>, name: &str) -> Option<PathBuf> {
    let kind = "\"kind\":[\"bin\"]";
    let named = format!("\"name\":\"{name}\"");
    lines
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\"") && !profile_is_test(l))
        .filter(|l| l.contains(kind) && l.contains(&named))
        .find_map(|l| json_str(l, "executable").map(PathBuf::from))
}

/// Test executables named in `cargo test --no-run --message-format=json` output lines.
pub fn executables_from_json<'a>(
    lines: impl Iterator<Item = &'a str>,
    packages: &[&str],
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in lines {
        if !line.contains("\"reason\":\"compiler-artifact\"") || !profile_is_test(line) {
            continue;
        }
        let Some(exe) = json_str(line, "executable") else {
            continue;
        };
        let pkg_ok = json_str(line, "package_id").is_some_and(|id| {
            packages.iter().any(|p| {
                id.contains(&format!("/{p}#"))
                    || id.contains(&format!("{p} "))
                    || id.contains(&format!("#{p}@"))
            })
        });
        if pkg_ok {
            out.push(PathBuf::from(exe));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Test executables and extra binaries of the bundle.
type Built = (Vec<PathBuf>, Vec<PathBuf>);

fn build() -> Result<Built, String> {
    let (mut tests, mut bins) = (Vec::new(), Vec::new());
    for spec in SPECS {
        let (t, b) = build_one(spec)?;
        tests.extend(t);
        bins.extend(b);
    }
    tests.sort();
    tests.dedup();
    Ok((tests, bins))
}

fn build_one(spec: &Spec) -> Result<Built, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(crate::util::repo_root()?)
        .args(cargo_args(spec));
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let mut lines = Vec::new();
    if let Some(out) = child.stdout.take() {
        for l in BufReader::new(out).lines() {
            lines.push(l.map_err(|e| format!("reading cargo output: {e}"))?);
        }
    }
    let st = child.wait().map_err(|e| format!("cargo: {e}"))?;
    if !st.success() {
        return Err(format!(
            "cargo {} -p {} failed ({st})",
            if bins_only(spec) {
                "build"
            } else {
                "test --no-run"
            },
            spec.package
        ));
    }
    let exes = if bins_only(spec) {
        Vec::new()
    } else {
        executables_from_json(lines.iter().map(String::as_str), &[spec.package])
    };
    if exes.is_empty() && !bins_only(spec) {
        return Err(format!(
            "cargo built no test executables for {}",
            spec.package
        ));
    }
    let mut bins = Vec::new();
    for name in spec.bins {
        bins.push(
            binary_from_json(lines.iter().map(String::as_str), name)
                .ok_or_else(|| format!("cargo built no binary {name} for {}", spec.package))?,
        );
    }
    Ok((exes, bins))
}

/// Copies `src` to `dst` and returns the copy's size; when the copy is large, strips its
/// debug sections (`strip --strip-debug`, when available): the release profile keeps line
/// tables, which make the test binaries 10x larger than the 64 MiB bundle allows. Panic
/// messages keep their file:line (they do not come from debug info).
fn copy_slim(src: &Path, dst: &Path) -> Result<u64, String> {
    std::fs::copy(src, dst).map_err(|e| format!("copying {}: {e}", src.display()))?;
    let _ = Command::new("strip")
        .arg("--strip-debug")
        .arg(dst)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    std::fs::metadata(dst)
        .map(|m| m.len())
        .map_err(|e| format!("reading {}: {e}", dst.display()))
}

/// Write `run.sh`, copy the test executables `exes` into `dir/bin` and the binaries `bins`
/// into `dir` (replacing an older bundle there).
pub fn make_bundle(dir: &Path, exes: &[PathBuf], bins: &[PathBuf]) -> Result<u64, String> {
    let bin = dir.join("bin");
    if bin.exists() {
        std::fs::remove_dir_all(&bin).map_err(|e| format!("removing {}: {e}", bin.display()))?;
    }
    std::fs::create_dir_all(&bin).map_err(|e| format!("creating {}: {e}", bin.display()))?;
    let mut total = 0u64;
    let places = exes
        .iter()
        .map(|e| (e, bin.as_path()))
        .chain(bins.iter().map(|b| (b, dir)));
    for (exe, to) in places {
        let name = exe
            .file_name()
            .ok_or_else(|| format!("bad executable path {}", exe.display()))?;
        total += copy_slim(exe, &to.join(name))?;
    }
    crate::util::write_exec(&dir.join("run.sh"), RUN_SH)?;
    if total > MAX_BUNDLE_BYTES {
        return Err(format!(
            "bundle is {} MiB, over the 64 MiB the device tool carries",
            total >> 20
        ));
    }
    Ok(total)
}

/// Build the GPU test binaries and bundle them. `bundle_only = Some(DIR)` writes the bundle
/// to DIR and prints nothing else; `None` writes `bundle/gpu-test` and prints the device
/// command to run it.
pub fn gpu_test(bundle_only: Option<PathBuf>) -> Result<(), String> {
    let (exes, bins) = build()?;
    let quiet = bundle_only.is_some();
    let dir = match bundle_only {
        Some(dir) => dir,
        None => crate::util::repo_root()?.join("bundle").join("gpu-test"),
    };
    let bytes = make_bundle(&dir, &exes, &bins)?;
    if !quiet {
        println!(
            "bundle: {} ({} binaries, {:.1} MiB)",
            dir.display(),
            exes.len() + bins.len(),
            bytes as f64 / (1 << 20) as f64
        );
        println!(
            "device command (run tool, carry [\"bundle\"]):  bash bundle/gpu-test/run.sh 2>&1"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_test_executables_of_the_named_packages() {
        let lines = [
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/crates/inc-cuda#0.1.0","profile":{"test":true},"executable":"/t/release/deps/gpu-abc"}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/crates/inc-cuda#inc-cuda@0.1.0","profile":{"test":true},"executable":"/t/release/deps/inc_cuda-def"}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/crates/inc-cuda#0.1.0","profile":{"test":false},"executable":null}"#,
            r#"{"reason":"compiler-artifact","package_id":"registry+https://x#cudarc@0.19.10","profile":{"test":true},"executable":"/t/other"}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ];
        let got = executables_from_json(lines.iter().copied(), &["inc-cuda"]);
        // inc-comm's GPU test binary is picked by its own package id.
        let comm = [
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/crates/inc-comm#0.1.0","target":{"name":"cuda_gpu"},"profile":{"test":true},"executable":"/t/release/deps/cuda_gpu-123"}"#,
        ];
        assert_eq!(
            executables_from_json(comm.iter().copied(), &["inc-comm"]),
            vec![PathBuf::from("/t/release/deps/cuda_gpu-123")]
        );
        assert!(executables_from_json(comm.iter().copied(), &["inc-cuda"]).is_empty());
        // A bin target has "test":true in its target object, not in its profile.
        let bin = [
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/crates/inc-cli#0.1.0","target":{"kind":["bin"],"name":"inc","test":true},"profile":{"opt_level":"3","test":false},"executable":"/t/release/inc"}"#,
        ];
        assert!(executables_from_json(bin.iter().copied(), &["inc-cli"]).is_empty());
        assert_eq!(
            binary_from_json(bin.iter().copied(), "inc"),
            Some(PathBuf::from("/t/release/inc"))
        );
        assert_eq!(binary_from_json(comm.iter().copied(), "inc"), None);
        assert_eq!(
            got,
            vec![
                PathBuf::from("/t/release/deps/gpu-abc"),
                PathBuf::from("/t/release/deps/inc_cuda-def")
            ]
        );
    }

    #[test]
    fn the_bundle_takes_inc_cudas_tests_inc_comms_gpu_tests_and_the_inc_tool() {
        let cuda = SPECS.iter().find(|s| s.package == "inc-cuda").unwrap();
        assert!(!cargo_args(cuda).iter().any(|a| a == "--test"));
        let comm = SPECS.iter().find(|s| s.package == "inc-comm").unwrap();
        let args = cargo_args(comm).join(" ");
        assert!(args.ends_with("-p inc-comm --test cuda_gpu"), "{args}");
        assert!(args.starts_with("test --release --no-run"), "{args}");
        assert!(comm.bins.is_empty());
        let cli = SPECS.iter().find(|s| s.package == "inc-cli").unwrap();
        let args = cargo_args(cli).join(" ");
        assert_eq!(
            args,
            "build --release --message-format=json -p inc-cli --bin inc"
        );
        assert_eq!(cli.bins, &["inc"]);
    }

    #[test]
    fn bundle_has_run_script_and_binaries() {
        let tmp = std::env::temp_dir().join(format!("xtask-bundle-{}", std::process::id()));
        let src = tmp.join("src-bin");
        std::fs::create_dir_all(&src).unwrap();
        let exe = src.join("t1");
        std::fs::write(&exe, b"x").unwrap();
        let out = tmp.join("out");
        let tool = src.join("inc");
        std::fs::write(&tool, b"y").unwrap();
        assert_eq!(make_bundle(&out, &[exe], &[tool]).unwrap(), 2);
        assert!(out.join("bin/t1").exists());
        assert!(out.join("inc").exists() && !out.join("bin/inc").exists());
        let sh = std::fs::read_to_string(out.join("run.sh")).unwrap();
        assert!(sh.contains("--include-ignored"));
        assert!(sh.contains("./inc topo"));
        let _ = std::fs::remove_dir_all(tmp);
    }
}
