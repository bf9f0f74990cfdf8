#!/usr/bin/env bash
# GPU run 68 (session 10, 4 GPUs): (a) A/B of a start stagger in the two-shot (odd blocks
# wait 400/800/1200 ns before their scatter, so one half's barrier latency can overlap the
# other half's transfer) against the embedded kernels, alternated twice, worlds 4 and 2,
# copy-in two-shot and zero-copy; (b) correctness items not yet run on 1085787's kernels:
# demos at 3 and 2, world-3 rows, f16/f32 beside bf16 at world 4, kill -9 mid-soak.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r68; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r68.tgz" -C /tmp r68; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
for n in 4 2; do
  SZ=512K,1M,2M,4M,16M,64M
  for rep in 1 2; do
    for v in cur stg400 stg800 stg1200; do
      kd=$PWD/gpu/v/$v; [ $v = cur ] && kd=$PWD/gpu/v/none
      INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/c-$v timeout 120 $I launch -n $n -- $I bench --graph --algo two-shot,zero-copy --sizes $SZ --iters 8 --warmup 2 > $w/ab_w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/ab_w${n}_${v}_$rep.txt
    done
  done
  tm ab_w$n; pack
done
export INC_CACHE_DIR=/tmp/c68
for n in 3 2; do
  timeout 60 $I launch -n $n -- $I demo --backend cuda > $w/demo_w$n.txt 2>&1; echo rc=$? >> $w/demo_w$n.txt
done
timeout 60 $I launch -n 3 -- $I bench --graph --algo auto,push-one-shot,one-shot,two-shot,zero-copy --sizes 1K,4K,16K,32K,64K,128K,256K,512K,1M,2M,4M,16M,64M --iters 8 --warmup 2 > $w/w3.txt 2>&1; echo rc=$? >> $w/w3.txt
tm demo; pack
for d in bf16 f16 f32; do
  timeout 90 $I launch -n 4 -- $I bench --graph --dtype $d --algo auto,zero-copy --sizes 1K,4K,16K,32K,64K,256K,1M,4M,16M,64M --iters 8 --warmup 2 > $w/dt_${d}.txt 2>&1; echo rc=$? >> $w/dt_${d}.txt
done
tm dtypes; pack
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
