#!/usr/bin/env bash
# GPU run 131 (session 16, 4-GPU machine, carry ["gpu"]; gpu/bench and gpu/gt built from
# eba167c): make3.py variants (the order of the zero-copy push two-shot's stores) through
# INC_KERNEL_DIR at worlds 4 and 2, alternated twice; the GPU test bundle on 2 GPUs; odd
# sizes at worlds 2, 3, 4 with the embedded cubins; the tables at world 4 with every peer
# (run 41's script).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r131; mkdir -p "$out" $w
source gpu/env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r131.tgz" -C /tmp r131; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
python3 docs/perf/s16/make3.py kernels $PWD/gpu/v16c > $w/make.txt 2>&1 || exit 1
one() {  # variant world sizes rep
  INC_KERNEL_DIR=$PWD/gpu/v16c/$1 INC_CACHE_DIR=/tmp/c-$1 timeout 120 $I launch -n $2 -- $I bench --graph --algo zero-copy --sizes $3 --iters 6 --warmup 1 > $w/w$2_$1_$4.txt 2>&1; echo rc=$? >> $w/w$2_$1_$4.txt
}
for rep in 1 2; do
  for v in nv rsb rsw scb; do one $v 4 4M,8M,16M,64M $rep; one $v 2 8M,16M,64M $rep; done
  tm rep$rep; pack
done
python3 - "$w" > $w/summary.txt <<'PY'
import sys, glob, re, os
rows = {}
for f in sorted(glob.glob(sys.argv[1] + "/w*_*.txt")):
    b = os.path.basename(f)[:-4].split("_")
    for line in open(f):
        m = re.match(r"\[rank 0\]\s+(\d+)\s+\d+\s+\S+\s+\S+\s+([\d.]+)\s+\S+\s+\S+\s+(\d+)", line)
        if m: rows.setdefault((b[0], int(m[1]), b[1]), []).append((float(m[2]), int(m[3])))
for k, r in sorted(rows.items()):
    print(k[0], f"{k[1]:>11} {k[2]:>6} zc " + " ".join(f"{z:8.2f}" for z, _ in r) + "  wrong " + str(sum(x for _, x in r)))
PY
pack
(cd gpu/gt && CUDA_VISIBLE_DEVICES=0,1 INC_CACHE_DIR=/tmp/c131-gt timeout 240 bash run.sh) > $w/gpu_test.txt 2>&1; echo rc=$? >> $w/gpu_test.txt
tm gt; pack
S=2,6,120,122,1022,4098,65538,262146,393218,1048576,1048578,2097154,3145730,4194306,6291458,8388610,16777218,100000002
for n in 2 3 4; do
  INC_CACHE_DIR=/tmp/c41 timeout 150 $I launch -n $n -- $I bench --graph --algo auto,two-shot,zero-copy --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
tm odd; pack
T=${T:-280} N=4 bash gpu/run41.sh; cp -r /tmp/r41-w4 $w/bench-w4; tm w4; pack
cat $w/summary.txt; grep -h "wrong total\|^rc" $w/odd_w*.txt; tail -n 3 $w/gpu_test.txt; cat $w/times.txt
