#!/usr/bin/env bash
# GPU run 78 (session 11, 4 GPUs): (1) bandwidth ceilings beyond SM stores (docs/perf/s11/bw3.cu:
# SM v4 stores, TMA bulk copies, copy-engine peer copies, and SM + CE together) at W = 4 and
# 2; (2) A/B of the targeted barriers (gpu/v/targeted = session 10's
# variants/targeted.two_shot.cu.patch) against the embedded kernels, alternated twice,
# worlds 4, 3, 2; odd sizes at 4/3/2 and a soak at 4 on the variant.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r78; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r78.tgz" -C /tmp r78; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
nvcc -O3 -arch=sm_90 docs/perf/s11/bw3.cu -o /tmp/bw3 > $w/bw3_build.txt 2>&1
timeout 60 /tmp/bw3 4 > $w/bw3_w4.txt 2>&1; echo rc=$? >> $w/bw3_w4.txt
CUDA_VISIBLE_DEVICES=0,1 timeout 60 /tmp/bw3 2 > $w/bw3_w2.txt 2>&1; echo rc=$? >> $w/bw3_w2.txt
tm bw3; pack
for n in 4 3 2; do
  for rep in 1 2; do
    for v in cur targeted; do
      kd=$PWD/gpu/v/$v; [ $v = cur ] && kd=$PWD/gpu/v/none
      INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 120 $I launch -n $n -- $I bench --graph --algo two-shot,auto --sizes 1K,16K,64K,256K,512K,1M,2M,4M,16M --iters 8 --warmup 2 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
  done
  tm ab$n; pack
done
S=2,6,1022,4098,65538,262146,1048576,1048578,2097154,4194306,67108866
for n in 4 3 2; do
  INC_KERNEL_DIR=$PWD/gpu/v/targeted INC_CACHE_DIR=/tmp/c-targeted timeout 90 $I launch -n $n -- $I bench --graph --algo two-shot,auto --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
INC_KERNEL_DIR=$PWD/gpu/v/targeted INC_CACHE_DIR=/tmp/c-targeted timeout 70 $I launch -n 4 -- $I soak --calls 1000000 --time-limit 45 > $w/soak_w4.txt 2>&1; echo rc=$? >> $w/soak_w4.txt
tm odd_soak; pack
