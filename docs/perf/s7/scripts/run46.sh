#!/usr/bin/env bash
# GPU run 46 (session 7, 4 GPUs): copy-in two-shot with smaller pieces (a call cut in pieces
# of at most ~32/16/8/4 MiB, emulated by parity halves of 64/32/16/8 MiB: each piece but
# the last has its copy-out hidden behind the next piece's transfer) at worlds 4 and 2, and
# copy blocks 1 in 4 (instead of 1 in 8) at world 4; NCCL in the same run.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r46; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_CACHE_DIR=/tmp/c46
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
S=2M,4M,8M,16M,32M,64M,256M,1G
pack() { tar czf "$out/r46.tgz" -C /tmp r46; }
for n in 4 2; do
  for b in 64M 32M 16M 8M; do
    cmp=; [ $b = 64M ] && cmp="--compare nccl"
    INC_BUFFER_BYTES=$b timeout 60 $I launch -n $n -- $I bench --graph --algo two-shot $cmp --sizes $S --iters 6 --warmup 2 > $w/b${b}_w$n.txt 2>&1; echo rc=$? >> $w/b${b}_w$n.txt
    pack
  done
done
INC_KERNEL_DIR=$PWD/gpu/v/div4 INC_CACHE_DIR=/tmp/c46-div4 INC_BUFFER_BYTES=64M timeout 60 $I launch -n 4 -- $I bench --graph --algo two-shot --sizes $S --iters 6 --warmup 2 > $w/div4_w4.txt 2>&1; echo rc=$? >> $w/div4_w4.txt
pack
