#!/usr/bin/env bash
# GPU run 61 (session 9, 4 GPUs): A/B of the LL kernel whose header thread reloads the
# header with its data lines while it polls (gpu/v/hdr) against the embedded kernels,
# alternated twice, worlds 4 and 2, graph and eager; odd LL sizes on hdr.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r61; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
pack() { tar czf "$out/r61.tgz" -C /tmp r61; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for n in 4 2; do
  SZ=1K,2K,4K,8K,16K,32K,64K,128K,256K
  for rep in 1 2; do
    for v in cur hdr; do
      kd=$PWD/gpu/v/$v; [ $v = cur ] && kd=$PWD/gpu/v/none
      INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 120 $I launch -n $n -- $I bench --both --algo push-one-shot --sizes $SZ --iters 8 --warmup 2 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
  done
  tm ab_w$n; pack
done
S=2,6,1022,4098,65538,131074,262146
for n in 4 3 2; do
  INC_KERNEL_DIR=$PWD/gpu/v/hdr INC_CACHE_DIR=/tmp/c-hdr timeout 90 $I launch -n $n -- $I bench --graph --algo auto,push-one-shot --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
tm odd; pack
