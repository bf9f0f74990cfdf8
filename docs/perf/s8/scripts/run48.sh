#!/usr/bin/env bash
# GPU run 48 (session 8, 4 GPUs): LL (push one-shot) with blocks of 256 (base), 128, 64
# threads at worlds 4, 3, 2, alternated twice; NCCL-symm beside base in the first pass.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r48; mkdir -p "$out" $w
source gpu/env.sh
export INC_BUFFER_BYTES=64M
S=1K,4K,8K,16K,32K,64K,128K
pack() { tar czf "$out/r48.tgz" -C /tmp r48; }
t0=$(date +%s)
for n in 4 2 3; do for r in 1 2; do for b in bench ll128 ll64; do
  I=gpu/$b/inc; cmp=; [ $b = bench ] && [ $r = 1 ] && cmp="--compare nccl"
  timeout 60 $I launch -n $n -- $I bench --graph --algo push-one-shot $cmp --sizes $S --iters 10 --warmup 2 > $w/${b}_w${n}_$r.txt 2>&1; echo rc=$? t=$(( $(date +%s) - t0 )) >> $w/${b}_w${n}_$r.txt
  pack
done; done; done
