#!/usr/bin/env bash
# GPU run 93 (session 12, 4 GPUs): zero-copy calls that fit the lines region run the
# two-shot of lines in place (ZeroCopyForm::Lines). A/B against the bench built before
# (gpu/bench_old, commit 72d3dc6: the pull form there), worlds 4 and 2, alternated twice;
# then odd sizes through zero-copy at 4/3/2, demos at 4/2, a soak of 10^6 calls at 4.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r93; mkdir -p "$out" $w
source gpu/env.sh
export INC_BUFFER_BYTES=64M INC_CACHE_DIR=/tmp/c93
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r93.tgz" -C /tmp r93; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for n in 4 2; do
  for rep in 1 2; do
    for v in old new; do
      I=gpu/bench/inc; [ $v = old ] && I=gpu/bench_old/inc
      timeout 100 $I launch -n $n -- $I bench --graph --algo auto,zero-copy --sizes 4K,128K,256K,512K,1M,2M,4M --iters 8 --warmup 2 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
    tm ab$n-$rep; pack
  done
done
I=gpu/bench/inc
S=2,6,120,122,1022,4098,65538,262146,393218,1048576,1048578,2097154,2621442
for n in 4 3 2; do
  timeout 60 $I launch -n $n -- $I bench --graph --algo zero-copy,auto --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
for n in 4 2; do
  timeout 40 $I launch -n $n -- $I demo --backend cuda > $w/demo_w$n.txt 2>&1; echo rc=$? >> $w/demo_w$n.txt
done
tm odd_demo; pack
timeout 90 $I launch -n 4 -- $I soak --calls 1000000 --time-limit 45 > $w/soak_w4.txt 2>&1; echo rc=$? >> $w/soak_w4.txt
tm soak; pack
