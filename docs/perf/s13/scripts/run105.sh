#!/usr/bin/env bash
# GPU run 105 (session 13, 2 GPUs): the copy-in two-shot in pieces at world 2 (64M-1G):
# copy blocks one in 4 (cdiv4) or one in 16 (cdiv16) of the grid instead of one in 8
# (embedded), alternated, twice.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r105; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r105.tgz" -C /tmp r105; }
for rep in 1 2; do
  for v in none cdiv4 cdiv16; do
    INC_KERNEL_DIR=$PWD/gpu/v/$v INC_CACHE_DIR=/tmp/c-$v timeout 150 $I launch -n 2 -- $I bench --graph --algo two-shot --sizes 64M,128M,256M,1G --iters 6 --warmup 2 > $w/ab_w2_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w2_${v}_$rep.txt
  done
  pack
done
