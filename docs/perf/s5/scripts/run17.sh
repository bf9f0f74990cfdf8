#!/usr/bin/env bash
# GPU run 17 (session 5, 2 GPUs): what the multi-block epilogue's atomic costs (v_epi:
# every block writes the epoch, no atomic; a measurement, not a protocol). ABAB.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r17; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc
nvidia-smi -L > $w/gpus.txt
b() { local tag=$1 kd=$2; shift 2
  env ${kd:+INC_KERNEL_DIR=$kd} timeout 150 $I launch -n 2 -- $I bench "$@" --csv $w/$tag.csv > $w/$tag.txt 2>&1; echo "rc=$?" >> $w/$tag.txt; }
A="--graph --algo push-one-shot,one-shot,zero-copy --sizes 4K,8K,16K,64K,256K,512K,1M,2M --iters 10 --warmup 3"
for r in 1 2; do
  b base_$r "" $A
  b epi_$r gpu/exp/v_epi $A
done
tar czf "$out/r17.tgz" -C /tmp r17
