#!/usr/bin/env bash
# GPU run 120 (nvidia-h200-x2): bw2mix.cu over grids (blocks x threads).
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
nvcc -O3 -arch=sm_90 docs/perf/s15/bw2mix.cu -o /tmp/bw2mix 2>&1 | tail -5
for g in "132 512" "264 512" "132 1024" "264 256" "528 256" "128 512"; do
  timeout 60 /tmp/bw2mix $g >> "$out/bw2grid.txt" 2>&1; echo "rc=$?" >> "$out/bw2grid.txt"
done
grep -E "^#|bi-push|P =" "$out/bw2grid.txt"
