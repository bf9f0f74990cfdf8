#!/usr/bin/env bash
# GPU run 127 (session 15, 4 GPUs): the final build at world 4: the tables with every peer
# (run 41's script), odd sizes at worlds 3 and 2 on the 4-GPU host.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r127; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r127.tgz" -C /tmp r127; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
T=${T:-300} N=4 bash gpu/run41.sh; cp -r /tmp/r41-w4 $w/bench-w4; tm w4; pack
export INC_CACHE_DIR=/tmp/c41
S=2,6,120,122,1022,4098,65538,262146,393218,1048576,1048578,2097154,4194306,16777218,100000002
for n in 3 2; do
  timeout 90 $I launch -n $n -- $I bench --graph --algo auto,two-shot,zero-copy --dtype bf16 --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
tm odd; pack
