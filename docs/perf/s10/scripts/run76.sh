#!/usr/bin/env bash
# GPU run 76 (session 10, 4 GPUs): A/B of rotated peer order in the loop-form two-shot's
# reduce stores and in the LL push (gpu/v/rot2) against the embedded kernels (one-pass
# two-shot with rotated reduce stores), alternated twice, worlds 4 and 2; odd sizes on rot2.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r76; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
pack() { tar czf "$out/r76.tgz" -C /tmp r76; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for n in 4 2; do
  for rep in 1 2; do
    for v in cur rot2; do
      kd=$PWD/gpu/v/$v; [ $v = cur ] && kd=$PWD/gpu/v/none
      INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 120 $I launch -n $n -- $I bench --graph --algo push-one-shot,two-shot --sizes 1K,16K,64K,128K,256K,2M,4M,16M --iters 8 --warmup 2 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
  done
  tm ab_w$n; pack
done
S=2,6,1022,4098,65538,262146,2097154,4194306
for n in 4 3; do
  INC_KERNEL_DIR=$PWD/gpu/v/rot2 INC_CACHE_DIR=/tmp/c-rot2 timeout 60 $I launch -n $n -- $I bench --graph --algo push-one-shot,two-shot --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
tm odd; pack
