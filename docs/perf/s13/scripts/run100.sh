#!/usr/bin/env bash
# GPU run 100 (session 13, 2 GPUs): where the zero-copy two-shot's fixed ~6 us goes at
# world 2 (gpu/v/zv1: no end barrier, zv2: no mid barrier — timing only, zv0: the same
# kernel refactored, control) and zv (= zv3): scatter and reduce-store in two halves, the
# first half's flag released while the second half is stored. Plus INC_BLOCKS 64/96.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r100; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r100.tgz" -C /tmp r100; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for rep in 1 2; do
  for v in none zv0 zv1 zv2 zv b64 b96; do
    kd=$PWD/gpu/v/$v; bl=""
    case $v in b64) kd=$PWD/gpu/v/none; bl=64;; b96) kd=$PWD/gpu/v/none; bl=96;; esac
    ( [ -n "$bl" ] && export INC_BLOCKS=$bl; INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 100 $I launch -n 2 -- $I bench --graph --algo zero-copy --sizes 4M,8M,16M,32M,64M --iters 8 --warmup 2 > $w/ab_w2_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w2_${v}_$rep.txt )
    tm $v-$rep
  done
  pack
done
S=2,6,122,1022,65538,1048578,4194306,16777218,33554430
INC_KERNEL_DIR=$PWD/gpu/v/zv INC_CACHE_DIR=/tmp/c-zv timeout 60 $I launch -n 2 -- $I bench --graph --algo zero-copy --sizes $S --iters 2 --warmup 1 > $w/odd_w2.txt 2>&1; echo rc=$? >> $w/odd_w2.txt
tm odd; pack
