#!/usr/bin/env bash
# GPU run 37 (session 6, 2 GPUs): LL (push one-shot) with two lines per thread, all loads
# in flight together, on half the blocks (variant ll2 + INC_BLOCKS) vs the current kernel
# on its own grid, 8-64 KiB, ABAB (forced grids run blocks of 512 threads: INC_BLOCKS =
# lines / 1024 gives two lines per thread). (Run 16's fewer-blocks sweep handled the extra lines
# one after another.)
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r37; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
b() { local tag=$1 size=$2; shift 2
  env "$@" timeout 60 $I launch -n 2 -- $I bench --graph --algo push-one-shot --sizes $size --iters 10 --warmup 3 --csv $w/$tag.csv > $w/$tag.txt 2>&1; echo "rc=$?" >> $w/$tag.txt; }
for r in 1 2; do
  for s in 8K:1 16K:2 32K:4 64K:8; do
    z=${s%%:*}; g=${s##*:}
    b base_${z}_$r $z X=1
    b ll2_${z}_$r $z INC_KERNEL_DIR=$PWD/gpu/exp/s6/ll2 INC_BLOCKS=$g
  done
done
tar czf "$out/r37.tgz" -C /tmp r37
