#!/usr/bin/env bash
# GPU run 102 (session 13, 2 GPUs): rule 5 (the push region's scrub) A/B against the
# kernels before it (gpu/v/pre13: b0f8ab7's common.cuh and push_one_shot.cu), alternated,
# four times; the new GPU test on those kernels (must fail: the negative control); then the
# tables at world 2 (run 41's script: every algorithm, NCCL, NCCL-symm, torch).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r102; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r102.tgz" -C /tmp r102; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for rep in 1 2 3 4; do
  for v in pre13 new; do
    kd=$PWD/gpu/v/$v; [ $v = new ] && kd=$PWD/gpu/v/none
    INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 100 $I launch -n 2 -- $I bench --graph --algo auto,zero-copy --sizes 1K,4K,16K,64K,256K,512K,1M,16M --iters 8 --warmup 2 > $w/ab_w2_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w2_${v}_$rep.txt
    tm $v-$rep
  done
  pack
done
t=$(ls gpu/gt/bin/gpu-* | head -1)
for v in pre13 none; do
  INC_REQUIRE_GPU=1 INC_KERNEL_DIR=$PWD/gpu/v/$v INC_CACHE_DIR=/tmp/c102-$v timeout 120 $t gpu_no_ll_word_outlives_an_epoch_period --include-ignored --nocapture > $w/neg_$v.txt 2>&1; echo rc=$? >> $w/neg_$v.txt
done
tm neg; pack
T=200 N=2 bash gpu/run41.sh; cp -r /tmp/r41-w2 $w/bench-w2; tm w2; pack
