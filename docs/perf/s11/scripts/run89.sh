#!/usr/bin/env bash
# GPU run 89 (session 11, 4 GPUs): the LL poll clears the lines it took (PROTOCOL.md "Wrap"):
# A/B against commit 840adb0's push_one_shot.cu (gpu/v/oldll), alternated twice, worlds 4
# and 2, LL sizes; then on the new kernels: odd sizes at 4 and 2 through every path, the
# LL GPU tests and the wrap test, a soak at 4.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r89; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r89.tgz" -C /tmp r89; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for n in 4 2; do
  for rep in 1 2; do
    for v in oldll new; do
      kd=$PWD/gpu/v/$v; [ $v = new ] && kd=$PWD/gpu/v/none
      INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 120 $I launch -n $n -- $I bench --graph --algo auto,push-one-shot --sizes 1K,4K,16K,32K,64K,128K,256K --iters 8 --warmup 2 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
    tm ab$n-$rep; pack
  done
done
export INC_CACHE_DIR=/tmp/c-new
S=2,6,1022,4098,65538,262146,1048578
for n in 4 2; do
  timeout 60 $I launch -n $n -- $I bench --graph --algo auto,push-one-shot,one-shot,zero-copy,two-shot --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
tm odd; pack
(cd gpu/gt && export INC_REQUIRE_GPU=1 INC_CACHE_DIR=/tmp/c89-gt; for t in bin/gpu_push-* ; do timeout 60 ./$t --include-ignored --test-threads=1; done; timeout 60 ./bin/gpu-* --include-ignored --test-threads=1 gpu_calls_cross_the_epoch_wrap) > $w/gpu_tests.txt 2>&1; echo rc=$? >> $w/gpu_tests.txt
tm gt; pack
timeout 80 $I launch -n 4 -- $I soak --calls 1000000 --time-limit 35 > $w/soak_w4.txt 2>&1; echo rc=$? >> $w/soak_w4.txt
tm soak; pack
