#!/usr/bin/env bash
# Prepared for the next session, NOT RUN (no device time left in session 10): A/B of the
# targeted barriers (variants/targeted.two_shot.cu.patch against commit 1b3ca4a's
# kernels/two_shot.cu; PROTOCOL.md "Targeted barriers", modelled by inc-sim's
# SimConfig::targeted_barriers) against the embedded kernels, alternated twice, worlds 4,
# 3 and 2, the copy-in two-shot from 1K to 16M; then odd sizes at 4/3/2 and a soak at 4 on
# the variant. Set up: patch -p0 a copy of kernels/two_shot.cu into gpu/v/targeted/, an
# empty gpu/v/none, the bench bundle in gpu/bench.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r78; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
pack() { tar czf "$out/r78.tgz" -C /tmp r78; }
for n in 4 3 2; do
  for rep in 1 2; do
    for v in cur targeted; do
      kd=$PWD/gpu/v/$v; [ $v = cur ] && kd=$PWD/gpu/v/none
      INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 120 $I launch -n $n -- $I bench --graph --algo two-shot,auto --sizes 1K,16K,64K,256K,512K,1M,2M,4M,16M --iters 8 --warmup 2 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
  done
  pack
done
S=2,6,1022,4098,65538,262146,1048576,1048578,2097154,4194306,67108866
for n in 4 3 2; do
  INC_KERNEL_DIR=$PWD/gpu/v/targeted INC_CACHE_DIR=/tmp/c-targeted timeout 90 $I launch -n $n -- $I bench --graph --algo two-shot,auto --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
INC_KERNEL_DIR=$PWD/gpu/v/targeted INC_CACHE_DIR=/tmp/c-targeted timeout 200 $I launch -n 4 -- $I soak --calls 1000000 --time-limit 150 > $w/soak_w4.txt 2>&1; echo rc=$? >> $w/soak_w4.txt
pack
