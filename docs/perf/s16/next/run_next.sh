#!/usr/bin/env bash
# Prepared in session 16 for session 17 (not run; 4-GPU machine, carry ["gpu"] with gpu/bench
# built from 15ff1dd or later while next/make5.py's strings match; ~3 min): make5.py variants
# nv, fw1, fw8, cfw through INC_KERNEL_DIR, alternated twice: zero-copy at world 4
# (4M-256M) and 3, the copy-in two-shot (auto) at world 4 (16M-1G, where it stands at
# 1.03-1.06 x NCCL above 64M); then odd sizes with fw1 and cfw at worlds 3 and 4 (0 wrong).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/rnext; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
python3 docs/perf/s16/next/make5.py kernels $PWD/gpu/v17 > $w/make.txt 2>&1 || exit 1
one() {  # variant world algo sizes rep
  INC_KERNEL_DIR=$PWD/gpu/v17/$1 INC_CACHE_DIR=/tmp/c-$1 timeout 150 $I launch -n $2 -- $I bench --graph --algo $3 --sizes $4 --iters 6 --warmup 1 > $w/w$2_$1_$3_$5.txt 2>&1; echo rc=$? >> $w/w$2_$1_$3_$5.txt
}
for rep in 1 2; do
  for v in nv fw1 fw8 cfw; do
    one $v 4 zero-copy 4M,8M,16M,64M,256M $rep; one $v 3 zero-copy 16M,64M $rep
    one $v 4 auto 16M,64M,256M,1G $rep
  done
  tar czf "$out/rnext.tgz" -C /tmp rnext
done
S=2,6,1022,65538,1048578,3145730,4194306,6291458,8388610,16777218,100000002
for v in fw1 cfw; do for n in 3 4; do
  INC_KERNEL_DIR=$PWD/gpu/v17/$v INC_CACHE_DIR=/tmp/c-$v timeout 100 $I launch -n $n -- $I bench --graph --algo auto,zero-copy --sizes $S --iters 2 --warmup 1 > $w/odd_${v}_w$n.txt 2>&1; echo rc=$? >> $w/odd_${v}_w$n.txt
done; done
for f in $w/w*_*.txt; do echo "$(basename $f .txt): $(grep -E '^\[rank 0\] +[0-9]' $f | awk '{printf "%s ", $7}')"; done
grep -H "wrong total" $w/*.txt | grep -v "total: 0"
tar czf "$out/rnext.tgz" -C /tmp rnext
