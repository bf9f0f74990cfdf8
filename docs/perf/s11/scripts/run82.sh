#!/usr/bin/env bash
# GPU run 82 (session 11, 4 GPUs): A/B of the barrier's poll: `rlx` = relaxed polls (no L1
# invalidation per spin) and one fence.acq_rel.sys after the flag is seen, against the
# embedded kernels (commit cfa76ca), alternated twice, worlds 4 and 2; odd sizes on rlx.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r82; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r82.tgz" -C /tmp r82; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for n in 4 2; do
  for rep in 1 2; do
    for v in cur rlx; do
      kd=$PWD/gpu/v/$v; [ $v = cur ] && kd=$PWD/gpu/v/none
      INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 150 $I launch -n $n -- $I bench --graph --algo auto,two-shot,zero-copy,one-shot --sizes 1K,16K,64K,256K,1M,2M,16M --iters 8 --warmup 2 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
    tm ab$n-$rep; pack
  done
done
S=2,6,1022,4098,65538,262146,1048576,1048578,2097154,4194306
for n in 4 2; do
  INC_KERNEL_DIR=$PWD/gpu/v/rlx INC_CACHE_DIR=/tmp/c-rlx timeout 90 $I launch -n $n -- $I bench --graph --algo auto,push-one-shot,one-shot,zero-copy,two-shot --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
tm odd; pack
