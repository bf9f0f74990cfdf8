#!/usr/bin/env bash
# GPU run 54 (session 8, 4 GPUs): the GPU test bundle of the final code (after the matrix
# test's sizes follow the one-shot's capacity), and a grid sweep (INC_BLOCKS 16/32/64 vs
# the default) of one-shot and two-shot at 256K-4M, worlds 4 and 2.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r54; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_CACHE_DIR=/tmp/c54 INC_BUFFER_BYTES=64M
pack() { tar czf "$out/r54.tgz" -C /tmp r54; }
t0=$(date +%s)
S=256K,512K,1M,2M,4M
for n in 4 2; do for b in def 16 32 64 def2; do
  case $b in def*) unset INC_BLOCKS ;; *) export INC_BLOCKS=$b ;; esac
  timeout 60 $I launch -n $n -- $I bench --graph --algo one-shot,two-shot --sizes $S --iters 8 --warmup 2 > $w/b${b}_w$n.txt 2>&1; echo rc=$? t=$(( $(date +%s) - t0 )) >> $w/b${b}_w$n.txt
done; done
unset INC_BLOCKS
pack
(cd gpu/gt && INC_CACHE_DIR=/tmp/c54-gt timeout 240 bash run.sh) > $w/gpu_test.txt 2>&1; echo rc=$? t=$(( $(date +%s) - t0 )) >> $w/gpu_test.txt
pack
