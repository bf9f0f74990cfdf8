#!/usr/bin/env bash
# GPU run 107 (session 13, 4 GPUs, the last device minutes): PROTOCOL.md "Areas" at world 4:
# the bench of 2a9077b's layout (gpu/bench_old) against the new one (gpu/bench, with the
# NCCL columns), once each; odd sizes through the new pieces at world 4.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r107; mkdir -p "$out" $w
source gpu/env.sh
export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r107.tgz" -C /tmp r107; }
for v in old new; do
  I=gpu/bench/inc; extra="--compare nccl"; [ $v = old ] && I=gpu/bench_old/inc && extra=""
  INC_CACHE_DIR=/tmp/c107-$v timeout 70 $I launch -n 4 -- $I bench --graph --algo two-shot,zero-copy $extra --sizes 64M,256M,1G --iters 4 --warmup 1 > $w/ab_w4_${v}_1.txt 2>&1; echo rc=$? >> $w/ab_w4_${v}_1.txt
  pack
done
I=gpu/bench/inc
INC_CACHE_DIR=/tmp/c107-new timeout 40 $I launch -n 4 -- $I bench --graph --algo auto,two-shot,zero-copy --sizes 1022,1048578,67108866,100000002 --iters 1 --warmup 1 > $w/odd_w4.txt 2>&1; echo rc=$? >> $w/odd_w4.txt
pack
