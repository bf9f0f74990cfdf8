#!/usr/bin/env bash
# GPU run 24 (session 5, 2 GPUs): zero-copy push pieces of the whole receive area
# (floor(H/W)*W chunks): inc-comm cuda_gpu tests (symmetric tensors in pieces), inc-cuda's
# zero-copy test, default-buffer large sizes beside NCCL, soak with 1 MiB halves (pieces).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r24; mkdir -p "$out" $w
source gpu/env.sh
B=gpu/gt; I=gpu/bench/inc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
export INC_REQUIRE_GPU=1
(for t in $B/bin/cuda_gpu-*; do timeout 200 "$t" --include-ignored --test-threads=1; done) > $w/cuda_gpu.txt 2>&1; echo "rc=$?" >> $w/cuda_gpu.txt
(for t in $B/bin/gpu-*; do timeout 200 "$t" --include-ignored --test-threads=1 zero_copy; done) > $w/gpu_zc.txt 2>&1; echo "rc=$?" >> $w/gpu_zc.txt
INC_BUFFER_BYTES=64M timeout 200 $I launch -n 2 -- $I bench --graph --compare nccl --algo auto,zero-copy --sizes 16M,64M,128M,256M,1G --iters 5 --warmup 1 --csv $w/default_buffer.csv > $w/default_buffer.txt 2>&1; echo "rc=$?" >> $w/default_buffer.txt
INC_BUFFER_BYTES=1M timeout 200 $I launch -n 2 -- $I soak --calls 100000 --max-bytes 4M --full-every 2 --time-limit 150 > $w/soak_pieces.txt 2>&1; echo "rc=$?" >> $w/soak_pieces.txt
tar czf "$out/r24.tgz" -C /tmp r24
