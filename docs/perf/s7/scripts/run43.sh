#!/usr/bin/env bash
# GPU run 43 (session 7, 4 GPUs): LL (push one-shot) waiting for every peer's line at once
# (llpoll) vs in rank order (base), A/B/A/B at worlds 4, 3, 2, graph; the bench checks every
# element; a soak with llpoll at world 4. Plus one-shot vs two-shot at world 3 (thresholds).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r43; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
S=1K,2K,4K,8K,16K,32K,64K,128K,256K
pack() { tar czf "$out/r43.tgz" -C /tmp r43; }
for n in 4 3 2; do
  for rep in 1 2; do
    for v in base llpoll; do
      INC_KERNEL_DIR=$PWD/gpu/v/$v INC_CACHE_DIR=/tmp/c43-$v timeout 60 $I launch -n $n -- $I bench --graph --algo push-one-shot --sizes $S --iters 10 --warmup 2 > $w/${v}_w${n}_$rep.txt 2>&1; echo rc=$? >> $w/${v}_w${n}_$rep.txt
    done
  done
  pack
done
INC_KERNEL_DIR=$PWD/gpu/v/llpoll INC_CACHE_DIR=/tmp/c43-llpoll timeout 60 $I launch -n 4 -- $I soak --calls 200000 --max-bytes 256K --time-limit 45 > $w/soak_llpoll_w4.txt 2>&1; echo rc=$? >> $w/soak_llpoll_w4.txt
timeout 60 $I launch -n 3 -- $I bench --graph --algo push-one-shot,one-shot,two-shot,zero-copy --compare nccl --sizes 32K,64K,128K,256K,512K,1M,2M --iters 8 --warmup 2 > $w/thr_w3.txt 2>&1; echo rc=$? >> $w/thr_w3.txt
pack
