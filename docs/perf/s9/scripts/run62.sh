#!/usr/bin/env bash
# GPU run 62 (session 9, 4 GPUs): final tables (the code of commit b75c428: LL header
# reloaded while polling) at worlds 4 and 2 (GPUs 0-1), every algorithm, NCCL, NCCL-symm
# and the torch script on the same sizes (run 41's script), default 64 MiB halves.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r62; mkdir -p "$out" $w
source gpu/env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r62.tgz" -C /tmp r62; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
T=300 N=4 bash gpu/run41.sh; cp -r /tmp/r41-w4 $w/bench-w4; tm w4; pack
T=230 N=2 bash gpu/run41.sh; cp -r /tmp/r41-w2 $w/bench-w2; tm w2; pack
