#!/usr/bin/env bash
# GPU run 124 (4-GPU machine): variants/make.py nv, u2cs2, u4w2cs2 through INC_KERNEL_DIR,
# worlds 2 and 4, auto (copy-in) and zero-copy columns, alternated twice; then odd sizes
# with u4w2cs2 at worlds 2, 3, 4 (must be 0 wrong).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/ru2; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
python3 docs/perf/s15/variants/make.py kernels $PWD/gpu/v15 > $w/make.txt 2>&1 || exit 1
one() {  # variant world sizes rep
  export INC_KERNEL_DIR=$PWD/gpu/v15/$1
  INC_CACHE_DIR=/tmp/c-$1 timeout 150 $I launch -n $2 -- $I bench --graph --algo auto,zero-copy --sizes $3 --iters 6 --warmup 1 > $w/w$2_$1_$4.txt 2>&1; echo rc=$? >> $w/w$2_$1_$4.txt
}
for rep in 1 2; do
  for v in nv u2cs2 u4w2cs2; do one $v 2 4M,16M,32M,64M,256M $rep; one $v 4 4M,16M,64M,256M $rep; done
done
export INC_KERNEL_DIR=$PWD/gpu/v15/u4w2cs2 INC_CACHE_DIR=/tmp/c-u4w2cs2
S=2,6,120,122,1022,4098,65538,262146,393218,1048576,1048578,2097154,4194306,8388610,16777218,100000002
for n in 2 3 4; do
  timeout 150 $I launch -n $n -- $I bench --graph --algo auto,two-shot,zero-copy --sizes $S --iters 2 --warmup 1 > $w/odd_w$n.txt 2>&1; echo rc=$? >> $w/odd_w$n.txt
done
python3 - "$w" <<'PY'
import sys, glob, re, os
rows = {}
for f in sorted(glob.glob(sys.argv[1] + "/w*_*.txt")):
    b = os.path.basename(f)[:-4].split("_")
    for line in open(f):
        m = re.match(r"\[rank 0\]\s+(\d+)\s+\d+\s+\S+\s+\S+\s+([\d.]+)\s+\S+\s+\S+\s+(\d+)\s+\S+\s+([\d.]+)\s+\S+\s+\S+\s+(\d+)", line)
        if m: rows.setdefault((b[0], int(m[1]), b[1]), []).append((float(m[2]), float(m[4]), int(m[3]) + int(m[5])))
for k, r in sorted(rows.items()):
    print(k[0], f"{k[1]:>11} {k[2]:>8} auto " + " ".join(f"{a:8.2f}" for a, _, _ in r) + "  zc " + " ".join(f"{z:8.2f}" for _, z, _ in r) + "  wrong " + str(sum(x for _, _, x in r)))
PY
grep -h "wrong total\|^rc" $w/odd_w*.txt
tar czf "$out/ru2.tgz" -C /tmp ru2
