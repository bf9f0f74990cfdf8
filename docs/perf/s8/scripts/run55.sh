#!/usr/bin/env bash
# GPU run 55 (session 8, 4 GPUs): (a) programmatic dependent launch on/off (INC_PDL=0), eager
# and graph, auto at 1K-64K, worlds 2 and 4, NCCL beside; (b) the zero-copy form switch at
# 512K (worlds 3+) / 1M (world 2) instead of 2M / 4M (binary gpu/zcsw); (c) one-shot blocks
# of 256 threads (binary gpu/os256) against 512; 2 reps alternated.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r55; mkdir -p "$out" $w
source gpu/env.sh
export INC_BUFFER_BYTES=64M INC_CACHE_DIR=/tmp/c55
pack() { tar czf "$out/r55.tgz" -C /tmp r55; }
t0=$(date +%s)
I=gpu/bench/inc
for n in 2 4; do for r in 1 2; do for p in 1 0; do
  cmp=; [ $p = 1 ] && [ $r = 1 ] && cmp="--compare nccl"
  INC_PDL=$p timeout 60 $I launch -n $n -- $I bench --both --algo auto $cmp --sizes 1K,4K,16K,64K --iters 20 --warmup 3 > $w/pdl${p}_w${n}_$r.txt 2>&1; echo rc=$? t=$(( $(date +%s) - t0 )) >> $w/pdl${p}_w${n}_$r.txt
done; done; done
pack
for n in 4 3 2; do for r in 1 2; do for b in bench zcsw; do
  timeout 60 gpu/$b/inc launch -n $n -- gpu/$b/inc bench --graph --algo zero-copy --sizes 256K,512K,1M,2M,4M,8M --iters 8 --warmup 2 > $w/zc_${b}_w${n}_$r.txt 2>&1; echo rc=$? t=$(( $(date +%s) - t0 )) >> $w/zc_${b}_w${n}_$r.txt
done; done; done
pack
for n in 4 2; do for r in 1 2; do for b in bench os256; do
  timeout 60 gpu/$b/inc launch -n $n -- gpu/$b/inc bench --graph --algo one-shot --sizes 16K,64K,128K,256K,512K,1M,2M --iters 8 --warmup 2 > $w/os_${b}_w${n}_$r.txt 2>&1; echo rc=$? t=$(( $(date +%s) - t0 )) >> $w/os_${b}_w${n}_$r.txt
done; done; done
pack
