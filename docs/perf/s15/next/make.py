#!/usr/bin/env python3
"""Kernel variants for session 16's first device call (next/run_w4.sh), written as copies of
kernels/ (as of commit 86ada0f or later, while these strings match) under DEST/<name>/ for
INC_KERNEL_DIR:
  nv     kernels/ unchanged (the control, compiled at run time like the variants)
  sonly  the zero-copy push two-shot without its ReduceStore (scatter + barriers; wrong)
  ronly  the same without its Scatter (barriers + reduce-store; wrong)
usage: make.py KERNELS_DIR DEST"""
import os, shutil, sys

src, dest = sys.argv[1], sys.argv[2]
base = open(os.path.join(src, "two_shot.cu")).read()
RS = "        u64 c = inc_first_chunk(lo);\n        if (a.world == 2) c = inc_zcp_reduce_store_w2"
SCAT = "        if (lo < hi) inc_copy_in<DT>(a, dst, lo, hi, nbytes);\n"
assert base.count(RS) == 1 and base.count(SCAT) == 1, "kernels/ moved on: update the strings"
variants = {
    "nv": base,
    "sonly": base.replace(RS, RS.replace("u64 c = inc_first_chunk(lo);", "u64 c = hf;")),
    "ronly": base.replace(SCAT, SCAT.replace("if (lo < hi)", "if (lo < hi && a.count == 0)")),
}
for name, text in variants.items():
    d = os.path.join(dest, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for f in os.listdir(src):
        if f.endswith(".cu") or f.endswith(".cuh"):
            shutil.copy(os.path.join(src, f), d)
    open(os.path.join(d, "two_shot.cu"), "w").write(text)
print("variants:", " ".join(variants))
