#!/usr/bin/env bash
# GPU run 23 (session 5, 2 GPUs): large calls with the DEFAULT 64 MiB parity halves (copy-in
# two-shot and zero-copy push form in pieces; NCCL beside), and a soak of 10^6 calls after
# the per-block epoch change.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r23; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
INC_BUFFER_BYTES=64M timeout 200 $I launch -n 2 -- $I bench --graph --compare nccl --algo auto,zero-copy --sizes 16M,64M,128M,256M,1G --iters 5 --warmup 1 --csv $w/default_buffer.csv > $w/default_buffer.txt 2>&1; echo "rc=$?" >> $w/default_buffer.txt
timeout 280 $I launch -n 2 -- $I soak --calls 1000000 --full-every 4 --time-limit 240 > $w/soak_1e6.txt 2>&1; echo "rc=$?" >> $w/soak_1e6.txt
tar czf "$out/r23.tgz" -C /tmp r23
