#!/usr/bin/env python3
"""Session 15 kernel variants of the zero-copy push two-shot (inc_two_shot_zcp), written
as copies of kernels/ under DEST/<name>/ for INC_KERNEL_DIR:
  nv     kernels/ unchanged (the control, compiled at run time like the variants)
  u2     ReduceStore takes two chunks per iteration (2W loads in flight, as inc_two_shot_zc)
  sonly  the ReduceStore loop skipped (scatter + barriers: phase cost; results wrong)
  ronly  the Scatter skipped (barriers + reduce-store: phase cost; results wrong)
  u2cs2  u2, and the copy-in two-shot's ReduceSlice two chunks per iteration too
  u4w2cs2  u2cs2, and at world 2 the zcp ReduceStore four chunks per iteration (8 loads)
  w2u4   nv, and at world 2 only the zcp ReduceStore four chunks per iteration (8 loads)
  w2u8   nv, and at world 2 only the zcp ReduceStore eight chunks per iteration (16 loads)
usage: make.py KERNELS_DIR DEST"""
import os, shutil, sys

src, dest = sys.argv[1], sys.argv[2]
base = open(os.path.join(src, "two_shot.cu")).read()

LOOP = """        for (u64 c = inc_first_chunk(lo); c < hf; c += S) {
            const uint4 v0 = inc_fold_received<DT, OP>(a, c, nbytes, own, slice, c - lo);
#pragma unroll
            for (u32 i = 0; i < INC_MAX_RANKS; ++i) {
                if (i < a.world) {
                    const u32 q = (a.rank + i) % a.world;
                    inc_st_v4(a.sym[q] + a.zc_offset + c * 16u, v0);
                }
            }
        }
"""
U2 = """        for (u64 c = inc_first_chunk(lo); c < hf; c += 2 * S) {
            const bool two = c + S < hf;
            uint4 r0[INC_MAX_RANKS], r1[INC_MAX_RANKS];
#pragma unroll
            for (u32 q = 0; q < INC_MAX_RANKS; ++q) {
                if (q < a.world) {
                    const u64 rq = own + (u64)inc_area(q, a.rank) * slice * 16u;
                    if (q == a.rank) {
                        r0[q] = inc_load_input<DT>(a, c, nbytes);
                        if (two) r1[q] = inc_load_input<DT>(a, c + S, nbytes);
                    } else {
                        r0[q] = inc_ld_cg_v4(rq + (c - lo) * 16u);
                        if (two) r1[q] = inc_ld_cg_v4(rq + (c + S - lo) * 16u);
                    }
                }
            }
            const uint4 v0 = inc_fold_ranks<DT, OP>(a, r0);
            uint4 v1 = v0;
            if (two) v1 = inc_fold_ranks<DT, OP>(a, r1);
#pragma unroll
            for (u32 i = 0; i < INC_MAX_RANKS; ++i) {
                if (i < a.world) {
                    const u32 q = (a.rank + i) % a.world;
                    inc_st_v4(a.sym[q] + a.zc_offset + c * 16u, v0);
                    if (two) inc_st_v4(a.sym[q] + a.zc_offset + (c + S) * 16u, v1);
                }
            }
        }
"""
W2 = """        u64 c0 = inc_first_chunk(lo);
        if (a.world == 2) {
            const u32 o = a.rank ^ 1u;
            const u64 rq = own + (u64)inc_area(o, a.rank) * slice * 16u;
            for (; c0 + 3 * S < hf; c0 += 4 * S) {
                uint4 m[4], p[4];
#pragma unroll
                for (int u = 0; u < 4; ++u) {
                    m[u] = inc_load_input<DT>(a, c0 + u * S, nbytes);
                    p[u] = inc_ld_cg_v4(rq + (c0 + u * S - lo) * 16u);
                }
#pragma unroll
                for (int u = 0; u < 4; ++u) {
                    uint4 r[INC_MAX_RANKS];
                    r[0] = a.rank == 0 ? m[u] : p[u];
                    r[1] = a.rank == 0 ? p[u] : m[u];
                    const uint4 v = inc_fold_ranks<DT, OP>(a, r);
                    inc_st_v4(a.sym[a.rank] + a.zc_offset + (c0 + u * S) * 16u, v);
                    inc_st_v4(a.sym[o] + a.zc_offset + (c0 + u * S) * 16u, v);
                }
            }
        }
"""
CS = """        for (u64 c = inc_first_chunk_g(lo, G); c < hi; c += S) {
            const uint4 v = inc_fold_received<DT, OP>(a, c, nbytes, own, slice, c - lo);
            inc_st_gather(a, k.region + gather, slice, c - lo, v);
            inc_store_output<DT>(a, c, nbytes, v);
        }
"""
CS2 = """        for (u64 c = inc_first_chunk_g(lo, G); c < hi; c += 2 * S) {
            const bool two = c + S < hi;
            uint4 r0[INC_MAX_RANKS], r1[INC_MAX_RANKS];
#pragma unroll
            for (u32 q = 0; q < INC_MAX_RANKS; ++q) {
                if (q < a.world) {
                    const u64 rq = own + (u64)inc_area(q, a.rank) * slice * 16u;
                    if (q == a.rank) {
                        r0[q] = inc_load_input<DT>(a, c, nbytes);
                        if (two) r1[q] = inc_load_input<DT>(a, c + S, nbytes);
                    } else {
                        r0[q] = inc_ld_cg_v4(rq + (c - lo) * 16u);
                        if (two) r1[q] = inc_ld_cg_v4(rq + (c + S - lo) * 16u);
                    }
                }
            }
            const uint4 v0 = inc_fold_ranks<DT, OP>(a, r0);
            inc_st_gather(a, k.region + gather, slice, c - lo, v0);
            inc_store_output<DT>(a, c, nbytes, v0);
            if (two) {
                const uint4 v1 = inc_fold_ranks<DT, OP>(a, r1);
                inc_st_gather(a, k.region + gather, slice, c + S - lo, v1);
                inc_store_output<DT>(a, c + S, nbytes, v1);
            }
        }
"""
SCAT = "        if (lo < hi) inc_copy_in<DT>(a, dst, lo, hi, nbytes);\n"
assert base.count(LOOP) == 1 and base.count(SCAT) == 1 and base.count(CS) == 1
def w2(n):
    return W2.replace("uint4 m[4], p[4]", "uint4 m[%d], p[%d]" % (n, n)).replace(
        "c0 + 3 * S < hf; c0 += 4 * S", "c0 + %d * S < hf; c0 += %d * S" % (n - 1, n)).replace(
        "u < 4;", "u < %d;" % n)
ORIG_C0 = LOOP.replace("for (u64 c = inc_first_chunk(lo);", "for (u64 c = c0;")
u2cs2 = base.replace(LOOP, U2).replace(CS, CS2)
u4w2 = base.replace(LOOP, W2 + U2.replace("for (u64 c = inc_first_chunk(lo);", "for (u64 c = c0;")).replace(CS, CS2)
variants = {
    "nv": base,
    "u2": base.replace(LOOP, U2),
    "sonly": base.replace(LOOP, LOOP.replace("c = inc_first_chunk(lo); c < hf", "c = hf; c < hf")),
    "ronly": base.replace(SCAT, "        if (lo < hi && a.count == 0) inc_copy_in<DT>(a, dst, lo, hi, nbytes);\n"),
    "u2cs2": u2cs2,
    "u4w2cs2": u4w2,
    "w2u4": base.replace(LOOP, w2(4) + ORIG_C0),
    "w2u8": base.replace(LOOP, w2(8) + ORIG_C0),
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
