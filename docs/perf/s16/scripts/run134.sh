#!/usr/bin/env bash
# GPU run 134 (session 16, 4-GPU machine, carry ["gpu"]; gpu/bench and gpu/gt built from
# the Forward commit): the tables at world 4 with every peer (run 41's script), odd sizes
# at worlds 2, 3, 4 (0 wrong), the GPU test bundle on 2 GPUs.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r134; mkdir -p "$out" $w
source gpu/env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r134.tgz" -C /tmp r134; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
T=${T:-230} N=4 bash gpu/run41.sh; cp -r /tmp/r41-w4 $w/bench-w4; tm w4; pack
S=2,6,120,122,1022,4098,65538,262146,393218,1048576,1048578,2097154,3145730,4194306,6291458,8388610,16777218,100000002
for n in 2 3 4; do
  INC_CACHE_DIR=/tmp/c41 timeout 60 $I launch -n $n -- $I bench --graph --algo auto,two-shot,zero-copy --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
tm odd; pack
(cd gpu/gt && CUDA_VISIBLE_DEVICES=0,1 INC_CACHE_DIR=/tmp/c134-gt timeout 230 bash run.sh) > $w/gpu_test.txt 2>&1; echo rc=$? >> $w/gpu_test.txt
tm gt; pack
grep -h "wrong total\|^rc" $w/odd_w*.txt; tail -n 3 $w/gpu_test.txt; cat $w/times.txt
