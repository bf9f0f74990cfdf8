#!/usr/bin/env bash
# GPU run 98 (session 12, 2 of 4 GPUs): auto at world 2 with the lines window (two-shot
# from 384 KiB to the lines capacity), beside one-shot and two-shot, twice; odd sizes.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r98; mkdir -p "$out" $w
source gpu/env.sh
export INC_BUFFER_BYTES=64M INC_CACHE_DIR=/tmp/c98
I=gpu/bench/inc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
for rep in 1 2; do
  timeout 60 $I launch -n 2 -- $I bench --graph --algo auto,one-shot,two-shot,zero-copy --sizes 256K,384K,512K,1M,2M,3M,4M,8M --iters 8 --warmup 2 > $w/ab_w2_new_$rep.txt 2>&1; echo rc=$? >> $w/ab_w2_new_$rep.txt
done
timeout 60 $I launch -n 2 -- $I bench --graph --algo auto,zero-copy --sizes 393218,524290,1048578,2097154,3932162 --iters 2 --warmup 1 > $w/odd_w2.txt 2>&1; echo rc=$? >> $w/odd_w2.txt
tar czf "$out/r98.tgz" -C /tmp r98
