#!/usr/bin/env bash
# GPU run 94 (session 12, 4 GPUs): the final code (the two-shot of lines; auto's one-shot
# limits 128 KiB at world 4, 256 KiB at world 3): the GPU test of the lines form, then the
# tables at worlds 4 and 2 (run 41's script: every algorithm, NCCL, NCCL-symm and the
# torch script on the same sizes).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r94; mkdir -p "$out" $w
source gpu/env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r94.tgz" -C /tmp r94; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
T=200 N=4 bash gpu/run41.sh; cp -r /tmp/r41-w4 $w/bench-w4; tm w4; pack
T=150 N=2 bash gpu/run41.sh; cp -r /tmp/r41-w2 $w/bench-w2; tm w2; pack
