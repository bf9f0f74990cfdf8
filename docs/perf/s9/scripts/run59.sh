#!/usr/bin/env bash
# GPU run 59 (session 9, 4 GPUs): A/B of the two-shots' scatter and gather with every
# peer's load in flight before the stores (gpu/v/new = kernels of this commit) against the
# embedded kernels (commit acbcc4c), alternated twice, worlds 4 and 2; per-step times of the
# new two-shot and of the LL kernel (tsnew); odd sizes and a soak on the new kernels.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r59; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
pack() { tar czf "$out/r59.tgz" -C /tmp r59; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for n in 4 2; do
  SZ=1K,16K,64K,256K,1M,2M,4M,16M,64M
  for rep in 1 2; do
    for v in cur new; do
      kd=$PWD/gpu/v/$v; [ $v = cur ] && kd=$PWD/gpu/v/none
      INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 120 $I launch -n $n -- $I bench --graph --algo auto,two-shot,zero-copy --sizes $SZ --iters 8 --warmup 2 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
  done
  tm ab_w$n; pack
done
INC_KERNEL_DIR=$PWD/gpu/v/tsnew INC_CACHE_DIR=/tmp/c-tsn timeout 120 $I launch -n 4 -- $I bench --graph --algo push-one-shot,two-shot --sizes 1K,16K,32K,64K,1M --iters 40 --warmup 2 > $w/ts_w4.txt 2>&1; echo rc=$? >> $w/ts_w4.txt
tm ts; pack
S=2,6,1022,65538,262146,524290,1048578,4194306,16777218,67108866
for n in 4 3 2; do
  INC_KERNEL_DIR=$PWD/gpu/v/new INC_CACHE_DIR=/tmp/c-new timeout 90 $I launch -n $n -- $I bench --graph --algo auto,two-shot,zero-copy --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
tm odd; pack
INC_KERNEL_DIR=$PWD/gpu/v/new INC_CACHE_DIR=/tmp/c-new timeout 60 $I launch -n 4 -- $I soak --calls 300000 --time-limit 25 > $w/soak_w4.txt 2>&1; echo rc=$? >> $w/soak_w4.txt
tm soak; pack
