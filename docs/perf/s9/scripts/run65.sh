#!/usr/bin/env bash
# GPU run 65 (session 9, 2 GPUs): f16 and f32 beside bf16 with the final code (b75c428's
# kernels), world 2, graph, auto and zero-copy, alternated twice.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r65; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M INC_CACHE_DIR=/tmp/c65
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r65.tgz" -C /tmp r65; }
for r in 1 2; do for d in bf16 f16 f32; do
  timeout 90 $I launch -n 2 -- $I bench --graph --dtype $d --algo auto,zero-copy --sizes 1K,4K,16K,32K,64K,256K,1M,4M,16M,64M --iters 8 --warmup 2 > $w/dt_${d}_$r.txt 2>&1; echo rc=$? >> $w/dt_${d}_$r.txt
done; pack; done
