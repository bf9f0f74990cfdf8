#!/usr/bin/env bash
# GPU run 73 (session 10, 4 GPUs): correctness of the final code: demos at 4/3/2, odd sizes
# at 4/3/2 through every path (every element checked), world-3 rows, kill -9 of one rank
# mid-soak, the GPU test bundle.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r73; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_CACHE_DIR=/tmp/c73
pack() { tar czf "$out/r73.tgz" -C /tmp r73; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for n in 4 3 2; do
  timeout 40 $I launch -n $n -- $I demo --backend cuda > $w/demo_w$n.txt 2>&1; echo rc=$? >> $w/demo_w$n.txt
done
tm demo; pack
S=2,6,1022,4098,65538,262146,1048576,1048578,2097154,4194306,67108866
for n in 4 3 2; do
  timeout 60 $I launch -n $n -- $I bench --graph --algo auto,push-one-shot,one-shot,zero-copy,two-shot --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
INC_BUFFER_BYTES=64M timeout 60 $I launch -n 3 -- $I bench --graph --algo auto,push-one-shot,one-shot,two-shot,zero-copy --sizes 1K,4K,16K,32K,64K,128K,256K,512K,1M,2M,4M,16M,64M --iters 8 --warmup 2 > $w/w3.txt 2>&1; echo rc=$? >> $w/w3.txt
tm odd; pack
( INC_TIMEOUT_MS=3000 timeout 45 $I launch -n 4 --grace-ms 20000 -- $I soak --calls 100000000 --time-limit 35 > $w/kill.txt 2>&1; echo "launch rc=$?" >> $w/kill.txt ) &
L=$!
sleep 10
victim=$(pgrep -f "^$I soak" | head -1)
k0=$(date +%s.%N); echo "killing pid $victim" >> $w/kill_info.txt
kill -9 $victim
wait $L
k1=$(date +%s.%N); python3 -c "print('launch ended %.2f s after the kill' % ($k1 - $k0))" >> $w/kill_info.txt
pgrep -fa "^$I soak" >> $w/kill_info.txt && echo "LEAKED processes above" >> $w/kill_info.txt || echo "no leaked process" >> $w/kill_info.txt
tm kill; pack
(cd gpu/gt && INC_CACHE_DIR=/tmp/c73-gt timeout 200 bash run.sh) > $w/gpu_test.txt 2>&1; echo rc=$? >> $w/gpu_test.txt
tm gt; pack
