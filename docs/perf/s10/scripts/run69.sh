#!/usr/bin/env bash
# GPU run 69 (session 10, 4 GPUs): A/B of the one-pass copy-in two-shot (gpu/v/onep: when
# the grid covers every chunk, thread `mine` handles chunk `mine` only) against the
# embedded kernels, alternated twice, worlds 4 and 2; odd sizes on onep at 4, 3, 2.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r69; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r69.tgz" -C /tmp r69; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for n in 4 2; do
  SZ=1K,16K,64K,256K,512K,1M,2M
  for rep in 1 2; do
    for v in cur onep; do
      kd=$PWD/gpu/v/$v; [ $v = cur ] && kd=$PWD/gpu/v/none
      INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 120 $I launch -n $n -- $I bench --graph --algo two-shot,auto --sizes $SZ --iters 8 --warmup 2 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
  done
  tm ab_w$n; pack
done
S=2,6,1022,4098,65538,262146,1048578,1048576,2097154
for n in 4 3 2; do
  INC_KERNEL_DIR=$PWD/gpu/v/onep INC_CACHE_DIR=/tmp/c-onep timeout 90 $I launch -n $n -- $I bench --graph --algo two-shot,auto --dtype f32 --sizes 4,12,1020,4100,65540,262148,1048560,1048576,2097156 --iters 2 --warmup 1 > $w/odd_f32_w$n.txt 2>&1; echo rc=$? >> $w/odd_f32_w$n.txt
  INC_KERNEL_DIR=$PWD/gpu/v/onep INC_CACHE_DIR=/tmp/c-onep timeout 90 $I launch -n $n -- $I bench --graph --algo two-shot,auto --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
tm odd; pack
