#!/usr/bin/env bash
# GPU run 79 (session 11, 4 GPUs): A/B/C of the transposed block map: `tr` = the one-pass
# copy-in two-shot with warp i of block b on warp-chunk i*G+b (every block holds warps of
# every slice, so the reduce's remote stores come from every SM, not a quarter of them);
# `tr2` = tr + the same map in every grid-stride loop (inc_first_chunk_g). Alternated
# twice, worlds 4 and 2; then odd sizes at 4/3/2 through every path and a soak at 4 on tr2.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r79; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r79.tgz" -C /tmp r79; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for n in 4 2; do
  for rep in 1 2; do
    for v in cur tr tr2; do
      kd=$PWD/gpu/v/$v; [ $v = cur ] && kd=$PWD/gpu/v/none
      INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 150 $I launch -n $n -- $I bench --graph --algo auto,two-shot,zero-copy,one-shot --sizes 16K,64K,256K,512K,1M,2M,4M,16M,64M --iters 8 --warmup 2 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
    tm ab$n-$rep; pack
  done
done
S=2,6,1022,4098,65538,262146,1048576,1048578,2097154,4194306,67108866
for n in 4 3 2; do
  INC_KERNEL_DIR=$PWD/gpu/v/tr2 INC_CACHE_DIR=/tmp/c-tr2 timeout 90 $I launch -n $n -- $I bench --graph --algo auto,push-one-shot,one-shot,zero-copy,two-shot --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
tm odd; pack
INC_KERNEL_DIR=$PWD/gpu/v/tr2 INC_CACHE_DIR=/tmp/c-tr2 timeout 90 $I launch -n 4 -- $I soak --calls 1000000 --time-limit 40 > $w/soak_w4.txt 2>&1; echo rc=$? >> $w/soak_w4.txt
tm soak; pack
