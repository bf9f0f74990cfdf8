#!/usr/bin/env bash
# GPU run 110 (session 14, 4 GPUs): the final build at world 4: the tables with every peer
# (run 41's script: every algorithm, NCCL, NCCL-symm, torch), odd sizes at worlds 4 and 3,
# the demo at world 3.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r110; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r110.tgz" -C /tmp r110; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
T=${T:-300} N=4 bash gpu/run41.sh; cp -r /tmp/r41-w4 $w/bench-w4; tm w4; pack
export INC_CACHE_DIR=/tmp/c41
S=2,6,120,122,1022,4098,65538,262146,393218,1048576,1048578,2097154,16777218,100000002
for n in 4 3; do
  timeout 90 $I launch -n $n -- $I bench --graph --algo auto,push-one-shot,one-shot,two-shot,zero-copy --dtype bf16 --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
timeout 40 $I launch -n 3 -- $I demo --backend cuda > $w/demo_w3.txt 2>&1; echo rc=$? >> $w/demo_w3.txt
tm odd_demo; pack
