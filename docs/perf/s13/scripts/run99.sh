#!/usr/bin/env bash
# GPU run 99 (session 13, 2 GPUs): prototype of the one-shot in rounds at world 2
# (gpu/v/rnd*: copy-in one-shot, per-(block, round) flags, fold of round i while round i+1
# flies) against the embedded kernels (none), alternated, twice.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r99; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r99.tgz" -C /tmp r99; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for rep in 1 2; do
  for v in none rnd rnd8 rnda2 rnd2; do
    kd=$PWD/gpu/v/$v
    INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 100 $I launch -n 2 -- $I bench --graph --algo one-shot,two-shot,zero-copy --sizes 512K,1M,2M,4M,8M,16M,32M --iters 8 --warmup 2 > $w/ab_w2_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w2_${v}_$rep.txt
    tm $v-$rep
  done
  pack
done
S=2,6,122,1022,65538,1048578,4194306,16777218,33554430
INC_KERNEL_DIR=$PWD/gpu/v/rnd INC_CACHE_DIR=/tmp/c-rnd timeout 60 $I launch -n 2 -- $I bench --graph --algo one-shot --sizes $S --iters 2 --warmup 1 > $w/odd_w2.txt 2>&1; echo rc=$? >> $w/odd_w2.txt
tm odd; pack
