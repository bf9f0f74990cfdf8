#!/usr/bin/env bash
# GPU run 133 (session 16, 4-GPU machine, carry ["gpu"]; gpu/bench from eba167c): make4.py
# variants (nv, ppr, ppr2, sc8) through INC_KERNEL_DIR, zero-copy at worlds 4 and 2 (and 3
# for nv, ppr), alternated twice; odd sizes with ppr and ppr2 at worlds 3 and 4 (0 wrong).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r133; mkdir -p "$out" $w
source gpu/env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
pack() { tar czf "$out/r133.tgz" -C /tmp r133; }
t0=$(date +%s); tm() { echo "$1 t=$(( $(date +%s) - t0 ))" >> $w/times.txt; }
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
python3 docs/perf/s16/make4.py kernels $PWD/gpu/v16d > $w/make.txt 2>&1 || exit 1
one() {  # variant world sizes rep
  INC_KERNEL_DIR=$PWD/gpu/v16d/$1 INC_CACHE_DIR=/tmp/c-$1 timeout 120 $I launch -n $2 -- $I bench --graph --algo zero-copy --sizes $3 --iters 6 --warmup 1 > $w/w$2_$1_$4.txt 2>&1; echo rc=$? >> $w/w$2_$1_$4.txt
}
for rep in 1 2; do
  for v in nv ppr ppr2 sc8; do one $v 4 8M,16M,64M,256M $rep; one $v 2 16M,64M $rep; done
  for v in nv ppr; do one $v 3 16M,64M $rep; done
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
S=2,6,1022,65538,1048578,3145730,4194306,6291458,8388610,16777218,100000002
for v in ppr ppr2; do for n in 3 4; do
  INC_KERNEL_DIR=$PWD/gpu/v16d/$v INC_CACHE_DIR=/tmp/c-$v timeout 100 $I launch -n $n -- $I bench --graph --algo zero-copy --sizes $S --iters 2 --warmup 1 > $w/odd_${v}_w$n.txt 2>&1; echo rc=$? >> $w/odd_${v}_w$n.txt
done; done
tm odd; pack
cat $w/summary.txt; grep -H "wrong total\|^rc" $w/odd_*.txt; cat $w/times.txt
