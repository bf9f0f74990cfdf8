#!/usr/bin/env bash
# GPU run 51 (session 8, 4 GPUs): one-shot push form (variants/push1: every rank stores its
# input into R[me] of every peer, start barrier, local fold) vs the pull one-shot, and the
# two-shot beside them, worlds 4, 3, 2, 2 reps alternated; odd sizes at 3.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r51; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
pack() { tar czf "$out/r51.tgz" -C /tmp r51; }
t0=$(date +%s)
S=16K,64K,128K,256K,512K,1M,2M,4M,8M
for r in 1 2; do for n in 4 3 2; do for v in base push1; do
  kd=; [ $v != base ] && kd=$PWD/gpu/v/$v
  INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c51-$v timeout 90 $I launch -n $n -- $I bench --graph --algo one-shot,two-shot --sizes $S --iters 8 --warmup 2 > $w/${v}_w${n}_$r.txt 2>&1; echo rc=$? t=$(( $(date +%s) - t0 )) >> $w/${v}_w${n}_$r.txt
  pack
done; done; done
O=2,6,1022,65538,1048578,4194306
for n in 3 4; do
INC_KERNEL_DIR=$PWD/gpu/v/push1 INC_CACHE_DIR=/tmp/c51-push1 timeout 90 $I launch -n $n -- $I bench --graph --algo one-shot --sizes $O --iters 2 --warmup 1 > $w/odd_push1_w$n.txt 2>&1; echo rc=$? t=$(( $(date +%s) - t0 )) >> $w/odd_push1_w$n.txt
done
pack
