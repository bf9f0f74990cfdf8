#!/usr/bin/env bash
# GPU run 36 (session 6, 2 GPUs): zero-copy push form with the scatter and its barrier
# split in two halves (variant zsplit: flag A after the first half of the scatter, flag B
# after the second, reduce-store A while B's flags travel) vs the current kernel, ABAB.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r36; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
A="--graph --algo zero-copy --sizes 4M,8M,16M,32M,64M --iters 8 --warmup 2"
b() { local tag=$1; shift
  env "$@" timeout 60 $I launch -n 2 -- $I bench $A --csv $w/$tag.csv > $w/$tag.txt 2>&1; echo "rc=$?" >> $w/$tag.txt; }
for r in 1 2; do
  b base$r X=1
  b zsplit$r INC_KERNEL_DIR=$PWD/gpu/exp/s6/zsplit
done
tar czf "$out/r36.tgz" -C /tmp r36
