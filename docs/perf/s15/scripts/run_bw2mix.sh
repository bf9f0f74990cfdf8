#!/usr/bin/env bash
# GPU run 119 (nvidia-h200-x2): bw2mix.cu, built and run on the device machine.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
nvcc -O3 -arch=sm_90 docs/perf/s15/bw2mix.cu -o /tmp/bw2mix 2>&1 | tail -5
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -2 > "$out/bw2mix.txt"
nvidia-smi topo -m >> "$out/bw2mix.txt" 2>&1
timeout 120 /tmp/bw2mix >> "$out/bw2mix.txt" 2>&1; echo "rc=$?" >> "$out/bw2mix.txt"
timeout 120 /tmp/bw2mix >> "$out/bw2mix.txt" 2>&1; echo "rc=$?" >> "$out/bw2mix.txt"
cat "$out/bw2mix.txt"
