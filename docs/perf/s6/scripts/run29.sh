#!/usr/bin/env bash
# GPU run 29 (session 6, 2 GPUs): the deferred gather of the copy-in two-shot in pieces.
# 1. correctness: inc-comm cuda_gpu (gpu_two_shot_in_pieces + the rest), soak with 1 MiB
#    halves (every call above 512 KiB in pieces); 2. A/B, same machine: old binary (before)
#    vs new, copy-in two-shot 64M/256M/1G with the default 64 MiB halves, graph, ABAB; NCCL
#    beside in the new runs. Kernels from NVRTC (cubins not yet regenerated).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r29; mkdir -p "$out" $w
source gpu/env.sh
B=gpu/gt; I=gpu/bench/inc; O=gpu/old/inc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
# warm the NVRTC cache for the bench's instances (bf16 sum) with one small call each
timeout 120 $I launch -n 2 -- $I bench --graph --algo two-shot,one-shot,push-one-shot --sizes 1K --iters 1 --warmup 1 > $w/warm.txt 2>&1
(export INC_REQUIRE_GPU=1; for t in $B/bin/cuda_gpu-*; do timeout 280 "$t" --include-ignored --test-threads=1 --nocapture gpu_two_shot_in_pieces gpu_virtual_ranks gpu_graph gpu_views; done) > $w/cuda_gpu.txt 2>&1; echo "rc=$?" >> $w/cuda_gpu.txt
INC_BUFFER_BYTES=1M timeout 150 $I launch -n 2 -- $I soak --calls 100000 --max-bytes 4M --full-every 2 --time-limit 100 > $w/soak_pieces.txt 2>&1; echo "rc=$?" >> $w/soak_pieces.txt
A="--graph --algo two-shot --sizes 64M,256M,1G --iters 5 --warmup 1"
for r in 1 2; do
  INC_BUFFER_BYTES=64M timeout 120 $O launch -n 2 -- $O bench $A --csv $w/old_$r.csv > $w/old_$r.txt 2>&1; echo "rc=$?" >> $w/old_$r.txt
  INC_BUFFER_BYTES=64M timeout 120 $I launch -n 2 -- $I bench $A --compare nccl --csv $w/new_$r.csv > $w/new_$r.txt 2>&1; echo "rc=$?" >> $w/new_$r.txt
done
tar czf "$out/r29.tgz" -C /tmp r29
