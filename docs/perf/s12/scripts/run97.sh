#!/usr/bin/env bash
# GPU run 97 (session 12, 4 GPUs): inc-comm's GPU tests after the fix that lets a zero-copy
# call that fits the lines region pass the parity halves' capacity check (run 96 failed
# gpu_symmetric_tensors_zero_copy: 3 MiB at world 2 with 2 MiB halves, TooLarge).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r97; mkdir -p "$out" $w
source gpu/env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
(cd gpu/gt && export INC_REQUIRE_GPU=1 INC_CACHE_DIR=/tmp/c97 && for b in bin/cuda_gpu-*; do timeout 200 ./$b --include-ignored --test-threads=1 --nocapture; done) > $w/cuda_gpu.txt 2>&1; echo rc=$? >> $w/cuda_gpu.txt
tar czf "$out/r97.tgz" -C /tmp r97
