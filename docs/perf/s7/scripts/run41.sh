#!/usr/bin/env bash
# GPU run 41 (session 7, 4 GPUs): the tables at world 4 (every algorithm, NCCL, NCCL-symm and
# the torch script on the same sizes), inc with its default 64 MiB halves.
set -uo pipefail
out=${OUT:-/tmp/out}; n=${N:-$(nvidia-smi -L | wc -l)}; w=/tmp/r41-w$n; mkdir -p "$out" $w
source gpu/env.sh
export INC_CACHE_DIR=/tmp/c41 INC_BUFFER_BYTES=64M
S=${S:-1K,2K,4K,8K,16K,32K,64K,128K,256K,512K,1M,2M,4M,8M,16M,32M,64M,256M,1G}
INC_BENCH_SIZES=$S INC_BENCH_GPUS=$n OUT=$w timeout ${T:-540} bash gpu/bench/run.sh \
  --algo ${ALGO:-auto,push-one-shot,one-shot,two-shot,zero-copy} --iters ${ITERS:-8} --warmup 2 > $w/run.log 2>&1
echo "rc=$?" >> $w/run.log
tar czf "$out/r41-w$n.tgz" -C /tmp r41-w$n
