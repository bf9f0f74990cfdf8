#!/usr/bin/env bash
# GPU run 52 (session 8, 4 GPUs): correctness of the final code (one-shot push form, two-shot
# one chunk per ReduceSlice iteration): demos at 4/3/2, soak 10^6 calls at world 4, pieces
# soaks (1 MiB halves) at 3 and 4, calls to 64 MB, odd sizes to 1 GB at 3 and 4 (every
# element checked), the GPU test bundle, kill -9 of one rank mid-soak.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r52; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_CACHE_DIR=/tmp/c52
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r52.tgz" -C /tmp r52; }
t0=$(date +%s); st() { echo "t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for n in 4 3 2; do
  timeout 60 $I launch -n $n -- $I demo --backend cuda > $w/demo_w$n.txt 2>&1; echo rc=$? >> $w/demo_w$n.txt
done
st; pack
timeout 100 $I launch -n 4 -- $I soak --calls 1000000 --time-limit 80 > $w/soak_w4.txt 2>&1; echo rc=$? >> $w/soak_w4.txt
st; pack
for n in 4 3; do
  INC_BUFFER_BYTES=1M timeout 60 $I launch -n $n -- $I soak --calls 100000 --max-bytes 4M --full-every 2 --time-limit 45 > $w/soak_pieces_w$n.txt 2>&1; echo rc=$? >> $w/soak_pieces_w$n.txt
done
timeout 60 $I launch -n 4 -- $I soak --calls 2000 --max-bytes 64M --full-every 4 --time-limit 45 > $w/soak_big_w4.txt 2>&1; echo rc=$? >> $w/soak_big_w4.txt
st; pack
S=2,6,1022,65538,1048578,4194306,67108866,100000002,1073741822
for n in 4 3; do
  timeout 90 $I launch -n $n -- $I bench --graph --algo auto,one-shot,zero-copy,two-shot --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
st; pack
( INC_TIMEOUT_MS=3000 timeout 45 $I launch -n 4 --grace-ms 20000 -- $I soak --calls 100000000 --time-limit 35 > $w/kill.txt 2>&1; echo "launch rc=$?" >> $w/kill.txt ) &
L=$!
sleep 10
victim=$(pgrep -f "^$I soak" | head -1)
k0=$(date +%s.%N); echo "killing pid $victim" >> $w/kill_info.txt
kill -9 $victim
wait $L
k1=$(date +%s.%N); python3 -c "print('launch ended %.2f s after the kill' % ($k1 - $k0))" >> $w/kill_info.txt
pgrep -fa "^$I soak" >> $w/kill_info.txt && echo "LEAKED processes above" >> $w/kill_info.txt || echo "no leaked process" >> $w/kill_info.txt
st; pack
(cd gpu/gt && INC_CACHE_DIR=/tmp/c52-gt timeout 240 bash run.sh) > $w/gpu_test.txt 2>&1; echo rc=$? >> $w/gpu_test.txt
st; pack
