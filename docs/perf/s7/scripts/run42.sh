#!/usr/bin/env bash
# GPU run 42 (session 7, 4 GPUs): copy-in two-shot with the gather as pulls straight into the
# output (no copy-out, no copy blocks) vs the current push gather + copy-out, A/B in one
# command at worlds 4 and 2; every element checked by the bench. Plus LL latency at 2/3/4.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r42; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
S=256K,512K,1M,2M,4M,8M,16M,32M,64M,256M,1G
pack() { tar czf "$out/r42.tgz" -C /tmp r42; }
for n in 4 2; do
  for v in base pullA pullB; do
    kd=; [ $v != base ] && kd=$PWD/gpu/v/$v
    cmp=; [ $v = base ] && cmp="--compare nccl"
    INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c42-$v timeout 100 $I launch -n $n -- $I bench --graph --algo two-shot $cmp --sizes $S --iters 8 --warmup 2 > $w/${v}_w$n.txt 2>&1; echo rc=$? >> $w/${v}_w$n.txt
    pack
  done
done
O=2,6,1022,65538,1048578,4194306,67108866,100000002,1073741822
for n in 4 3; do
  INC_KERNEL_DIR=$PWD/gpu/v/pullB INC_CACHE_DIR=/tmp/c42-pullB timeout 90 $I launch -n $n -- $I bench --graph --algo two-shot --sizes $O --iters 2 --warmup 1 > $w/odd_pullB_w$n.txt 2>&1; echo rc=$? >> $w/odd_pullB_w$n.txt
done
for n in 2 3 4; do
  timeout 60 $I launch -n $n -- $I bench --graph --algo push-one-shot --compare nccl --sizes 1K,4K,16K,32K,64K --iters 8 --warmup 2 > $w/ll_w$n.txt 2>&1; echo rc=$? >> $w/ll_w$n.txt
done
pack
