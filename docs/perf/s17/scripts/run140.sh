#!/usr/bin/env bash
# GPU run 140 (session 17, 4 GPUs, carry ["gpu"]): the final build (gpu/bench from the commit
# that gives the zero-copy push form at worlds 3 and 4 a grid of two chunks a thread,
# launch::zero_copy_push_blocks) against the build before (gpu/inc-15ff1dd, same embedded
# kernels), alternated twice: zero-copy at worlds 4 and 3, 2M-8M; then odd sizes on the new
# build at worlds 3 and 4 (0 wrong), the world-4 tables with every peer (as run 134), and
# the GPU test bundle on 4 GPUs last.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r140; mkdir -p "$out" $w
source gpu/env.sh
export INC_BUFFER_BYTES=64M INC_CACHE_DIR=/tmp/c140
one() {  # build world sizes rep
  local I=gpu/bench/inc; [ $1 = old ] && I=gpu/inc-15ff1dd
  timeout 100 $I launch -n $2 -- $I bench --graph --algo zero-copy --sizes $3 --iters 8 --warmup 1 > $w/w$2_$1_$4.txt 2>&1; echo rc=$? >> $w/w$2_$1_$4.txt
}
for rep in 1 2; do
  for b in old new; do one $b 4 2M,3M,4M,6M,8M $rep; one $b 3 2M,3M,4M,6M,8M $rep; done
done
S=2,6,1022,65538,1048578,2097154,3145730,4194306,6291458,8388610,16777218,100000002
for n in 3 4; do
  timeout 100 gpu/bench/inc launch -n $n -- gpu/bench/inc bench --graph --algo zero-copy,zc-two-shot --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
for f in $w/w*_*.txt; do echo "$(basename $f .txt): $(grep -E '^\[rank 0\] +[0-9]' $f | awk '{printf "%s ", $7}')"; done
grep -H "wrong total" $w/*.txt | grep -v "total: 0"; grep -L "rc=0" $w/*.txt
tar czf "$out/r140.tgz" -C /tmp r140
N=4 T=300 bash gpu/run41.sh; tail -3 /tmp/r41-w4/run.log
(cd gpu/gt && timeout 240 bash run.sh > $w/gt.txt 2>&1; echo rc=$? >> $w/gt.txt)
grep -E "test result|PASS|FAIL|rc=" $w/gt.txt | tail -15
tar czf "$out/r140.tgz" -C /tmp r140
