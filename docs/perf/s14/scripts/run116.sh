#!/usr/bin/env bash
# GPU run 116 (session 14, 4-GPU machine, world 3 on GPUs 0-2): the final build's tables at
# world 3 with every peer (run 41's script).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r116; mkdir -p "$out" $w
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
t0=$(date +%s)
T=${T:-300} N=3 bash gpu/run41.sh; cp -r /tmp/r41-w3 $w/bench-w3
echo "w3 t=$(( $(date +%s) - t0 ))" >> $w/times.txt
tar czf "$out/r116.tgz" -C /tmp r116
