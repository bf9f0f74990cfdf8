#!/usr/bin/env bash
# GPU run 83 (session 11, 4 GPUs): (1) bw4.cu with the block-rotated peer order at W = 4, 3;
# (2) A/B of `brot` (every rank loop over peers starts, for block b, at peer r+1+(b mod
# (W-1)): zero-copy forms, copy-in two-shot, one-shot, LL) against the embedded kernels
# (cfa76ca), alternated twice, worlds 4 and 3 (world 2: one peer, the same order);
# odd sizes at 4 and 3 on brot; a soak at 4 on brot.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r83; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r83.tgz" -C /tmp r83; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
nvcc -O3 -arch=sm_90 docs/perf/s11/bw4.cu -o /tmp/bw4 > $w/bw4_build.txt 2>&1
timeout 60 /tmp/bw4 4 > $w/bw4_w4.txt 2>&1; echo rc=$? >> $w/bw4_w4.txt
CUDA_VISIBLE_DEVICES=0,1,2 timeout 60 /tmp/bw4 3 > $w/bw4_w3.txt 2>&1; echo rc=$? >> $w/bw4_w3.txt
tm bw4; pack
for n in 4 3; do
  for rep in 1 2; do
    for v in cur brot; do
      kd=$PWD/gpu/v/$v; [ $v = cur ] && kd=$PWD/gpu/v/none
      INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 150 $I launch -n $n -- $I bench --graph --algo auto,push-one-shot,one-shot,two-shot,zero-copy --sizes 16K,64K,256K,1M,2M,4M,16M,64M --iters 8 --warmup 2 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
    tm ab$n-$rep; pack
  done
done
S=2,6,1022,4098,65538,262146,1048576,1048578,2097154,4194306,67108866
for n in 4 3; do
  INC_KERNEL_DIR=$PWD/gpu/v/brot INC_CACHE_DIR=/tmp/c-brot timeout 90 $I launch -n $n -- $I bench --graph --algo auto,push-one-shot,one-shot,zero-copy,two-shot --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
tm odd; pack
INC_KERNEL_DIR=$PWD/gpu/v/brot INC_CACHE_DIR=/tmp/c-brot timeout 90 $I launch -n 4 -- $I soak --calls 1000000 --time-limit 40 > $w/soak_w4.txt 2>&1; echo rc=$? >> $w/soak_w4.txt
tm soak; pack
