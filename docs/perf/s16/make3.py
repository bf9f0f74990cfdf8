#!/usr/bin/env python3
"""Session 16 kernel variants, third round (the order of the zero-copy push two-shot's
stores), as copies of kernels/ under DEST/<name>/ for INC_KERNEL_DIR:
  nv   kernels/ unchanged (the control)
  rsb  ReduceStore's multi-chunk loop stores into rank (r + i + block) % W, not (r + i) % W
  rsw  the same rotated by warp: (r + i + warp) % W
  scb  the Scatter visits the peers in an order rotated by block (r + 1 + (i - 1 + block)
       % (W - 1)), not r + 1, r + 2, ... in every block
Same chunks, same values, only the order of the stores: results stay right.
usage: make3.py KERNELS_DIR DEST"""
import os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from variants import check, write  # noqa: E402

src, dest = sys.argv[1], sys.argv[2]
base = open(os.path.join(src, "two_shot.cu")).read()
RS = "inc_st_v4(a.sym[(a.rank + i) % W] + a.zc_offset"
SC = "        const u32 q = (a.rank + i) % a.world;\n        const u64 lo = (u64)q * slice;\n        const u64 hi = (lo + slice < chunks) ? lo + slice : chunks;\n        const u64 dst = a.data[q] + scratch"
check(base, RS, SC)
variants = {
    "nv": base,
    "rsb": base.replace(RS, RS.replace("(a.rank + i) % W", "(a.rank + i + blockIdx.x) % W")),
    "rsw": base.replace(RS, RS.replace("(a.rank + i) % W", "(a.rank + i + (threadIdx.x >> 5)) % W")),
    "scb": base.replace(SC, SC.replace("(a.rank + i) % a.world", "(a.rank + 1u + (i - 1u + blockIdx.x) % (a.world - 1u)) % a.world")),
}
write(src, dest, variants)
