#!/usr/bin/env bash
# GPU run 109 (session 14, 2 GPUs): the final build's GPU test bundle and a soak at world 2.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r109; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M INC_CACHE_DIR=/tmp/c41
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r109.tgz" -C /tmp r109; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
(cd gpu/gt && INC_CACHE_DIR=/tmp/c109-gt timeout 330 bash run.sh) > $w/gpu_test.txt 2>&1; echo rc=$? >> $w/gpu_test.txt
tm gt; pack
timeout 90 $I launch -n 2 -- $I soak --calls 1000000 --time-limit 45 > $w/soak_w2.txt 2>&1; echo rc=$? >> $w/soak_w2.txt
tm soak; pack
