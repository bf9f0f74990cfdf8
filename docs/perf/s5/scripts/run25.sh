#!/usr/bin/env bash
# GPU run 25 (session 5, 2 GPUs): f16 and f32 against bf16 at equal bytes (auto, graph).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r25; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
for d in bf16 f16 f32; do
  timeout 150 $I launch -n 2 -- $I bench --graph --dtype $d --algo auto,zero-copy --sizes 1K,16K,256K,1M,4M,16M,64M --iters 8 --warmup 2 --csv $w/dtype_$d.csv > $w/dtype_$d.txt 2>&1; echo "rc=$?" >> $w/dtype_$d.txt
done
tar czf "$out/r25.tgz" -C /tmp r25
