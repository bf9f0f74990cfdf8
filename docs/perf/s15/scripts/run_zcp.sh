#!/usr/bin/env bash
# GPU run 123 (2-GPU machine): the zero-copy push two-shot's phases and a two-chunk
# ReduceStore (variants/make.py: nv, u2, sonly, ronly through INC_KERNEL_DIR), world N
# (default 2), zero-copy column, alternated twice. sonly / ronly time one phase (results wrong).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/rzcp; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
n=${N:-2}; S=${S:-16M,64M,256M}; V=${V:-nv u2 sonly ronly}
python3 docs/perf/s15/variants/make.py kernels $PWD/gpu/v15 > $w/make.txt 2>&1 || exit 1
for rep in 1 2; do
  for v in $V; do
    export INC_KERNEL_DIR=$PWD/gpu/v15/$v
    INC_CACHE_DIR=/tmp/c-$v timeout 150 $I launch -n $n -- $I bench --graph --algo zero-copy --sizes $S --iters 6 --warmup 1 > $w/w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/w${n}_${v}_$rep.txt
  done
done
python3 - "$w" <<'PY'
import sys, glob, re, os
rows = {}
for f in sorted(glob.glob(sys.argv[1] + "/w*_*.txt")):
    b = os.path.basename(f)[:-4].split("_")
    for line in open(f):
        m = re.match(r"\[rank 0\]\s+(\d+)\s+\d+\s+\S+\s+\S+\s+([\d.]+)\s+\S+\s+\S+\s+(\d+)", line)
        if m: rows.setdefault((b[0], int(m[1]), b[1]), []).append((float(m[2]), int(m[3])))
for k, r in sorted(rows.items()):
    print(k[0], f"{k[1]:>11} {k[2]:>6} " + " ".join(f"{a:8.2f}" for a, _ in r) + "  wrong " + " ".join(str(x) for _, x in r))
PY
tar czf "$out/rzcp_w$n.tgz" -C /tmp rzcp
