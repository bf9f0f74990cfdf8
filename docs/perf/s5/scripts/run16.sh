#!/usr/bin/env bash
# GPU run 16 (session 5, 2 GPUs): LL grid sweep (INC_BLOCKS) at 4K-64K; the soak with
# zero-copy calls (10^5 calls up to 4 MB; 2000 calls up to 64 MB); new default grid check.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r16; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc
nvidia-smi -L > $w/gpus.txt
n=$(nvidia-smi -L | wc -l)
b() { local tag=$1; shift
  timeout 150 $I launch -n 2 -- $I bench "$@" --csv $w/$tag.csv > $w/$tag.txt 2>&1; echo "rc=$?" >> $w/$tag.txt; }
LL="--graph --algo push-one-shot --sizes 4K,8K,16K,32K,64K --iters 10 --warmup 3"
b ll_default $LL
for nb in 1 2 4 8; do INC_BLOCKS=$nb b ll_blocks$nb $LL; done
b ll_default_2 $LL
b grid_new --graph --algo one-shot,two-shot,zero-copy --sizes 256K,512K,1M,2M,4M --iters 8 --warmup 2
timeout 200 $I launch -n 2 -- $I soak --calls 100000 --max-bytes 4M --full-every 4 --time-limit 150 > $w/soak_4M_w2.txt 2>&1; echo "rc=$?" >> $w/soak_4M_w2.txt
timeout 200 $I launch -n 2 -- $I soak --calls 2000 --max-bytes 64M --full-every 4 --time-limit 120 > $w/soak_64M_w2.txt 2>&1; echo "rc=$?" >> $w/soak_64M_w2.txt
tar czf "$out/r16.tgz" -C /tmp r16
