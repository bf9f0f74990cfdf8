#!/usr/bin/env bash
# GPU run 27 (session 5, 2 GPUs): zero-copy pull vs push form at 1-16 MiB after this
# session's changes (INC_ZC_SWITCH=0: push everywhere; default: pull up to 8 MiB), ABAB.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r27; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
A="--graph --algo zero-copy --sizes 512K,1M,2M,4M,8M,16M --iters 10 --warmup 2"
for r in 1 2; do
  timeout 100 $I launch -n 2 -- $I bench $A --csv $w/pull_$r.csv > $w/pull_$r.txt 2>&1; echo "rc=$?" >> $w/pull_$r.txt
  INC_ZC_SWITCH=0 timeout 100 $I launch -n 2 -- $I bench $A --csv $w/push_$r.csv > $w/push_$r.txt 2>&1; echo "rc=$?" >> $w/push_$r.txt
done
tar czf "$out/r27.tgz" -C /tmp r27
