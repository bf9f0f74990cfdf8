#!/usr/bin/env python3
"""Session 16 kernel variants, fourth round (GPU run 133), as copies of kernels/ (as of
commit eba167c) under DEST/<name>/ for INC_KERNEL_DIR:
  nv    kernels/ unchanged (the control)
  ppr   the multi-chunk ReduceStore stores each result into my tensor and rank r + 1 only;
        then, peer after peer (r + 2, then r + 3, ...), copies those chunks from my tensor
        (local reads of what this thread stored) into the peer's: the reduce-store's NVLink
        stores go to one peer at a time, as the Scatter's do
  ppr2  the same with the peers after r + 1 in one pass (r + 2 and r + 3 per chunk)
  sc8   the push form's Scatter with 8 chunks in flight per thread (inc_copy_in: 4)
Same chunks and values into the same places: results stay right.
usage: make4.py KERNELS_DIR DEST"""
import os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from variants import check, write  # noqa: E402

src, dest = sys.argv[1], sys.argv[2]
base = open(os.path.join(src, "two_shot.cu")).read()
HEAD = "                                                      u64 own, u64 slice, u64 S) {\n"
STORE = """#pragma unroll
            for (u32 i = 0; i < W; ++i) {
                inc_st_v4(a.sym[(a.rank + i) % W] + a.zc_offset + (c + u * S) * 16u, v);
            }
        }
    }
    return c;
}
"""
def pp(first, groups):
    # first: ranks (r + i) stored in the loop; groups: lists of i copied after it
    body = STORE.replace("for (u32 i = 0; i < W; ++i)", "for (u32 i = 0; i < %d; ++i)" % first)
    tail = "    const u64 ce = c;\n"
    for g in groups:
        stores = "".join(
            "                if (%du < W) inc_st_v4(a.sym[(a.rank + %du) %% W] + a.zc_offset + (x + u * S) * 16u, v[u]);\n" % (i, i)
            for i in g)
        stores1 = "".join(
            "            if (%du < W) inc_st_v4(a.sym[(a.rank + %du) %% W] + a.zc_offset + x * 16u, w);\n" % (i, i) for i in g)
        tail += ("    if (%du < W) {" % g[0]) + """
        u64 x = c0;
        for (; x + 3 * U * S < ce; x += 4 * U * S) {
            uint4 v[4];
#pragma unroll
            for (u32 u = 0; u < 4; ++u) v[u] = inc_ld_cg_v4(a.input + (x + u * U * S) * 16u);
#pragma unroll
            for (u32 u = 0; u < 4; ++u) {
""" + stores.replace("(x + u * S)", "(x + u * U * S)") + """            }
        }
        for (; x < ce; x += S) {
            const uint4 w = inc_ld_cg_v4(a.input + x * 16u);
""" + stores1 + """        }
    }
"""
    # x steps: the loop's chunks are c0, c0 + S, ... below ce (U per iteration, stride S)
    tail = tail.replace("x + 3 * U * S < ce; x += 4 * U * S", "x + 3 * S < ce; x += 4 * S").replace("(x + u * U * S)", "(x + u * S)")
    body = body.replace("    return c;\n}\n", tail + "    return c;\n}\n")
    return base.replace(HEAD, HEAD + "    const u64 c0 = c;\n").replace(STORE, body)
CP = "        if (lo < hi) inc_copy_in<DT>(a, dst, lo, hi, nbytes);\n"
SC8 = """        if (lo < hi) {
            u64 c = inc_first_chunk(lo);
            for (; c + 7 * S < hi; c += 8 * S) {
                uint4 v[8];
#pragma unroll
                for (int u = 0; u < 8; ++u) v[u] = inc_load_input<DT>(a, c + u * S, nbytes);
#pragma unroll
                for (int u = 0; u < 8; ++u) inc_st_v4(dst + (c + u * S) * 16, v[u]);
            }
            for (; c < hi; c += S) inc_st_v4(dst + c * 16, inc_load_input<DT>(a, c, nbytes));
        }
"""
check(base, HEAD, STORE, CP)
variants = {
    "nv": base,
    "ppr": pp(2, [[2], [3], [4], [5], [6], [7]]),
    "ppr2": pp(2, [[2, 3, 4, 5, 6, 7]]),
    "sc8": base.replace(CP, SC8),
}
write(src, dest, variants)
