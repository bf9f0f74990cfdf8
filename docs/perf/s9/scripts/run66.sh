#!/usr/bin/env bash
# GPU run 66 (session 9, 4 GPUs): A/B of the bf16 pack as one cvt.rn.bf16x2.f32 per two
# lanes (gpu/v/cvt) against the embedded kernels (b75c428: integer rounding per lane),
# alternated twice, graph, worlds 4 and 2, auto and zero-copy; odd sizes on cvt at 4 and 2.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r66; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
pack() { tar czf "$out/r66.tgz" -C /tmp r66; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for n in 4 2; do
  SZ=1K,16K,32K,64K,256K,512K,1M,4M,16M,64M
  for rep in 1 2; do
    for v in cur cvt; do
      kd=$PWD/gpu/v/$v; [ $v = cur ] && kd=$PWD/gpu/v/none
      INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 120 $I launch -n $n -- $I bench --graph --algo auto,zero-copy --sizes $SZ --iters 8 --warmup 2 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
  done
  tm ab_w$n; pack
done
S=2,6,1022,4098,65538,262146,1048578,4194306,67108866
for n in 4 2; do
  INC_KERNEL_DIR=$PWD/gpu/v/cvt INC_CACHE_DIR=/tmp/c-cvt timeout 90 $I launch -n $n -- $I bench --graph --algo auto,push-one-shot,one-shot,zero-copy,two-shot --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
tm odd; pack
