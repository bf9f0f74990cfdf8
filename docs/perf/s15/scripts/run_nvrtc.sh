#!/usr/bin/env bash
# GPU run 122 (4-GPU machine): is a kernel compiled at run time (INC_KERNEL_DIR, the
# device's NVRTC) as fast as the embedded cubin of the same source? Run 118's tail A/B and
# run 121's grid A/B compared the two. Variants: emb (embedded cubins), nv (kernels/ as
# committed, through INC_KERNEL_DIR), tail (kernels/ + s14 next/tail.patch, through
# INC_KERNEL_DIR). Worlds 3 and 4 at 64M-1G (copy-in auto and zero-copy), world 2 at
# 16M-64M (emb, nv). Alternated twice. gpu/bench/inc = `cargo xtask bench` of main.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/rnv; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvcc --version | tail -2 > $w/nvcc.txt; ls /usr/local/cuda*/lib64/libnvrtc* >> $w/nvcc.txt 2>&1
for v in nv tail; do kd=$PWD/gpu/v/$v; rm -rf "$kd"; mkdir -p "$kd"; cp kernels/*.cu kernels/*.cuh "$kd"/; done
patch -s -d gpu/v/tail -p2 < docs/perf/s14/next/tail.patch || { echo "patch failed" > $w/error.txt; exit 1; }
one() {  # variant world sizes rep
  if [ $1 = emb ]; then unset INC_KERNEL_DIR; else export INC_KERNEL_DIR=$PWD/gpu/v/$1; fi
  INC_CACHE_DIR=/tmp/c-$1 timeout 150 $I launch -n $2 -- $I bench --graph --algo auto,zero-copy --sizes $3 --iters 6 --warmup 1 > $w/w$2_$1_$4.txt 2>&1; echo rc=$? >> $w/w$2_$1_$4.txt
}
for rep in 1 2; do
  for v in emb nv; do one $v 2 4M,16M,64M $rep; done
  for n in 4 3; do for v in emb nv tail; do one $v $n 64M,256M,1G $rep; done; done
done
tar czf "$out/rnv.tgz" -C /tmp rnv
