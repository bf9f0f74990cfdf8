#!/usr/bin/env bash
# GPU run 95 (session 12, 4 GPUs): f16 and f32 against bf16 at equal bytes on the final
# kernels (the two-shot of lines included), worlds 4 and 2, auto and two-shot, twice.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r95; mkdir -p "$out" $w
source gpu/env.sh
export INC_BUFFER_BYTES=64M INC_CACHE_DIR=/tmp/c95
I=gpu/bench/inc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
for n in 4 2; do
  for rep in 1 2; do
    for d in bf16 f16 f32; do
      timeout 100 $I launch -n $n -- $I bench --graph --dtype $d --algo auto,two-shot,zero-copy --sizes 4K,64K,256K,512K,1M,2M --iters 8 --warmup 2 > $w/ab_w${n}_${d}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${d}_$rep.txt
    done
  done
done
tar czf "$out/r95.tgz" -C /tmp r95
