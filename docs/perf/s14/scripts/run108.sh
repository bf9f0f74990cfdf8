#!/usr/bin/env bash
# GPU run 108 (session 14, 2 GPUs): the final build (power-of-two pieces, the areas, the
# masked-I/O helpers shared by the LL path) at world 2: the tables with every peer (run 41's
# script: every algorithm, NCCL, NCCL-symm, torch), then odd sizes (bf16 and f32) and the demo.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r108; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r108.tgz" -C /tmp r108; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
T=${T:-240} N=2 bash gpu/run41.sh; cp -r /tmp/r41-w2 $w/bench-w2; tm w2; pack
export INC_CACHE_DIR=/tmp/c41
S=2,6,120,122,1022,4098,65538,262146,393218,1048576,1048578,2097154,16777218,100000002
for dt in bf16 f32; do
  timeout 90 $I launch -n 2 -- $I bench --graph --algo auto,push-one-shot,one-shot,two-shot,zero-copy --dtype $dt --sizes $S --iters 2 --warmup 1 > $w/odd_w2_$dt.txt 2>&1; echo rc=$? >> $w/odd_w2_$dt.txt
done
timeout 40 $I launch -n 2 -- $I demo --backend cuda > $w/demo_w2.txt 2>&1; echo rc=$? >> $w/demo_w2.txt
tm odd_demo; pack
