#!/usr/bin/env bash
# GPU run 121: the grid of the bandwidth kernels, 128 blocks (MAX_BLOCKS until now) against
# the SM count (132 on H200). gpu/mb/inc = a bench built with MAX_BLOCKS = 160, its kernels
# (gpu/v/mb) through INC_KERNEL_DIR; gpu/bench/inc = the build before (embedded cubins).
# Env N = world (default 2). Alternated twice: old, b128, b132, auto (160 at these sizes).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/rblocks; mkdir -p "$out" $w
source gpu/env.sh
n=${N:-2}; S=${S:-4M,16M,32M,64M,256M}
export INC_BUFFER_BYTES=64M
for rep in 1 2; do
  for v in old b128 b132 auto; do
    unset INC_BLOCKS INC_KERNEL_DIR
    I=gpu/mb/inc; export INC_KERNEL_DIR=$PWD/gpu/v/mb
    case $v in old) I=gpu/bench/inc; unset INC_KERNEL_DIR ;; b128) export INC_BLOCKS=128 ;; b132) export INC_BLOCKS=132 ;; esac
    INC_CACHE_DIR=/tmp/c-$v timeout 150 $I launch -n $n -- $I bench --graph --algo auto,zero-copy --sizes $S --iters 6 --warmup 1 > $w/w${n}_${v}_$rep.txt 2>&1; echo rc=$? >> $w/w${n}_${v}_$rep.txt
  done
done
python3 - "$w" "$n" <<'PY'
import sys, glob, re, os
d, n = sys.argv[1], sys.argv[2]
rows = {}
for f in sorted(glob.glob(f"{d}/w{n}_*.txt")):
    v = os.path.basename(f).split("_")[1]
    for line in open(f):
        m = re.match(r"\[rank 0\]\s+(\d+)\s+\d+\s+\S+\s+\S+\s+([\d.]+)\s+\S+\s+\S+\s+(\d+)\s+\S+\s+([\d.]+)\s+\S+\s+\S+\s+(\d+)", line)
        if m:
            rows.setdefault((int(m[1]), v), []).append((float(m[2]), float(m[4]), int(m[3]) + int(m[5])))
for (size, v), r in sorted(rows.items()):
    print(f"{size:>11} {v:>5} auto " + " ".join(f"{a:8.2f}" for a, _, _ in r) + "  zc " + " ".join(f"{z:8.2f}" for _, z, _ in r) + "  wrong " + str(sum(x for _, _, x in r)))
PY
tar czf "$out/rblocks_w$n.tgz" -C /tmp rblocks
