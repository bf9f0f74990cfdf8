#!/usr/bin/env bash
# GPU run 28 (session 6, 2 GPUs): bandwidth ceilings (gpu/exp/bw.cu: SM remote stores and
# pulls by grid/threads/unroll, CE peer copies, local CE copy alone and beside stores);
# the real kernels' grid sensitivity (INC_BLOCKS) for zero-copy and copy-in at 4-64 MiB;
# copy-in with the default 64 MiB halves at 256M/1G beside NCCL.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r28; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
nvcc -O3 -arch=sm_90 gpu/exp/bw.cu -o /tmp/bw > $w/bw_build.txt 2>&1 && timeout 120 /tmp/bw > $w/bw.txt 2>&1; echo "rc=$?" >> $w/bw.txt
A="--graph --algo zero-copy,two-shot --sizes 4M,16M,64M --iters 8 --warmup 2"
for bl in 128 96 64 128; do
  INC_BUFFER_BYTES=128M INC_BLOCKS=$bl timeout 100 $I launch -n 2 -- $I bench $A --csv $w/bl$bl.csv > $w/bl$bl.txt 2>&1; echo "rc=$?" >> $w/bl$bl.txt
done
INC_BUFFER_BYTES=64M timeout 150 $I launch -n 2 -- $I bench --graph --compare nccl --algo auto,zero-copy --sizes 256M,1G --iters 4 --warmup 1 --csv $w/big.csv > $w/big.txt 2>&1; echo "rc=$?" >> $w/big.txt
tar czf "$out/r28.tgz" -C /tmp r28
