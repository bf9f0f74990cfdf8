#!/usr/bin/env bash
# GPU run 57 (session 8, 4 GPUs): the final code (after the one-shot's 256-thread blocks, the
# world-4 zero-copy form switch and world 3's LL limit): world-4 tables (run 41's script),
# world-3 rows, odd sizes (one-shot, auto, zero-copy) at 4 and 3, soak 10^6 at 4, demo at 3.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r57; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_CACHE_DIR=/tmp/c57 INC_BUFFER_BYTES=64M
pack() { tar czf "$out/r57.tgz" -C /tmp r57; }
t0=$(date +%s)
T=250 N=4 bash gpu/run41.sh; cp -r /tmp/r41-w4 $w/bench-w4; echo "t=$(( $(date +%s) - t0 ))" >> $w/times.txt
pack
timeout 60 $I launch -n 3 -- $I bench --graph --algo auto,push-one-shot,one-shot,two-shot,zero-copy --sizes 1K,4K,16K,32K,64K,128K,256K,512K,1M,2M,4M,16M,64M --iters 8 --warmup 2 > $w/w3.txt 2>&1; echo rc=$? >> $w/w3.txt
S=2,6,1022,65538,262146,524290,1048578,4194306
for n in 4 3; do
  timeout 60 $I launch -n $n -- $I bench --graph --algo auto,one-shot,zero-copy --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
timeout 60 $I launch -n 3 -- $I demo --backend cuda > $w/demo_w3.txt 2>&1; echo rc=$? >> $w/demo_w3.txt
echo "t=$(( $(date +%s) - t0 ))" >> $w/times.txt
pack
timeout 80 $I launch -n 4 -- $I soak --calls 1000000 --time-limit 60 > $w/soak_w4.txt 2>&1; echo rc=$? >> $w/soak_w4.txt
echo "t=$(( $(date +%s) - t0 ))" >> $w/times.txt
pack
