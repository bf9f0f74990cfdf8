#!/usr/bin/env bash
# GPU run 111 (session 14, 2 GPUs): the zero-copy path takes the two-shot above 4 MiB at
# world 2 (select_zero_copy): A/B of the bench binaries (prev = run 108's, new), alternated,
# three times; and INC_BLOCKS 96 / 128 / 192 for the zero-copy two-shot at 8-32 MiB (new).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r111; mkdir -p "$out" $w
source gpu/env.sh
export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r111.tgz" -C /tmp r111; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for rep in 1 2 3; do
  for v in prev new; do
    I=gpu/bench_$v/inc; [ $v = new ] && I=gpu/bench/inc
    INC_CACHE_DIR=/tmp/c-$v timeout 100 $I launch -n 2 -- $I bench --graph --algo zero-copy,zero-copy-two-shot,auto --sizes 2M,4M,5M,6M,8M,16M --iters 8 --warmup 2 > $w/ab_w2_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w2_${v}_$rep.txt
    tm $v-$rep
  done
  pack
done
I=gpu/bench/inc
for rep in 1 2; do
  for b in 96 128 192 264; do
    INC_BLOCKS=$b INC_CACHE_DIR=/tmp/c-new timeout 100 $I launch -n 2 -- $I bench --graph --algo zero-copy-two-shot --sizes 8M,16M,32M --iters 8 --warmup 2 > $w/blk_w2_b${b}_$rep.txt 2>&1; echo rc=$? >> $w/blk_w2_b${b}_$rep.txt
    tm b$b-$rep
  done
  pack
done
