#!/usr/bin/env bash
# GPU run 50 (session 8, 4 GPUs): the copy-in two-shot with one chunk per ReduceSlice
# iteration (embedded kernels): one-shot vs two-shot vs LL vs zero-copy at worlds 4, 3, 2
# (thresholds), 2 reps; f16/f32 beside bf16 at world 4.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r50; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M INC_CACHE_DIR=/tmp/c50
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r50.tgz" -C /tmp r50; }
t0=$(date +%s)
S=64K,128K,256K,512K,1M,2M,4M,8M
for r in 1 2; do for n in 4 3 2; do
  timeout 90 $I launch -n $n -- $I bench --graph --algo auto,push-one-shot,one-shot,two-shot,zero-copy --sizes $S --iters 8 --warmup 2 > $w/thr_w${n}_$r.txt 2>&1; echo rc=$? t=$(( $(date +%s) - t0 )) >> $w/thr_w${n}_$r.txt
  pack
done; done
for d in bf16 f16 f32; do
  timeout 90 $I launch -n 4 -- $I bench --graph --dtype $d --algo auto,zero-copy --sizes 1K,16K,256K,1M,16M,64M --iters 8 --warmup 2 > $w/dt_${d}_w4.txt 2>&1; echo rc=$? t=$(( $(date +%s) - t0 )) >> $w/dt_${d}_w4.txt
  pack
done
