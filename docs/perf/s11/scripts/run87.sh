#!/usr/bin/env bash
# GPU run 87 (session 11): docs/perf/s11/ll128_litmus.cu on GPUs 0 -> 1 (writer on 0 into
# GPU 1's memory over NVLink, reader on 1), three times.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r87; mkdir -p "$out" $w
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
nvidia-smi topo -m > $w/topo.txt 2>&1
nvcc -O3 -arch=sm_90 docs/perf/s11/ll128_litmus.cu -o /tmp/ll128 > $w/build.txt 2>&1
for i in 1 2 3; do CUDA_VISIBLE_DEVICES=0,1 timeout 120 /tmp/ll128 >> $w/ll128.txt 2>&1; echo rc=$? >> $w/ll128.txt; done
CUDA_VISIBLE_DEVICES=2,3 timeout 120 /tmp/ll128 >> $w/ll128_gpus23.txt 2>&1; echo rc=$? >> $w/ll128_gpus23.txt
tar czf "$out/r87.tgz" -C /tmp r87
