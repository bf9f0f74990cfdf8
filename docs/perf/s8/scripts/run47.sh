#!/usr/bin/env bash
# GPU run 47 (session 8, 4 GPUs): copy-in two-shot Gather / scatter variants A/B at world 4
# (base, nogather = ablation without the copy-out, pred, xslice, flat), 2 reps alternated;
# world 2 base/xslice/flat; flat's odd sizes at world 3 (every element checked).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r47; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
S=1M,2M,4M,8M,16M,32M,64M
pack() { tar czf "$out/r47.tgz" -C /tmp r47; }
t0=$(date +%s)
one() { # n variant rep sizes
  local n=$1 v=$2 r=$3 s=$4 kd=; [ $v != base ] && kd=$PWD/gpu/v/$v
  INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c47-$v timeout 90 $I launch -n $n -- $I bench --graph --algo two-shot,zero-copy --sizes $s --iters 8 --warmup 2 > $w/${v}_w${n}_$r.txt 2>&1; echo rc=$? t=$(( $(date +%s) - t0 )) >> $w/${v}_w${n}_$r.txt
  pack
}
for r in 1 2; do for v in base nogather pred xslice flat; do one 4 $v $r $S; done; done
for v in base xslice flat; do one 2 $v 1 $S; done
O=2,6,1022,65538,1048578,4194306,67108866,100000002
INC_KERNEL_DIR=$PWD/gpu/v/flat INC_CACHE_DIR=/tmp/c47-flat timeout 90 $I launch -n 3 -- $I bench --graph --algo two-shot,zero-copy --sizes $O --iters 2 --warmup 1 > $w/odd_flat_w3.txt 2>&1; echo rc=$? t=$(( $(date +%s) - t0 )) >> $w/odd_flat_w3.txt
pack
