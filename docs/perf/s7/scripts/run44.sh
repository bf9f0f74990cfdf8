#!/usr/bin/env bash
# GPU run 44 (session 7, 4 GPUs): the final code (LL polls every peer at once; thresholds
# per world 3 and 4): correctness (demos at 4/3/2, GPU test bundle with the regenerated
# CUBINs, soak 10^6 calls at world 4, pieces soak at 3) then the world-4 tables (run 41's
# script: every algorithm, NCCL, NCCL-symm, the torch script on the same sizes).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r44; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_CACHE_DIR=/tmp/c44
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r44.tgz" -C /tmp r44; }
for n in 4 3 2; do
  timeout 60 $I launch -n $n -- $I demo --backend cuda > $w/demo_w$n.txt 2>&1; echo rc=$? >> $w/demo_w$n.txt
done
timeout 100 $I launch -n 4 -- $I soak --calls 1000000 --time-limit 80 > $w/soak_w4.txt 2>&1; echo rc=$? >> $w/soak_w4.txt
INC_BUFFER_BYTES=1M timeout 60 $I launch -n 3 -- $I soak --calls 100000 --max-bytes 4M --full-every 2 --time-limit 45 > $w/soak_pieces_w3.txt 2>&1; echo rc=$? >> $w/soak_pieces_w3.txt
pack
(cd gpu/gt && INC_CACHE_DIR=/tmp/c44-gt timeout 150 bash run.sh) > $w/gpu_test.txt 2>&1; echo rc=$? >> $w/gpu_test.txt
pack
T=200 bash gpu/run41.sh; cp -r /tmp/r41-w4 $w/bench-w4
pack
