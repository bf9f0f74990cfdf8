#!/usr/bin/env bash
# GPU run 130 (session 16, 4-GPU machine, carry ["gpu"]; gpu/two_shot_c7ae948.cu =
# `git show c7ae948:kernels/two_shot.cu`): make2.py variants old, t, t3, tsc through
# INC_KERNEL_DIR, zero-copy at worlds 4, 2 and 3, alternated twice; then odd sizes with tsc
# at worlds 2, 3, 4 (must be 0 wrong).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r130; mkdir -p "$out" $w
source gpu/env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r130.tgz" -C /tmp r130; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
python3 docs/perf/s16/make2.py kernels gpu/two_shot_c7ae948.cu $PWD/gpu/v16b > $w/make.txt 2>&1 || exit 1
one() {  # variant world sizes rep
  INC_KERNEL_DIR=$PWD/gpu/v16b/$1 INC_CACHE_DIR=/tmp/c-$1 timeout 120 $I launch -n $2 -- $I bench --graph --algo zero-copy --sizes $3 --iters 6 --warmup 1 > $w/w$2_$1_$4.txt 2>&1; echo rc=$? >> $w/w$2_$1_$4.txt
}
for rep in 1 2; do
  for v in old t t3 tsc; do
    one $v 4 4M,8M,16M,64M,256M $rep; one $v 2 16M,64M,256M $rep; one $v 3 3M,4M,16M,64M $rep
  done
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
S=2,6,120,122,1022,4098,65538,262146,393218,1048576,1048578,2097154,3145730,4194306,6291458,8388610,16777218,100000002
for n in 2 3 4; do
  INC_KERNEL_DIR=$PWD/gpu/v16b/tsc INC_CACHE_DIR=/tmp/c-tsc timeout 150 $I launch -n $n -- $I bench --graph --algo auto,two-shot,zero-copy --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
tm odd; pack
cat $w/summary.txt; grep -h "wrong total\|^rc" $w/odd_w*.txt; cat $w/times.txt
