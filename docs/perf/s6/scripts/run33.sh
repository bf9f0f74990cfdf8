#!/usr/bin/env bash
# GPU run 33 (session 6): the final tables, world = every GPU of this machine, with NCCL,
# NCCL-symm and the torch script on the same sizes (bundle run.sh), inc with its default
# 64 MiB halves (INC_BUFFER_BYTES=64M: calls above them in pieces, as a user gets them).
set -uo pipefail
out=${OUT:-/tmp/out}; n=$(nvidia-smi -L | wc -l); w=/tmp/r33-w$n; mkdir -p "$out" $w
source gpu/env.sh
export INC_CACHE_DIR=/tmp/c33 INC_BUFFER_BYTES=64M
S=1K,2K,4K,8K,16K,32K,64K,128K,256K,512K,1M,2M,4M,8M,16M,32M,64M,256M,1G
INC_BENCH_SIZES=$S INC_BENCH_GPUS=$n OUT=$w timeout 540 bash gpu/bench/run.sh \
  --algo auto,push-one-shot,one-shot,two-shot,zero-copy --iters ${ITERS:-8} --warmup 2 > $w/run.log 2>&1
echo "rc=$?" >> $w/run.log
tar czf "$out/r33-w$n.tgz" -C /tmp r33-w$n
