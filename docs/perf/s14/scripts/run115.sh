#!/usr/bin/env bash
# GPU run 115 (session 14, 4 GPUs): the final build's GPU test bundle on 4 GPUs (its
# world-3 and world-4 tests included).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r115; mkdir -p "$out" $w
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
t0=$(date +%s)
(cd gpu/gt && INC_CACHE_DIR=/tmp/c115-gt timeout 420 bash run.sh) > $w/gpu_test.txt 2>&1; echo rc=$? >> $w/gpu_test.txt
echo "gt t=$(( $(date +%s) - t0 ))" >> $w/times.txt
tar czf "$out/r115.tgz" -C /tmp r115
