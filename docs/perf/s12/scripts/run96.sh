#!/usr/bin/env bash
# GPU run 96 (session 12, 4 GPUs): the SEQ_WINDOW rule (a tag is newer only within 2^20
# calls ahead). A/B against the kernels before (gpu/v/old13: commit b3d5591's common.cuh and
# proto.cuh), world 4, alternated twice; then on the new (embedded) kernels: the GPU test
# bundle, demos at 4/3/2, a soak of 10^6 calls at 4.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r96; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r96.tgz" -C /tmp r96; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for rep in 1 2; do
  for v in old13 new; do
    kd=$PWD/gpu/v/$v; [ $v = new ] && kd=$PWD/gpu/v/none
    INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 150 $I launch -n 4 -- $I bench --graph --algo auto,push-one-shot,one-shot,two-shot --sizes 1K,16K,64K,256K,1M,16M --iters 8 --warmup 2 > $w/ab_w4_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w4_${v}_$rep.txt
  done
  tm ab-$rep; pack
done
(cd gpu/gt && INC_CACHE_DIR=/tmp/c96-gt timeout 240 bash run.sh) > $w/gpu_test.txt 2>&1; echo rc=$? >> $w/gpu_test.txt
tm gt; pack
export INC_CACHE_DIR=/tmp/c-new
for n in 4 3 2; do
  timeout 40 $I launch -n $n -- $I demo --backend cuda > $w/demo_w$n.txt 2>&1; echo rc=$? >> $w/demo_w$n.txt
done
timeout 90 $I launch -n 4 -- $I soak --calls 1000000 --time-limit 45 > $w/soak_w4.txt 2>&1; echo rc=$? >> $w/soak_w4.txt
tm soak; pack
