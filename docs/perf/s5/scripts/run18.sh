#!/usr/bin/env bash
# GPU run 18 (session 5, 2 GPUs): per-block epoch words (new binary) vs the done counter
# (old binary, gpu/old/inc, built before 5853fb6), same machine, ABAB; plus the eager
# host time of both.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r18; mkdir -p "$out" $w
source gpu/env.sh
nvidia-smi -L > $w/gpus.txt
b() { local tag=$1 I=$2; shift 2
  timeout 150 $I launch -n 2 -- $I bench "$@" --csv $w/$tag.csv > $w/$tag.txt 2>&1; echo "rc=$?" >> $w/$tag.txt; }
A="--both --algo auto,push-one-shot,one-shot,zero-copy --sizes 1K,4K,8K,16K,64K,256K,512K,1M,2M --iters 10 --warmup 3"
for r in 1 2; do
  b old_$r gpu/old/inc $A
  b new_$r gpu/bench/inc $A
done
tar czf "$out/r18.tgz" -C /tmp r18
