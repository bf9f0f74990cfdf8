#!/usr/bin/env bash
# GPU run 126 (session 15, 2 GPUs): the final build (the zero-copy push two-shot's
# ReduceStore four chunks at a time at world 2): GPU test bundle, the tables at world 2
# with every peer (run 41's script), a soak at world 2.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r126; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r126.tgz" -C /tmp r126; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
(cd gpu/gt && INC_CACHE_DIR=/tmp/c126-gt timeout 300 bash run.sh) > $w/gpu_test.txt 2>&1; echo rc=$? >> $w/gpu_test.txt
tm gt; pack
T=${T:-200} N=2 bash gpu/run41.sh; cp -r /tmp/r41-w2 $w/bench-w2; tm w2; pack
export INC_CACHE_DIR=/tmp/c41
timeout 60 $I launch -n 2 -- $I soak --calls 1000000 --time-limit 40 > $w/soak_w2.txt 2>&1; echo rc=$? >> $w/soak_w2.txt
tm soak; pack
