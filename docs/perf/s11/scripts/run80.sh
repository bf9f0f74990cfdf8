#!/usr/bin/env bash
# GPU run 80 (session 11): docs/perf/s11/bw4.cu at W = 4, 3, 2: the order of the peers
# (all peers a chunk / peer after peer / a ring) for SM stores, TMA bulk copies and CE.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r80; mkdir -p "$out" $w
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
nvcc -O3 -arch=sm_90 docs/perf/s11/bw4.cu -o /tmp/bw4 > $w/bw4_build.txt 2>&1
timeout 60 /tmp/bw4 4 > $w/bw4_w4.txt 2>&1; echo rc=$? >> $w/bw4_w4.txt
CUDA_VISIBLE_DEVICES=0,1,2 timeout 60 /tmp/bw4 3 > $w/bw4_w3.txt 2>&1; echo rc=$? >> $w/bw4_w3.txt
CUDA_VISIBLE_DEVICES=0,1 timeout 60 /tmp/bw4 2 > $w/bw4_w2.txt 2>&1; echo rc=$? >> $w/bw4_w2.txt
tar czf "$out/r80.tgz" -C /tmp r80
