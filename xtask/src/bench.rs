//! `cargo xtask bench`: a bundle that runs `inc bench` (with NCCL beside it) and, when
//! PyTorch is present, the torch/NCCL baseline script in the same command on a GPU host.

use std::fs;
use std::path::PathBuf;

use crate::util::{copy_file, repo_root, run_cargo, write_exec};

const RUN_SH: &str = r#"#!/usr/bin/env bash
# Runs inc's bench beside NCCL (and torch symmetric memory when PyTorch is present)
# on every GPU of this machine, in one command, so the numbers are side by side.
# Extra arguments go to `inc bench` (default algorithms: all; --algo overrides).
# Results: $OUT (or ./out next to this script): inc_bench.{txt,csv,json,svg}.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/out}
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0 INC_CACHE_DIR=${INC_CACHE_DIR:-/tmp/inc-cache}
# cudarc looks for libnccl.so; pip's nvidia-nccl wheel installs libnccl.so.2 only.
if ! ldconfig -p 2>/dev/null | grep -q 'libnccl\.so '; then
  d=$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0] + "/lib")' 2>/dev/null)
  if [ -n "$d" ] && [ -e "$d/libnccl.so.2" ]; then
    mkdir -p /tmp/inc-nccl && ln -sf "$d/libnccl.so.2" /tmp/inc-nccl/libnccl.so
    export LD_LIBRARY_PATH=/tmp/inc-nccl:$d:${LD_LIBRARY_PATH:-}
  else
    echo "note: no libnccl found: the NCCL columns will be n/a"
  fi
fi
# NVRTC for the kernels.
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64; do
    if ls "$d"/libnvrtc.so* >/dev/null 2>&1; then export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"; break; fi
  done
fi
n=${INC_BENCH_GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}
if [ "$n" -lt 1 ]; then echo "no GPU found (nvidia-smi -L)"; exit 1; fi
echo "== inc bench on $n GPU(s)"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -n 1
algo=(--algo all)
case " $* " in *" --algo"*) algo=() ;; esac
# One size list for inc and the torch script, so every row lines up (INC_BENCH_SIZES).
sizes=${INC_BENCH_SIZES:-1K,2K,4K,8K,16K,32K,64K,128K,256K,512K,1M,2M,4M,8M,16M,32M,64M}
export TORCH_BASELINE_SIZES=${TORCH_BASELINE_SIZES:-$sizes}
case " $* " in *" --sizes"*) ;; *) algo+=(--sizes "$sizes") ;; esac
files=(--csv "$out/inc_bench.csv" --json "$out/inc_bench.json" --plot "$out/inc_bench.svg")
if [ "$n" -ge 2 ]; then
  "$here/inc" launch -n "$n" -- "$here/inc" bench --compare nccl --both "${algo[@]}" \
     "${files[@]}" "$@" 2>&1 | tee "$out/inc_bench.txt"
else
  # One GPU: two virtual ranks (not an NVLink number; NCCL measured at world 1 as a floor).
  "$here/inc" bench --threads 2 --compare nccl --both "${algo[@]}" \
     "${files[@]}" "$@" 2>&1 | tee "$out/inc_bench.txt"
fi
rc=${PIPESTATUS[0]}
if [ "$n" -ge 2 ] && python3 -c "import torch" 2>/dev/null; then
  echo "== torch baseline (same machine, same command)"
  torchrun --nproc-per-node="$n" "$here/torch_nccl_baseline.py" 2>&1 | tee "$out/torch_baseline.txt"
fi
exit $rc
"#;

/// Builds `inc` in release and writes the bench bundle into `dir` (default `bundle/bench`).
pub fn bench(dir: Option<PathBuf>) -> Result<(), String> {
    let root = repo_root()?;
    let dir = dir.unwrap_or_else(|| root.join("bundle").join("bench"));
    run_cargo(
        &root,
        &["build", "--release", "-p", "inc-cli", "--bin", "inc"],
    )?;
    fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    copy_file(&target.join("release").join("inc"), &dir.join("inc"))?;
    crate::util::strip(&dir.join("inc"));
    let baseline = root
        .join("..")
        .join("shared")
        .join("baselines")
        .join("torch_nccl_baseline.py");
    if baseline.exists() {
        copy_file(&baseline, &dir.join("torch_nccl_baseline.py"))?;
    } else {
        eprintln!(
            "note: {} not found; the bundle runs inc and NCCL only",
            baseline.display()
        );
    }
    write_exec(&dir.join("run.sh"), RUN_SH)?;
    let rel = dir.strip_prefix(&root).unwrap_or(&dir);
    println!("bench bundle ready: {}", dir.display());
    println!(
        "device command: bash {}/run.sh   (carry: [\"{}\"])",
        rel.display(),
        rel.display()
    );
    Ok(())
}
