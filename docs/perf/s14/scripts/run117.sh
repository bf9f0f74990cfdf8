#!/usr/bin/env bash
# GPU run 117 (session 14, world 3 on a 4-GPU machine): the copy-in two-shot at world 3 in
# 32 MiB pieces (INC_BUFFER_BYTES 64M, the default) against 64 MiB pieces (96M halves),
# beside the zero-copy form, 256M and 1G, twice alternated.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r117; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_CACHE_DIR=/tmp/c41
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
t0=$(date +%s)
for rep in 1 2; do
  for hb in 64M 96M; do
    INC_BUFFER_BYTES=$hb timeout 100 $I launch -n 3 -- $I bench --graph --algo auto,zero-copy --sizes 256M,1G --iters 4 --warmup 1 > $w/ab_w3_hb${hb}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w3_hb${hb}_$rep.txt
    echo "hb$hb-$rep t=$(( $(date +%s) - t0 ))" >> $w/times.txt
  done
done
tar czf "$out/r117.tgz" -C /tmp r117
