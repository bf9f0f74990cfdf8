#!/usr/bin/env bash
# GPU run 49 (session 8, 4 GPUs): copy-in two-shot ReduceSlice variants A/B at world 4
# (rot = stores into the peers' gather areas in rotated order; one = one chunk per
# iteration, no spills; rotone = both), 2 reps alternated; world 2 and 3; odd sizes at 3.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r49; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
S=1M,2M,4M,8M,16M,32M,64M
pack() { tar czf "$out/r49.tgz" -C /tmp r49; }
t0=$(date +%s)
one() { # n variant rep sizes algos
  local n=$1 v=$2 r=$3 s=$4 al=$5 kd=; [ $v != base ] && kd=$PWD/gpu/v/$v
  INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c49-$v timeout 90 $I launch -n $n -- $I bench --graph --algo $al --sizes $s --iters 8 --warmup 2 > $w/${v}_w${n}_$r.txt 2>&1; echo rc=$? t=$(( $(date +%s) - t0 )) >> $w/${v}_w${n}_$r.txt
  pack
}
for r in 1 2; do for v in base rot one rotone; do one 4 $v $r $S two-shot,zero-copy; done; done
for n in 2 3; do for v in base rot one rotone; do one $n $v 1 $S two-shot; done; done
O=2,6,1022,65538,1048578,4194306,67108866,100000002
for v in one rotone; do
INC_KERNEL_DIR=$PWD/gpu/v/$v INC_CACHE_DIR=/tmp/c49-$v timeout 90 $I launch -n 3 -- $I bench --graph --algo two-shot --sizes $O --iters 2 --warmup 1 > $w/odd_${v}_w3.txt 2>&1; echo rc=$? t=$(( $(date +%s) - t0 )) >> $w/odd_${v}_w3.txt
done
pack
