#!/usr/bin/env bash
# GPU run 90 (session 12): the LL128 two-shot prototype (docs/perf/s12/ll128_2s.cu, one
# process, W GPUs with peer access) beside inc's two-shot and auto (inc bench, graph) on the
# same sizes, worlds 4 and 2, alternated twice; prototype without and with the flag clear.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r90; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M INC_CACHE_DIR=/tmp/c90
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r90.tgz" -C /tmp r90; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
nvcc -O3 -arch=sm_90 -o /tmp/ll128_2s docs/perf/s12/ll128_2s.cu > $w/nvcc.txt 2>&1; echo rc=$? >> $w/nvcc.txt
tm nvcc; pack
S=131072,262144,524288,1048576,2097152,4194304
for n in 4 2; do
  dev=0,1,2,3; [ $n = 2 ] && dev=0,1
  for rep in 1 2; do
    timeout 60 $I launch -n $n -- $I bench --graph --algo auto,two-shot,zero-copy --sizes 128K,256K,512K,1M,2M,4M --iters 8 --warmup 2 > $w/inc_w${n}_$rep.txt 2>&1; echo rc=$? >> $w/inc_w${n}_$rep.txt
    for c in 0 1; do
      CUDA_VISIBLE_DEVICES=$dev timeout 60 /tmp/ll128_2s $n $c ${S//,/ } > $w/ll128_w${n}_c${c}_$rep.txt 2>&1; echo rc=$? >> $w/ll128_w${n}_c${c}_$rep.txt
    done
    tm w$n-$rep; pack
  done
done
