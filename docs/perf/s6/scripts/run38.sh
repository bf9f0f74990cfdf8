#!/usr/bin/env bash
# GPU run 38 (session 6, 2 GPUs): how much the number of pieces costs the copy-in two-shot
# at 1 GB: halves of 64 MiB (33 pieces), 128 MiB (17), 256 MiB (9), 1 GiB (1), NCCL beside.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r38; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
i=0
for h in 64M 128M 256M 1G 64M; do
  i=$((i+1))
  INC_BUFFER_BYTES=$h timeout 100 $I launch -n 2 -- $I bench --graph --algo two-shot,zero-copy --sizes 1G --iters 4 --warmup 1 --csv $w/h${i}_$h.csv > $w/h${i}_$h.txt 2>&1; echo "rc=$?" >> $w/h${i}_$h.txt
done
INC_BUFFER_BYTES=64M timeout 100 $I launch -n 2 -- $I bench --graph --algo two-shot --compare nccl --sizes 1G --iters 4 --warmup 1 > $w/nccl.txt 2>&1; echo "rc=$?" >> $w/nccl.txt
tar czf "$out/r38.tgz" -C /tmp r38
