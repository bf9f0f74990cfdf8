#!/usr/bin/env bash
# GPU run 88 (session 11, 4 GPUs): the wrap rules in the kernels (epoch never 0, a zero tag
# never newer, the consumer clears each flag slot it took): A/B against the kernels before
# (gpu/v/old = commit 738c1d5's common.cuh, two_shot.cu, push_one_shot.cu), alternated
# twice, worlds 4 and 2; then on the new (embedded) kernels: the GPU test bundle (with
# gpu_calls_cross_the_epoch_wrap), odd sizes at 4/3/2 through every path, demos at 4/3/2,
# a soak of 10^6 calls at 4.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r88; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r88.tgz" -C /tmp r88; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for n in 4 2; do
  for rep in 1 2; do
    for v in old new; do
      kd=$PWD/gpu/v/$v; [ $v = new ] && kd=$PWD/gpu/v/none
      INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 150 $I launch -n $n -- $I bench --graph --algo auto,push-one-shot,one-shot,two-shot,zero-copy --sizes 1K,16K,64K,256K,1M,16M --iters 8 --warmup 2 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
    tm ab$n-$rep; pack
  done
done
(cd gpu/gt && INC_CACHE_DIR=/tmp/c88-gt timeout 220 bash run.sh) > $w/gpu_test.txt 2>&1; echo rc=$? >> $w/gpu_test.txt
tm gt; pack
export INC_CACHE_DIR=/tmp/c-new
S=2,6,1022,4098,65538,262146,1048576,1048578,2097154,16777218
for n in 4 3 2; do
  timeout 60 $I launch -n $n -- $I bench --graph --algo auto,push-one-shot,one-shot,zero-copy,two-shot --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
  timeout 40 $I launch -n $n -- $I demo --backend cuda > $w/demo_w$n.txt 2>&1; echo rc=$? >> $w/demo_w$n.txt
done
tm odd_demo; pack
timeout 90 $I launch -n 4 -- $I soak --calls 1000000 --time-limit 45 > $w/soak_w4.txt 2>&1; echo rc=$? >> $w/soak_w4.txt
tm soak; pack
