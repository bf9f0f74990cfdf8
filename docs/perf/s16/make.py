#!/usr/bin/env python3
"""Session 16 kernel variants of the zero-copy push two-shot (inc_two_shot_zcp), written as
copies of kernels/ under DEST/<name>/ for INC_KERNEL_DIR:
  nv      kernels/ unchanged (the control, compiled at run time like the variants)
  sonly   the ReduceStore skipped (scatter + barriers: the phase's cost; results wrong)
  ronly   the Scatter skipped (barriers + reduce-store: the phase's cost; results wrong)
  zonly   inc_two_shot holds only the push form (what an entry of its own would compile
          to: every other two-shot call does nothing, so only zero-copy push calls are right)
  w4x2    nv, and at world 4 the ReduceStore two chunks per iteration, all 8 loads in flight
          (ranks a compile-time 4)
  zw4x2   zonly and w4x2 together
  zw4x3   zonly, and at world 4 three chunks per iteration (12 loads in flight)
usage: make.py KERNELS_DIR DEST"""
import os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from variants import check, write  # noqa: E402

src, dest = sys.argv[1], sys.argv[2]
base = open(os.path.join(src, "two_shot.cu")).read()
RS = "        u64 c = inc_first_chunk(lo);\n        if (a.world == 2) c = inc_zcp_reduce_store_w2"
SCAT = "        if (lo < hi) inc_copy_in<DT>(a, dst, lo, hi, nbytes);\n"
CALL = "        if (a.world == 2) c = inc_zcp_reduce_store_w2<DT, OP>(a, c, lo, hf, nbytes, own, slice, S);\n"
ENTRY = "__device__ void inc_two_shot(const IncArgs& a) {\n"
ZCP = "// two-shot, zero-copy, push form: the scatter"
check(base, RS, SCAT, CALL, ENTRY, ZCP)
WN = """// variant: ReduceStore of my chunks c, c + S, ... below hf, U chunks per iteration at a
// compile-time world W (all U * W loads in flight); returns the first chunk it left.
template <int DT, int OP, int W, int U>
__device__ __forceinline__ u64 inc_zcp_reduce_store_wn(const IncArgs& a, u64 c, u64 lo, u64 hf,
                                                       u64 nbytes, u64 own, u64 slice, u64 S) {
    u64 src[W];
#pragma unroll
    for (int q = 0; q < W; ++q) {
        src[q] = q == (int)a.rank ? a.input : own + ((u64)inc_area(q, a.rank) * slice - lo) * 16u;
    }
    for (; c + (U - 1) * S < hf; c += U * S) {
        uint4 r[U][W];
#pragma unroll
        for (int u = 0; u < U; ++u) {
#pragma unroll
            for (int q = 0; q < W; ++q) r[u][q] = inc_ld_cg_v4(src[q] + (c + u * S) * 16u);
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            float acc[8];
#pragma unroll
            for (int q = 0; q < W; ++q) inc_fold_chunk<DT, OP>(acc, r[u][q], q == 0);
            inc_finish<DT, OP>(acc, a.scale);
            const uint4 v = inc_pack<DT>(acc);
#pragma unroll
            for (int i = 0; i < W; ++i) {
                const u32 q = (a.rank + i) % W;
                inc_st_v4(a.sym[q] + a.zc_offset + (c + u * S) * 16u, v);
            }
        }
    }
    return c;
}

"""
W4CALL = CALL + "        else if (a.world == 4) c = inc_zcp_reduce_store_wn<DT, OP, 4, 2>(a, c, lo, hf, nbytes, own, slice, S);\n"
ZONLY = ENTRY + "    if (a.flags & INC_FLAG_ZC_PUSH) inc_two_shot_zcp<DT, OP>(a);\n    return;\n"
w4x2 = base.replace(ZCP, WN + ZCP).replace(CALL, W4CALL)
variants = {
    "nv": base,
    "sonly": base.replace(RS, RS.replace("u64 c = inc_first_chunk(lo);", "u64 c = hf;")),
    "ronly": base.replace(SCAT, SCAT.replace("if (lo < hi)", "if (lo < hi && a.count == 0)")),
    "zonly": base.replace(ENTRY, ZONLY),
    "w4x2": w4x2,
    "zw4x2": w4x2.replace(ENTRY, ZONLY),
    "zw4x3": w4x2.replace(ENTRY, ZONLY).replace("<DT, OP, 4, 2>", "<DT, OP, 4, 3>"),
}
write(src, dest, variants)
