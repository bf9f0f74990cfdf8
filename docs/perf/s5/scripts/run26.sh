#!/usr/bin/env bash
# GPU run 26 (session 5, 2 GPUs): kill -9 of one rank mid-soak after the Backend trait and
# protocol changes: the other rank must end with an error within the timeout, no process left.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r26; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
( INC_TIMEOUT_MS=3000 timeout 60 $I launch -n 2 --grace-ms 20000 -- $I soak --calls 100000000 --time-limit 50 > $w/kill.txt 2>&1; echo "launch rc=$?" >> $w/kill.txt ) &
L=$!
sleep 12
victim=$(pgrep -f "^$I soak" | head -1)
t0=$(date +%s.%N); echo "killing pid $victim" >> $w/kill_info.txt
kill -9 $victim
wait $L
t1=$(date +%s.%N); python3 -c "print('launch ended %.2f s after the kill' % ($t1 - $t0))" >> $w/kill_info.txt
pgrep -fa "^$I soak" >> $w/kill_info.txt && echo "LEAKED processes above" >> $w/kill_info.txt || echo "no leaked process" >> $w/kill_info.txt
tar czf "$out/r26.tgz" -C /tmp r26
