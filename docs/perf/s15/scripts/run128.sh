#!/usr/bin/env bash
# GPU run 128 (session 15, 2 GPUs): the world-2 ReduceStore storing into the peer's tensor
# before mine (rfirst) against the committed order (nv), both through INC_KERNEL_DIR,
# zero-copy, alternated three times.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r128; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
for rep in 1 2 3; do
  for v in nv rfirst; do
    export INC_KERNEL_DIR=$PWD/gpu/v16/$v
    INC_CACHE_DIR=/tmp/c-$v timeout 100 $I launch -n 2 -- $I bench --graph --algo zero-copy --sizes 8M,16M,32M,64M --iters 8 --warmup 1 > $w/w2_${v}_$rep.txt 2>&1; echo rc=$? >> $w/w2_${v}_$rep.txt
  done
done
for v in nv rfirst; do echo "$v: $(for r in 1 2 3; do grep -E '^\[rank 0\] +[0-9]' $w/w2_${v}_$r.txt | awk '{printf "%s/%s ", $7, $10}'; echo -n '| '; done)"; done
tar czf "$out/r128.tgz" -C /tmp r128
