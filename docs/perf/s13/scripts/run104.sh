#!/usr/bin/env bash
# GPU run 104 (session 13, 2 GPUs): the scrub's residual cost at LL 1 KiB (+0.08 us in run
# 103): its body as a __noinline__ function (gpu/v/ni) against the embedded kernels (new)
# and the kernels before rule 5 (pre13), alternated, four times; odd sizes on ni.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r104; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r104.tgz" -C /tmp r104; }
for rep in 1 2 3 4; do
  for v in pre13 new ni; do
    kd=$PWD/gpu/v/$v; [ $v = new ] && kd=$PWD/gpu/v/none
    INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 100 $I launch -n 2 -- $I bench --graph --algo auto,zero-copy --sizes 1K,2K,4K,16K,64K,1M --iters 8 --warmup 2 > $w/ab_w2_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w2_${v}_$rep.txt
  done
  pack
done
S=2,6,122,1022,4098,65538,262146,1048578
INC_KERNEL_DIR=$PWD/gpu/v/ni INC_CACHE_DIR=/tmp/c-ni timeout 60 $I launch -n 2 -- $I bench --graph --algo auto,push-one-shot,one-shot,two-shot,zero-copy --sizes $S --iters 2 --warmup 1 > $w/odd_w2.txt 2>&1; echo rc=$? >> $w/odd_w2.txt
pack
