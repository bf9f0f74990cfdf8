#!/usr/bin/env bash
# GPU run 60 (session 9, 4 GPUs): is the copy-in two-shot's fixed cost partly code size?
# A/B/C alternated twice: embedded kernels (cur) / nozc (one_shot.cu and two_shot.cu with
# the zero-copy forms compiled out: half the two-shot's code) / lock2 (nozc + the scatter
# and gather of small calls with every slice's load in flight first, compact); worlds 4, 2.
# Per-step times of the LL kernel (tsnew, push-one-shot only). Odd sizes on lock2.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r60; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
pack() { tar czf "$out/r60.tgz" -C /tmp r60; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for n in 4 2; do
  SZ=1K,64K,256K,512K,1M,2M,4M,16M
  [ $n = 2 ] && SZ=1K,1M,4M,8M,16M
  for rep in 1 2; do
    for v in cur nozc lock2; do
      kd=$PWD/gpu/v/$v; [ $v = cur ] && kd=$PWD/gpu/v/none
      INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 120 $I launch -n $n -- $I bench --graph --algo one-shot,two-shot --sizes $SZ --iters 8 --warmup 2 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
  done
  tm ab_w$n; pack
done
INC_KERNEL_DIR=$PWD/gpu/v/tsnew INC_CACHE_DIR=/tmp/c-tsn timeout 120 $I launch -n 4 -- $I bench --graph --algo push-one-shot --sizes 1K,8K,16K,32K,64K --iters 40 --warmup 2 > $w/ts_w4.txt 2>&1; echo rc=$? >> $w/ts_w4.txt
tm ts; pack
S=2,6,1022,65538,262146,524290,1048578,4194306,16777218
for n in 4 3 2; do
  INC_KERNEL_DIR=$PWD/gpu/v/lock2 INC_CACHE_DIR=/tmp/c-lock2 timeout 90 $I launch -n $n -- $I bench --graph --algo auto,two-shot --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
tm odd; pack
