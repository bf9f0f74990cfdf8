#!/usr/bin/env bash
# GPU run 84 (session 11, 4 GPUs): A/B of `pap` (the reduce-store phases peer after peer:
# the zero-copy push form's ReduceStore and the copy-in two-shot's loop-form ReduceSlice
# store into my own tensor / G area first, then copy it to each peer in rotated order,
# INC_UNROLL loads in flight) against the embedded kernels (cfa76ca), alternated twice,
# worlds 4, 3, 2; odd sizes at 4/3/2 on pap; a soak at 4 on pap.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r84; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r84.tgz" -C /tmp r84; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for n in 4 3 2; do
  for rep in 1 2; do
    for v in cur pap; do
      kd=$PWD/gpu/v/$v; [ $v = cur ] && kd=$PWD/gpu/v/none
      INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 150 $I launch -n $n -- $I bench --graph --algo auto,two-shot,zero-copy --sizes 2M,4M,8M,16M,32M,64M,256M --iters 6 --warmup 2 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
    tm ab$n-$rep; pack
  done
done
S=2,6,1022,4098,65538,1048578,2097154,4194306,16777218,67108866,134217730
for n in 4 3 2; do
  INC_KERNEL_DIR=$PWD/gpu/v/pap INC_CACHE_DIR=/tmp/c-pap timeout 90 $I launch -n $n -- $I bench --graph --algo auto,zero-copy,two-shot --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
tm odd; pack
INC_KERNEL_DIR=$PWD/gpu/v/pap INC_CACHE_DIR=/tmp/c-pap timeout 120 $I launch -n 4 -- $I soak --calls 1000000 --time-limit 40 > $w/soak_w4.txt 2>&1; echo rc=$? >> $w/soak_w4.txt
tm soak; pack
