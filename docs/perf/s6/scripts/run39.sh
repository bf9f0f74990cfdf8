#!/usr/bin/env bash
# GPU run 39 (session 6, 1 GPU): gpu_two_shot_in_pieces with its new cases, grids of 4 blocks
# (no copy block: every block copies out the previous piece itself before its mid flag)
# and 12 (one copy block), beside the rest (W = 2, 3, 4 virtual ranks).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r39; mkdir -p "$out" $w
source gpu/env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
export INC_REQUIRE_GPU=1 INC_CACHE_DIR=/tmp/c39
(for t in gpu/gt/bin/cuda_gpu-*; do timeout 300 "$t" --include-ignored --test-threads=1 --nocapture gpu_two_shot_in_pieces; done) > $w/pieces.txt 2>&1; echo "rc=$?" >> $w/pieces.txt
tar czf "$out/r39.tgz" -C /tmp r39
