#!/usr/bin/env bash
# GPU run 64 (session 9, 4 GPUs): A/B/C of the LL poll with a second stream of polls issued
# INC_LL_GAP cycles after the first (llp2: 200, llp4: 400) against the embedded kernels
# (b75c428), alternated twice, graph, worlds 4 and 2; odd LL sizes on llp2 and llp4.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r64; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
pack() { tar czf "$out/r64.tgz" -C /tmp r64; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for n in 4 2; do
  SZ=1K,4K,8K,16K,32K,64K,128K
  for rep in 1 2; do
    for v in cur llp2 llp4; do
      kd=$PWD/gpu/v/$v; [ $v = cur ] && kd=$PWD/gpu/v/none
      INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 120 $I launch -n $n -- $I bench --graph --algo push-one-shot --sizes $SZ --iters 8 --warmup 2 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
  done
  tm ab_w$n; pack
done
S=2,6,1022,4098,65538,131074
for v in llp2 llp4; do
  INC_KERNEL_DIR=$PWD/gpu/v/$v INC_CACHE_DIR=/tmp/c-$v timeout 90 $I launch -n 4 -- $I bench --graph --algo push-one-shot --sizes $S --iters 2 --warmup 1 > $w/odd_w4_$v.txt 2>&1; echo rc=$? >> $w/odd_w4_$v.txt
done
tm odd; pack
