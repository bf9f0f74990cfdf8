#!/usr/bin/env bash
# GPU run 58 (session 9, 4 GPUs): (1) per-step times of the copy-in one-shot and two-shot
# (tsteps variant: globaltimer + clock64 marks, device printf, one call in 256); (2) A/B of
# the fold helper (commit 6362ab7, first GPU run) against the kernels before it (prefold),
# alternated twice; (3) correctness of the fold-helper kernels: odd sizes at 4 and 3, soak.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r58; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
pack() { tar czf "$out/r58.tgz" -C /tmp r58; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for n in 4 2; do
  INC_KERNEL_DIR=$PWD/gpu/v/tsteps INC_CACHE_DIR=/tmp/c-ts timeout 120 $I launch -n $n -- $I bench --graph --graph-calls 50 --algo one-shot,two-shot --sizes 1K,64K,256K,1M,4M --iters 40 --warmup 2 > $w/ts_w$n.txt 2>&1; echo rc=$? >> $w/ts_w$n.txt
done
tm tsteps; pack
SZ=256K,1M,4M,16M,64M
for rep in 1 2; do
  for v in prefold cur; do
    kd=$PWD/gpu/v/$v; [ $v = cur ] && kd=$PWD/gpu/v/none
    INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 120 $I launch -n 4 -- $I bench --graph --algo one-shot,two-shot,zero-copy --sizes $SZ --iters 8 --warmup 2 > $w/ab_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_${v}_$rep.txt
  done
done
tm ab; pack
S=2,6,1022,65538,262146,524290,1048578,4194306,16777218
for n in 4 3; do
  timeout 90 $I launch -n $n -- $I bench --graph --algo auto,one-shot,two-shot,zero-copy --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
tm odd; pack
timeout 60 $I launch -n 4 -- $I soak --calls 300000 --time-limit 25 > $w/soak_w4.txt 2>&1; echo rc=$? >> $w/soak_w4.txt
tm soak; pack
