#!/usr/bin/env bash
# GPU run 139 (session 17, 4 GPUs, carry ["gpu"], gpu/bench built from 15ff1dd; the same
# warm machine as run 136): the grid at 2M-16M, INC_BLOCKS 32, 48, 64, 80 against the
# default (128 there), embedded kernels, alternated twice: zero-copy and copy-in (auto) at
# world 4, zero-copy at world 2.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r139; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M INC_CACHE_DIR=/tmp/c139
blk() {  # blocks world algo sizes rep
  local e=(); [ "$1" = d ] || e=(INC_BLOCKS=$1)
  env "${e[@]}" timeout 100 $I launch -n $2 -- $I bench --graph --algo $3 --sizes $4 --iters 8 --warmup 1 > $w/w$2_b$1_$3_$5.txt 2>&1; echo rc=$? >> $w/w$2_b$1_$3_$5.txt
}
for rep in 1 2; do
  for b in d 32 48 64 80; do
    blk $b 4 zero-copy,auto 2M,3M,4M,6M,8M,16M $rep
    blk $b 2 zero-copy 2M,4M,8M,16M $rep
  done
  tar czf "$out/r139.tgz" -C /tmp r139
done
for f in $w/w*_*.txt; do echo "$(basename $f .txt): $(grep -E '^\[rank 0\] +[0-9]' $f | awk '{printf "%s/%s ", $7, $15}')"; done
grep -H "wrong total" $w/*.txt | grep -v "total: 0"
grep -L "rc=0" $w/*.txt
