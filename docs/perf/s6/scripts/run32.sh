#!/usr/bin/env bash
# GPU run 32 (session 6, 2 GPUs): copy-in two-shot in pieces, ReduceSlice one chunk per
# iteration (as the zero-copy push form's ReduceStore) vs two, copy blocks 1 in 8 / 16;
# zero-copy beside for reference; 64M/256M/1G.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r32; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
A="--graph --algo two-shot,zero-copy --sizes 64M,256M,1G --iters 5 --warmup 1"
b() { local tag=$1; shift
  env "$@" INC_BUFFER_BYTES=64M timeout 100 $I launch -n 2 -- $I bench $A --csv $w/$tag.csv > $w/$tag.txt 2>&1; echo "rc=$?" >> $w/$tag.txt; }
for r in 1 2; do
  b base$r X=1
  b single$r INC_KERNEL_DIR=$PWD/gpu/exp/s6/single
  b single16_$r INC_KERNEL_DIR=$PWD/gpu/exp/s6/single16
done
tar czf "$out/r32.tgz" -C /tmp r32
