#!/usr/bin/env bash
# GPU run 85 (session 11, 4 GPUs): f16 and f32 beside bf16 on the final kernels (commit
# cfa76ca, same SASS as 071bbad), auto and zero-copy, worlds 4 and 2, graph; the issue's
# "within 10% of bf16 at equal bytes" (run 68 measured it on session 9's kernels).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r85; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
for n in 4 2; do
  for d in bf16 f16 f32; do
    timeout 90 $I launch -n $n -- $I bench --graph --dtype $d --algo auto,zero-copy --sizes 1K,4K,16K,32K,64K,256K,1M,4M,16M,64M --iters 8 --warmup 2 > $w/dt_w${n}_${d}.txt 2>&1; echo rc=$? >> $w/dt_w${n}_${d}.txt
  done
done
tar czf "$out/r85.tgz" -C /tmp r85
