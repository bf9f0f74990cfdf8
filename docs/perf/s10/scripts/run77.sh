#!/usr/bin/env bash
# GPU run 77 (session 10, 4 GPUs): the final code (one-pass copy-in two-shot; the two-shot's
# reduce stores and the LL push in rotated peer order): tables at worlds 4 and 2 (run 41's
# script: every algorithm, NCCL, NCCL-symm and the torch script on the same sizes), soak
# 10^6 at world 4, demo at 4, odd sizes at 4 and 2 through every path.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r77; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r77.tgz" -C /tmp r77; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
T=200 N=4 bash gpu/run41.sh; cp -r /tmp/r41-w4 $w/bench-w4; tm w4; pack
T=150 N=2 bash gpu/run41.sh; cp -r /tmp/r41-w2 $w/bench-w2; tm w2; pack
export INC_CACHE_DIR=/tmp/c75
timeout 60 $I launch -n 4 -- $I soak --calls 1000000 --time-limit 45 > $w/soak_w4.txt 2>&1; echo rc=$? >> $w/soak_w4.txt
timeout 30 $I launch -n 4 -- $I demo --backend cuda > $w/demo_w4.txt 2>&1; echo rc=$? >> $w/demo_w4.txt
tm soak; pack
S=2,6,1022,4098,65538,262146,1048576,1048578,2097154
for n in 4 2; do
  timeout 40 $I launch -n $n -- $I bench --graph --algo auto,push-one-shot,one-shot,zero-copy,two-shot --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
tm odd; pack
