#!/usr/bin/env bash
# GPU run 92 (session 12, 4 GPUs): the final code (the two-shot of lines; auto's one-shot
# limits 128 KiB at world 4, 256 KiB at world 3): the GPU test of the lines form, then the
# tables at worlds 4 and 2 (run 41's script: every algorithm, NCCL, NCCL-symm and the
# torch script on the same sizes).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r92; mkdir -p "$out" $w
source gpu/env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r92.tgz" -C /tmp r92; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
(cd gpu/gt && export INC_REQUIRE_GPU=1 INC_CACHE_DIR=/tmp/c92-gt && for b in bin/gpu-*; do timeout 120 ./$b --include-ignored --test-threads=1 --nocapture gpu_two_shot_of_lines gpu_calls_cross_the_epoch_wrap; done) > $w/gpu_lines_test.txt 2>&1; echo rc=$? >> $w/gpu_lines_test.txt
tm gt; pack
T=200 N=4 bash gpu/run41.sh; cp -r /tmp/r41-w4 $w/bench-w4; tm w4; pack
T=150 N=2 bash gpu/run41.sh; cp -r /tmp/r41-w2 $w/bench-w2; tm w2; pack
