#!/usr/bin/env bash
# GPU run 31 (session 6, 2 GPUs): where run 30's deferred gather loses its gain at 1 GB:
# copy blocks 1 in 4 (default) vs 1 in 8 / 16 / 2, and with the copy left out (nocopy:
# a timing only, its results are wrong), through INC_KERNEL_DIR; copy-in two-shot 256M/1G.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r31; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
A="--graph --algo two-shot --sizes 256M,1G --iters 5 --warmup 1"
b() { local tag=$1; shift
  env "$@" INC_BUFFER_BYTES=64M timeout 100 $I launch -n 2 -- $I bench $A --csv $w/$tag.csv > $w/$tag.txt 2>&1; echo "rc=$?" >> $w/$tag.txt; }
b base1 X=1
for v in div8 div16 div2 nocopy; do b $v INC_KERNEL_DIR=$PWD/gpu/exp/s6/$v; done
b base2 X=1
tar czf "$out/r31.tgz" -C /tmp r31
