#!/usr/bin/env bash
# GPU run 103 (session 13, 2 GPUs): rule 5 with one scrubbing call in 512 (SCRUB_EVERY):
# A/B against the kernels before it (gpu/v/pre13), alternated, four times; the new GPU
# test on the kernels before it (negative control: must fail) and on the new ones; the GPU
# test bundle; odd sizes, demo and soak at world 2; then the tables at world 2 (run 41's
# script: every algorithm, NCCL, NCCL-symm, torch).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r103; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r103.tgz" -C /tmp r103; }
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
  INC_REQUIRE_GPU=1 INC_KERNEL_DIR=$PWD/gpu/v/$v INC_CACHE_DIR=/tmp/c103-$v timeout 120 $t gpu_no_ll_word_outlives_an_epoch_period --include-ignored --nocapture > $w/neg_$v.txt 2>&1; echo rc=$? >> $w/neg_$v.txt
done
tm neg; pack
(cd gpu/gt && INC_CACHE_DIR=/tmp/c103-gt timeout 300 bash run.sh) > $w/gpu_test.txt 2>&1; echo rc=$? >> $w/gpu_test.txt
tm gt; pack
export INC_CACHE_DIR=/tmp/c-new
S=2,6,120,122,1022,4098,65538,262146,393218,1048576,1048578,2097154,16777218
timeout 60 $I launch -n 2 -- $I bench --graph --algo auto,push-one-shot,one-shot,two-shot,zero-copy --dtype bf16 --sizes $S --iters 2 --warmup 1 > $w/odd_w2.txt 2>&1; echo rc=$? >> $w/odd_w2.txt
timeout 40 $I launch -n 2 -- $I demo --backend cuda > $w/demo_w2.txt 2>&1; echo rc=$? >> $w/demo_w2.txt
timeout 90 $I launch -n 2 -- $I soak --calls 1000000 --time-limit 45 > $w/soak_w2.txt 2>&1; echo rc=$? >> $w/soak_w2.txt
tm odd_demo_soak; pack
T=200 N=2 bash gpu/run41.sh; cp -r /tmp/r41-w2 $w/bench-w2; tm w2; pack
