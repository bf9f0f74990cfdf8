#!/usr/bin/env bash
# GPU run 34 (session 6): correctness of the final code: demo, the GPU test bundle, soak
# 10^5 calls with 1 MiB halves (two-shot calls above 512 KiB in pieces, each copying out the
# previous one) and 2000 calls up to 64 MiB with the default halves.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r34; mkdir -p "$out" $w
source gpu/env.sh
B=gpu/gt; I=gpu/bench/inc; n=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
timeout 120 $I launch -n $n -- $I demo --backend cuda > $w/demo.txt 2>&1; echo "rc=$?" >> $w/demo.txt
(cd $B && INC_CACHE_DIR=/tmp/c34-gt timeout 300 bash run.sh) > $w/gpu_test.txt 2>&1; echo "rc=$?" >> $w/gpu_test.txt
INC_BUFFER_BYTES=1M timeout 100 $I launch -n $n -- $I soak --calls 100000 --max-bytes 4M --full-every 2 --time-limit 80 > $w/soak_pieces.txt 2>&1; echo "rc=$?" >> $w/soak_pieces.txt
timeout 100 $I launch -n $n -- $I soak --calls 2000 --max-bytes 64M --full-every 4 --time-limit 80 > $w/soak_big.txt 2>&1; echo "rc=$?" >> $w/soak_big.txt
tar czf "$out/r34.tgz" -C /tmp r34
