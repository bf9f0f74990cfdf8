#!/usr/bin/env bash
# GPU run 138 (session 17, ONE GPU, carry ["gpu"]): correctness of make6.py's opbx on
# virtual ranks (inc bench --threads 3 / 4 on one GPU; not an NVLink timing): odd sizes,
# zero-copy, on the default grid and on 8 and 5 blocks (blocks past m (W-1) idle).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r138; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
python3 docs/perf/s17/make6.py kernels $PWD/gpu/v6 > $w/make.txt 2>&1 || exit 1
S=2,6,1022,65538,1048578,3145730,4194306,6291458,8388610,16777218,100000002
for n in 3 4 2; do for b in d 8 5; do
  e=(); [ $b = d ] || e=(INC_BLOCKS=$b)
  env "${e[@]}" INC_KERNEL_DIR=$PWD/gpu/v6/opbx INC_CACHE_DIR=/tmp/c-opbx timeout 100 $I bench --threads $n --graph --algo zero-copy,zc-two-shot --sizes $S --iters 2 --warmup 1 > $w/odd_opbx_w${n}_b$b.txt 2>&1; echo rc=$? >> $w/odd_opbx_w${n}_b$b.txt
done; done
grep -H "wrong total\|rc=" $w/*.txt
grep -h -i "error\|panic" $w/*.txt | head
tar czf "$out/r138.tgz" -C /tmp r138
