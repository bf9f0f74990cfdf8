#!/usr/bin/env python3
"""Session 16 kernel variants, second round (GPU run 130), as copies of kernels/ under
DEST/<name>/ for INC_KERNEL_DIR:
  old  kernels/ of commit c7ae948 (world 2's four-chunk ReduceStore only; OLD_TWO_SHOT is
       that two_shot.cu)
  t    kernels/ with inc_zcp_reduce_store_w: world 2 four chunks, world 4 two chunks per
       iteration, the ranks a compile-time W
  t3   t, and world 3 two chunks per iteration
  tsc  t3, and where a slice is at most one chunk a thread (slice <= S) the Scatter loads
       its chunk of every peer's slice before storing any (W - 1 loads in flight, not one)
usage: make2.py KERNELS_DIR OLD_TWO_SHOT DEST"""
import os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from variants import check, write  # noqa: E402

src, old, dest = sys.argv[1], sys.argv[2], sys.argv[3]
base = open(os.path.join(src, "two_shot.cu")).read()
W4 = "        } else if (a.world == 4) {\n            c = inc_zcp_reduce_store_w<DT, OP, 4, 2>(a, c, lo, hf, own, slice, S);\n"
W3 = W4.replace("a.world == 4", "a.world == 3").replace("4, 2>", "3, 2>")
SCAT = """    // STEP two_shot_zcp 1 Scatter
    for (u32 i = 1; i < a.world; ++i) {
        const u32 q = (a.rank + i) % a.world;
        const u64 lo = (u64)q * slice;
        const u64 hi = (lo + slice < chunks) ? lo + slice : chunks;
        const u64 dst = a.data[q] + scratch + (u64)inc_area(a.rank, q) * slice * 16u - lo * 16u;
        if (lo < hi) inc_copy_in<DT>(a, dst, lo, hi, nbytes);
    }
"""
SCAT1 = """    // STEP two_shot_zcp 1 Scatter
    if (slice <= S) {
        uint4 v[INC_MAX_RANKS];
        u64 cq[INC_MAX_RANKS];
#pragma unroll
        for (u32 i = 1; i < INC_MAX_RANKS; ++i) {
            if (i < a.world) {
                const u32 q = (a.rank + i) % a.world;
                const u64 lo = (u64)q * slice;
                const u64 hi = (lo + slice < chunks) ? lo + slice : chunks;
                cq[i] = inc_first_chunk(lo);
                if (cq[i] < hi) {
                    v[i] = inc_load_input<DT>(a, cq[i], nbytes);
                } else {
                    cq[i] = ~0ull;
                }
            }
        }
#pragma unroll
        for (u32 i = 1; i < INC_MAX_RANKS; ++i) {
            if (i < a.world && cq[i] != ~0ull) {
                const u32 q = (a.rank + i) % a.world;
                const u64 lo = (u64)q * slice;
                const u64 dst = a.data[q] + scratch + (u64)inc_area(a.rank, q) * slice * 16u - lo * 16u;
                inc_st_v4(dst + cq[i] * 16u, v[i]);
            }
        }
    } else {
    for (u32 i = 1; i < a.world; ++i) {
        const u32 q = (a.rank + i) % a.world;
        const u64 lo = (u64)q * slice;
        const u64 hi = (lo + slice < chunks) ? lo + slice : chunks;
        const u64 dst = a.data[q] + scratch + (u64)inc_area(a.rank, q) * slice * 16u - lo * 16u;
        if (lo < hi) inc_copy_in<DT>(a, dst, lo, hi, nbytes);
    }
    }
"""
check(base, W4, SCAT)
t3 = base.replace(W4, W4 + W3)
variants = {
    "old": open(old).read(),
    "t": base,
    "t3": t3,
    "tsc": t3.replace(SCAT, SCAT1),
}
write(src, dest, variants)
