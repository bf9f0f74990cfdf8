#!/usr/bin/env bash
# GPU run 72 (session 10, 4 GPUs): the final code (one-pass copy-in two-shot): tables at
# worlds 4 and 2 (run 41's script: every algorithm, NCCL, NCCL-symm and the torch script on
# the same sizes), soak 10^6 at world 4.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r72; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r72.tgz" -C /tmp r72; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
T=200 N=4 bash gpu/run41.sh; cp -r /tmp/r41-w4 $w/bench-w4; tm w4; pack
T=150 N=2 bash gpu/run41.sh; cp -r /tmp/r41-w2 $w/bench-w2; tm w2; pack
export INC_CACHE_DIR=/tmp/c72
timeout 60 $I launch -n 4 -- $I soak --calls 1000000 --time-limit 45 > $w/soak_w4.txt 2>&1; echo rc=$? >> $w/soak_w4.txt
tm soak; pack
