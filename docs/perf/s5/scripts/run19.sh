#!/usr/bin/env bash
# GPU run 19 (session 5, 2 GPUs): merged main (Backend trait, per-block epochs): demo on 2
# processes; LL block size experiment (INC_LL_BLOCK_THREADS 128/256 vs the default rule),
# ABAB; eager host times after the Backend trait.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r19; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc
nvidia-smi -L > $w/gpus.txt
timeout 120 $I launch -n 2 -- $I demo --backend cuda > $w/demo_w2.txt 2>&1; echo "rc=$?" >> $w/demo_w2.txt
b() { local tag=$1 t=$2; shift 2
  env ${t:+INC_LL_BLOCK_THREADS=$t} timeout 150 $I launch -n 2 -- $I bench "$@" --csv $w/$tag.csv > $w/$tag.txt 2>&1; echo "rc=$?" >> $w/$tag.txt; }
A="--graph --algo push-one-shot --sizes 1K,2K,4K,8K,16K,32K,64K,128K,256K --iters 10 --warmup 3"
for r in 1 2; do
  b def_$r "" $A
  b t128_$r 128 $A
  b t256_$r 256 $A
done
b eager_auto "" --eager --algo auto --sizes 1K,16K,256K,1M --iters 20 --warmup 5
tar czf "$out/r19.tgz" -C /tmp r19
