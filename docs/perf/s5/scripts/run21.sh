#!/usr/bin/env bash
# GPU run 21 (session 5): the final tables, world = every GPU of this machine (2 or 4), with
# NCCL, NCCL-symm and the torch script on the same sizes (bundle run.sh); f16/f32 rows.
set -uo pipefail
out=${OUT:-/tmp/out}; n=$(nvidia-smi -L | wc -l); w=/tmp/r21-w$n; mkdir -p "$out" $w
source gpu/env.sh
export INC_CACHE_DIR=/tmp/c21
S=1K,2K,4K,8K,16K,32K,64K,128K,256K,512K,1M,2M,4M,8M,16M,32M,64M,256M,1G
INC_BENCH_SIZES=$S INC_BENCH_GPUS=$n OUT=$w timeout 520 bash gpu/bench/run.sh \
  --algo auto,push-one-shot,one-shot,two-shot,zero-copy --iters ${ITERS:-8} --warmup 2 > $w/run.log 2>&1
echo "rc=$?" >> $w/run.log
tar czf "$out/r21-w$n.tgz" -C /tmp r21-w$n
