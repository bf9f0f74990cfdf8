#!/usr/bin/env bash
# GPU run 114 (session 14, 4 GPUs): soaks of the final build at worlds 4 and 3; what larger
# halves would buy the copy-in two-shot at world 4 (INC_BUFFER_BYTES 64M = 32 MiB pieces,
# 96M = 64 MiB pieces, 128M) at 256M and 1G; INC_BLOCKS for the zero-copy two-shot at 4M.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r114; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_CACHE_DIR=/tmp/c41
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r114.tgz" -C /tmp r114; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
timeout 80 $I launch -n 4 -- $I soak --calls 1000000 --time-limit 40 > $w/soak_w4.txt 2>&1; echo rc=$? >> $w/soak_w4.txt
timeout 60 $I launch -n 3 -- $I soak --calls 1000000 --time-limit 25 > $w/soak_w3.txt 2>&1; echo rc=$? >> $w/soak_w3.txt
tm soak; pack
for rep in 1 2; do
  for hb in 64M 96M 128M; do
    INC_BUFFER_BYTES=$hb timeout 100 $I launch -n 4 -- $I bench --graph --algo auto,zero-copy --sizes 256M,1G --iters 4 --warmup 1 > $w/ab_w4_hb${hb}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w4_hb${hb}_$rep.txt
    tm hb$hb-$rep
  done
  pack
done
for rep in 1 2; do
  for b in 64 96 112 128; do
    INC_BUFFER_BYTES=64M INC_BLOCKS=$b timeout 60 $I launch -n 4 -- $I bench --graph --algo zero-copy --sizes 4M,16M,64M --iters 8 --warmup 2 > $w/ab_w4_b${b}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w4_b${b}_$rep.txt
  done
  tm blk-$rep; pack
done
