#!/usr/bin/env bash
# GPU run 106 (session 13, 2 GPUs): PROTOCOL.md "Areas" (one receive/gather area per other
# rank: the copy-in two-shot's pieces a whole half at world 2, the zero-copy push form's two
# halves). A/B of the bench binaries: gpu/bench_old (commit 2a9077b's layout) against
# gpu/bench (the new one), alternated, twice; then the GPU test bundle, odd sizes, demo,
# soak at world 2.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r106; mkdir -p "$out" $w
source gpu/env.sh
export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r106.tgz" -C /tmp r106; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for rep in 1 2; do
  for v in old new; do
    I=gpu/bench/inc; [ $v = old ] && I=gpu/bench_old/inc
    INC_CACHE_DIR=/tmp/c106-$v timeout 150 $I launch -n 2 -- $I bench --graph --algo two-shot,zero-copy,one-shot --sizes 1K,1M,16M,32M,64M,128M,256M,1G --iters 6 --warmup 2 > $w/ab_w2_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w2_${v}_$rep.txt
    tm $v-$rep
  done
  pack
done
(cd gpu/gt && INC_CACHE_DIR=/tmp/c106-gt timeout 300 bash run.sh) > $w/gpu_test.txt 2>&1; echo rc=$? >> $w/gpu_test.txt
tm gt; pack
I=gpu/bench/inc; export INC_CACHE_DIR=/tmp/c106-new
S=2,6,122,1022,65538,1048578,4194306,16777218,33554434,67108866,100000002
timeout 90 $I launch -n 2 -- $I bench --graph --algo auto,one-shot,two-shot,zero-copy --dtype bf16 --sizes $S --iters 2 --warmup 1 > $w/odd_w2.txt 2>&1; echo rc=$? >> $w/odd_w2.txt
timeout 40 $I launch -n 2 -- $I demo --backend cuda > $w/demo_w2.txt 2>&1; echo rc=$? >> $w/demo_w2.txt
timeout 90 $I launch -n 2 -- $I soak --calls 1000000 --time-limit 45 > $w/soak_w2.txt 2>&1; echo rc=$? >> $w/soak_w2.txt
tm odd_demo_soak; pack
