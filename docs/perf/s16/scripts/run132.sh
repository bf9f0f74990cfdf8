#!/usr/bin/env bash
# GPU run 132 (session 16, 2 GPUs, carry ["gpu"], gpu/bench built from eba167c): the tables
# at world 2 with every peer (run 41's script), a soak of 10^6 calls at world 2.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r132; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r132.tgz" -C /tmp r132; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
T=${T:-240} N=2 bash gpu/run41.sh; cp -r /tmp/r41-w2 $w/bench-w2; tm w2; pack
export INC_CACHE_DIR=/tmp/c41
timeout 60 $I launch -n 2 -- $I soak --calls 1000000 --time-limit 40 > $w/soak_w2.txt 2>&1; echo rc=$? >> $w/soak_w2.txt
tm soak; pack
tail -n 4 $w/soak_w2.txt; cat $w/times.txt
