#!/usr/bin/env bash
# GPU run 91 (session 12, 4 GPUs): the two-shot of lines in inc. A/B against the kernels
# before it (gpu/v/old12 = commit e71391f's common.cuh, two_shot.cu, push_one_shot.cu: the
# host sets FLAG_LINES, which those kernels ignore, so they run the barrier form), worlds 4,
# 3 and 2, alternated; the prototype for reference; then on the new (embedded) kernels: the
# GPU test bundle, odd sizes at 4/3/2, demos at 4/3/2, a soak of 10^6 calls at 4.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r91; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r91.tgz" -C /tmp r91; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for n in 4 3 2; do
  reps="1 2"; [ $n = 3 ] && reps=1
  for rep in $reps; do
    for v in old12 new; do
      kd=$PWD/gpu/v/$v; [ $v = new ] && kd=$PWD/gpu/v/none
      INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 150 $I launch -n $n -- $I bench --graph --algo auto,one-shot,two-shot --sizes 4K,256K,384K,512K,1M,2M,4M,16M --iters 8 --warmup 2 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
    tm ab$n-$rep; pack
  done
done
(cd gpu/gt && INC_CACHE_DIR=/tmp/c91-gt timeout 240 bash run.sh) > $w/gpu_test.txt 2>&1; echo rc=$? >> $w/gpu_test.txt
tm gt; pack
export INC_CACHE_DIR=/tmp/c-new
S=2,6,120,122,1022,4098,65538,262146,393218,1048576,1048578,2097154,2621442,16777218
for n in 4 3 2; do
  timeout 60 $I launch -n $n -- $I bench --graph --algo auto,two-shot --dtype bf16 --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
  timeout 40 $I launch -n $n -- $I demo --backend cuda > $w/demo_w$n.txt 2>&1; echo rc=$? >> $w/demo_w$n.txt
done
tm odd_demo; pack
timeout 90 $I launch -n 4 -- $I soak --calls 1000000 --time-limit 45 > $w/soak_w4.txt 2>&1; echo rc=$? >> $w/soak_w4.txt
tm soak; pack
