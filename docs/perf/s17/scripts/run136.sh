#!/usr/bin/env bash
# GPU run 136 (session 17, 4 GPUs, carry ["gpu"], gpu/bench built from 15ff1dd), alternated
# twice in one command:
#  1. make6.py's variants nv (control) and opbx (the zero-copy push form's Scatter one peer
#     a block) through INC_KERNEL_DIR: zero-copy at world 4 (4M-256M), 3 and 2 (16M, 64M);
#  2. the grid (INC_BLOCKS 64, 96, 128 = the default) on the control: zero-copy at world 4
#     2M-64M and the copy-in two-shot (auto) 4M-256M;
#  3. odd sizes with opbx at worlds 2, 3, 4 on the default grid and on 8 and 5 blocks (the
#     blocks past m (W-1) idle): its results must be right.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r136; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
python3 docs/perf/s17/make6.py kernels $PWD/gpu/v6 > $w/make.txt 2>&1 || exit 1
one() {  # variant world algo sizes rep
  INC_KERNEL_DIR=$PWD/gpu/v6/$1 INC_CACHE_DIR=/tmp/c-$1 timeout 150 $I launch -n $2 -- $I bench --graph --algo $3 --sizes $4 --iters 6 --warmup 1 > $w/w$2_$1_$3_$5.txt 2>&1; echo rc=$? >> $w/w$2_$1_$3_$5.txt
}
blk() {  # blocks algo sizes rep
  INC_BLOCKS=$1 INC_CACHE_DIR=/tmp/c136 timeout 150 $I launch -n 4 -- $I bench --graph --algo $2 --sizes $3 --iters 6 --warmup 1 > $w/b$1_$2_$4.txt 2>&1; echo rc=$? >> $w/b$1_$2_$4.txt
}
for rep in 1 2; do
  for v in nv opbx; do
    one $v 4 zero-copy 4M,8M,16M,64M,256M $rep; one $v 3 zero-copy 16M,64M $rep; one $v 2 zero-copy 16M,64M $rep
  done
  tar czf "$out/r136.tgz" -C /tmp r136
done
S=2,6,1022,65538,1048578,3145730,4194306,6291458,8388610,16777218,100000002
for n in 2 3 4; do for b in d 8 5; do
  e=(); [ $b = d ] || e=(INC_BLOCKS=$b)
  env "${e[@]}" INC_KERNEL_DIR=$PWD/gpu/v6/opbx INC_CACHE_DIR=/tmp/c-opbx timeout 100 $I launch -n $n -- $I bench --graph --algo zero-copy --sizes $S --iters 2 --warmup 1 > $w/odd_opbx_w${n}_b$b.txt 2>&1; echo rc=$? >> $w/odd_opbx_w${n}_b$b.txt
done; done
tar czf "$out/r136.tgz" -C /tmp r136
for rep in 1 2; do
  for b in 64 96 128; do
    blk $b zero-copy 2M,4M,8M,16M,64M $rep; blk $b auto 4M,16M,64M,256M $rep
  done
done
for f in $w/w*_*.txt $w/b*_*.txt; do echo "$(basename $f .txt): $(grep -E '^\[rank 0\] +[0-9]' $f | awk '{printf "%s/%s ", $7, $10}')"; done
grep -H "wrong total" $w/*.txt | grep -v "total: 0"
grep -L "rc=0" $w/*.txt
tar czf "$out/r136.tgz" -C /tmp r136
