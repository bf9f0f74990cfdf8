#!/usr/bin/env bash
# GPU run 74 (session 10, 4 GPUs): (a) piece size of the copy-in two-shot above the buffer:
# 64 MiB halves (32 MiB pieces) against 32 MiB and 16 MiB halves (16 and 8 MiB pieces),
# alternated twice, worlds 4 and 2; (b) A/B of the one-pass reduce storing into the peers in
# rotated order (gpu/v/rot) against the embedded kernels.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r74; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc
pack() { tar czf "$out/r74.tgz" -C /tmp r74; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
export INC_CACHE_DIR=/tmp/c74
for n in 4 2; do
  for rep in 1 2; do
    for hb in 64M 32M 16M; do
      INC_BUFFER_BYTES=$hb timeout 120 $I launch -n $n -- $I bench --graph --algo two-shot --sizes 16M,32M,64M,256M,1G --iters 6 --warmup 2 > $w/pc_w${n}_h${hb}_$rep.txt 2>&1; echo rc=$? >> $w/pc_w${n}_h${hb}_$rep.txt
    done
  done
  tm pc_w$n; pack
done
for rep in 1 2; do
  for v in cur rot; do
    kd=$PWD/gpu/v/$v; [ $v = cur ] && kd=$PWD/gpu/v/none
    INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 120 $I launch -n 4 -- $I bench --graph --algo two-shot --sizes 1K,64K,256K,512K,1M --iters 8 --warmup 2 > $w/ab_w4_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w4_${v}_$rep.txt
  done
done
tm ab; pack
