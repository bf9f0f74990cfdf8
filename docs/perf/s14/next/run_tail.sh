#!/usr/bin/env bash
# For the next session (4-GPU machine, `carry: ["gpu"]` with gpu/bench = `cargo xtask bench`,
# stripped): A/B of next/tail.patch (the copy loops' last chunks loaded together) against
# the embedded kernels, alternated twice: the copy-in two-shot at worlds 3 and 4 (256M, 1G,
# 64M) beside the zero-copy form, then odd sizes with the patch at worlds 2 and 3 (must be 0
# wrong). The patch is applied to a copy of kernels/ loaded through INC_KERNEL_DIR (NVRTC).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/rtail; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
kd=$PWD/gpu/v/tail; rm -rf "$kd"; mkdir -p "$kd"; cp kernels/*.cu kernels/*.cuh "$kd"/
patch -s -d "$kd" -p2 < docs/perf/s14/next/tail.patch || { echo "patch failed" > $w/error.txt; exit 1; }
for rep in 1 2; do
  for v in none tail; do
    for n in 3 4; do
      if [ $v = tail ]; then export INC_KERNEL_DIR=$kd; else unset INC_KERNEL_DIR; fi
      INC_CACHE_DIR=/tmp/c-$v timeout 120 $I launch -n $n -- $I bench --graph --algo auto,zero-copy --sizes 64M,256M,1G --iters 4 --warmup 1 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
  done
done
export INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-tail
S=2,6,120,122,1022,4098,65538,262146,393218,1048576,1048578,2097154,16777218,100000002
for n in 2 3; do
  timeout 120 $I launch -n $n -- $I bench --graph --algo auto,one-shot,two-shot,zero-copy --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
tar czf "$out/rtail.tgz" -C /tmp rtail
