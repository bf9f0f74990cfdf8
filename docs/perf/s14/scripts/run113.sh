#!/usr/bin/env bash
# GPU run 113 (session 14, 2 GPUs): the final build (the zero-copy path's two-shot above 5
# MiB at world 2): the tables at world 2 with every peer (run 41's script), and odd sizes
# around the new zero-copy switch (bf16, f32).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r113; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r113.tgz" -C /tmp r113; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
T=${T:-240} N=2 bash gpu/run41.sh; cp -r /tmp/r41-w2 $w/bench-w2; tm w2; pack
export INC_CACHE_DIR=/tmp/c41
for dt in bf16 f32; do
  timeout 60 $I launch -n 2 -- $I bench --graph --algo zero-copy,auto --dtype $dt --sizes 5242878,5242880,5242882,5505026,6291454,8388610,10000002 --iters 2 --warmup 1 > $w/odd_w2_$dt.txt 2>&1; echo rc=$? >> $w/odd_w2_$dt.txt
done
tm odd; pack
