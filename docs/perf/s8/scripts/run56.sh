#!/usr/bin/env bash
# GPU run 56 (session 8, 4 GPUs): (a) one-shot blocks of 256 threads while the grid stays
# under the block cap (binary gpu/os256h: up to 512 KiB) vs 512, one-shot and zero-copy,
# worlds 4/3/2, 2 reps; (b) the final binary (zero-copy push form from 512 KiB at world 4):
# soak 10^6 calls at world 4, odd sizes with zero-copy and auto at 4.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r56; mkdir -p "$out" $w
source gpu/env.sh
export INC_BUFFER_BYTES=64M INC_CACHE_DIR=/tmp/c56
pack() { tar czf "$out/r56.tgz" -C /tmp r56; }
t0=$(date +%s)
for n in 4 3 2; do for r in 1 2; do for b in bench os256h; do
  timeout 60 gpu/$b/inc launch -n $n -- gpu/$b/inc bench --graph --algo auto,one-shot,zero-copy --sizes 64K,128K,256K,512K,1M,2M --iters 8 --warmup 2 > $w/os_${b}_w${n}_$r.txt 2>&1; echo rc=$? t=$(( $(date +%s) - t0 )) >> $w/os_${b}_w${n}_$r.txt
done; done; done
pack
I=gpu/bench/inc
timeout 100 $I launch -n 4 -- $I soak --calls 1000000 --time-limit 80 > $w/soak_w4.txt 2>&1; echo rc=$? t=$(( $(date +%s) - t0 )) >> $w/soak_w4.txt
pack
S=2,6,1022,65538,524290,1048578,2097154,4194306,67108866
timeout 90 $I launch -n 4 -- $I bench --graph --algo auto,zero-copy --sizes $S --iters 2 --warmup 1 > $w/odd_w4.txt 2>&1; echo rc=$? t=$(( $(date +%s) - t0 )) >> $w/odd_w4.txt
pack
