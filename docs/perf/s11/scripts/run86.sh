#!/usr/bin/env bash
# GPU run 86 (session 11, 4 GPUs): A/B of `pag` (the one-pass copy-in two-shot's all-gather
# as pulls: the owner stores its reduced chunk into its own G only, and after the mid
# barrier every rank loads the other slices' chunks from their owners' G straight into its
# output; no remote stores in phase 2, no local copy-out) against the embedded kernels,
# alternated twice, worlds 4, 3, 2; odd sizes on pag.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r86; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r86.tgz" -C /tmp r86; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for n in 4 3 2; do
  for rep in 1 2; do
    for v in cur pag; do
      kd=$PWD/gpu/v/$v; [ $v = cur ] && kd=$PWD/gpu/v/none
      INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 150 $I launch -n $n -- $I bench --graph --algo auto,two-shot --sizes 1K,16K,64K,256K,512K,1M,2M --iters 8 --warmup 2 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
    tm ab$n-$rep; pack
  done
done
S=2,6,1022,4098,65538,262146,524290,1048576,1048578
for n in 4 3 2; do
  INC_KERNEL_DIR=$PWD/gpu/v/pag INC_CACHE_DIR=/tmp/c-pag timeout 90 $I launch -n $n -- $I bench --graph --algo auto,two-shot --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
tm odd; pack
