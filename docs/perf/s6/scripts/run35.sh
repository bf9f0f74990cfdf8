#!/usr/bin/env bash
# GPU run 35 (session 6, 2 GPUs): LL (push one-shot) at 4-64 KiB with a back-off in the
# poll loop (__nanosleep 20 / 100 ns between re-reads of a line not yet arrived; is the
# spinning of every thread on its own line slowing the lines' arrival?), ABAB.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r35; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
A="--graph --algo push-one-shot --sizes 1K,4K,8K,16K,32K,64K --iters 10 --warmup 3"
b() { local tag=$1; shift
  env "$@" timeout 60 $I launch -n 2 -- $I bench $A --csv $w/$tag.csv > $w/$tag.txt 2>&1; echo "rc=$?" >> $w/$tag.txt; }
for r in 1 2; do
  b base$r X=1
  b ns20_$r INC_KERNEL_DIR=$PWD/gpu/exp/s6/ns20
  b ns100_$r INC_KERNEL_DIR=$PWD/gpu/exp/s6/ns100
done
tar czf "$out/r35.tgz" -C /tmp r35
