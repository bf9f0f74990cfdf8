#!/usr/bin/env bash
# GPU run 101 (session 13, 2 GPUs): rule 5 of PROTOCOL.md "Wrap" (every call zeroes a 4 KiB
# window of its own push region). A/B against the kernels before it (gpu/v/old13: HEAD
# b0f8ab7's common.cuh and push_one_shot.cu, which ignore push_slot_bytes outside lines),
# alternated, four times; then the GPU test bundle (gpu_no_ll_word_outlives_an_epoch_period
# new), odd sizes, the demo and a soak at world 2.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r101; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r101.tgz" -C /tmp r101; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for rep in 1 2 3 4; do
  for v in old13 new; do
    kd=$PWD/gpu/v/$v; [ $v = new ] && kd=$PWD/gpu/v/none
    INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 100 $I launch -n 2 -- $I bench --graph --algo auto,zero-copy --sizes 1K,4K,16K,64K,256K,512K,1M,16M --iters 8 --warmup 2 > $w/ab_w2_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w2_${v}_$rep.txt
    tm $v-$rep
  done
  pack
done
(cd gpu/gt && INC_CACHE_DIR=/tmp/c101-gt timeout 300 bash run.sh) > $w/gpu_test.txt 2>&1; echo rc=$? >> $w/gpu_test.txt
tm gt; pack
export INC_CACHE_DIR=/tmp/c-new
S=2,6,120,122,1022,4098,65538,262146,393218,1048576,1048578,2097154,16777218
timeout 60 $I launch -n 2 -- $I bench --graph --algo auto,push-one-shot,one-shot,two-shot,zero-copy --dtype bf16 --sizes $S --iters 2 --warmup 1 > $w/odd_w2.txt 2>&1; echo rc=$? >> $w/odd_w2.txt
timeout 40 $I launch -n 2 -- $I demo --backend cuda > $w/demo_w2.txt 2>&1; echo rc=$? >> $w/demo_w2.txt
timeout 90 $I launch -n 2 -- $I soak --calls 1000000 --time-limit 45 > $w/soak_w2.txt 2>&1; echo rc=$? >> $w/soak_w2.txt
tm odd_demo_soak; pack
