#!/usr/bin/env python3
"""Kernel variants prepared for session 17 (not run: no device time left in session 16), as
copies of kernels/ (as of commit 15ff1dd) under DEST/<name>/ for INC_KERNEL_DIR:
  nv    kernels/ unchanged (the control)
  fw1   the push form's one-chunk loop (and so every whole chunk at worlds 3 and 4) also
        stores into my tensor and rank r + 1's only, and Forward covers every whole chunk
        of my slice: the sim's program to the letter (PROTOCOL.md "Push form")
  fw8   Forward with eight chunks' loads in flight (four now)
  cfw   the copy-in two-shot's ReduceSlice (loop form) the same way as the push form's
        Forward: where the output is 16-byte aligned and W > 2, each whole chunk's result
        goes to my output and rank r + 1's gather area only, then a pass reads my output
        back and stores it into the other peers' gather areas (the lead for the copy-in
        path at world 4 above 64M, 1.03-1.06 x NCCL; a protocol change if adopted: a
        Forward step in PROTOCOL.md "two-shot" and inc-sim's `inc::two_shot` first)
Same chunks and values into the same places: results stay right.
usage: make5.py KERNELS_DIR DEST"""
import os, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from variants import check, write  # noqa: E402

src, dest = sys.argv[1], sys.argv[2]
base = open(os.path.join(src, "two_shot.cu")).read()
ONE = """        for (; c < hf; c += S) {
            const uint4 v0 = inc_fold_received<DT, OP>(a, c, nbytes, own, slice, c - lo);
#pragma unroll
            for (u32 i = 0; i < INC_MAX_RANKS; ++i) {
                if (i < a.world) {
"""
ONE_FW = """        for (; c < hf; c += S) {
            const uint4 v0 = inc_fold_received<DT, OP>(a, c, nbytes, own, slice, c - lo);
#pragma unroll
            for (u32 i = 0; i < INC_MAX_RANKS; ++i) {
                if (i < a.world && (i < 2 || a.world > 4)) {
"""
CE = "        const u64 ce = c;\n"
CE_FW = "        const u64 ce = a.world <= 4 ? hf : c;\n"
FW4 = """    for (; c + 3 * S < ce; c += 4 * S) {
        uint4 v[4];
#pragma unroll
        for (u32 u = 0; u < 4; ++u) v[u] = inc_ld_cg_v4(a.input + (c + u * S) * 16u);
#pragma unroll
        for (u32 u = 0; u < 4; ++u) {"""
FW8 = FW4.replace("c + 3 * S < ce; c += 4 * S", "c + 7 * S < ce; c += 8 * S").replace(
    "uint4 v[4]", "uint4 v[8]").replace("u < 4;", "u < 8;")
CS = """        for (u64 c = inc_first_chunk_g(lo, G); c < hi; c += S) {
            const uint4 v = inc_fold_received<DT, OP>(a, c, nbytes, own, slice, c - lo);
            inc_st_gather(a, k.region + gather, slice, c - lo, v);
            inc_store_output<DT>(a, c, nbytes, v);
        }
"""
CFW = """        const bool fw = (a.flags & INC_FLAG_IO_ALIGNED) != 0 && a.world > 2;
        const u64 whole = nbytes / 16 < hi ? nbytes / 16 : hi;
        for (u64 c = inc_first_chunk_g(lo, G); c < hi; c += S) {
            const uint4 v = inc_fold_received<DT, OP>(a, c, nbytes, own, slice, c - lo);
            if (fw && c < whole) {
                const u32 p = inc_rot_peer(a, 1);
                inc_st_v4(a.data[p] + k.region + gather + ((u64)inc_area(a.rank, p) * slice + c - lo) * 16u, v);
            } else {
                inc_st_gather(a, k.region + gather, slice, c - lo, v);
            }
            inc_store_output<DT>(a, c, nbytes, v);
        }
        if (fw) {
            u64 c = inc_first_chunk_g(lo, G);
            for (; c + 3 * S < whole; c += 4 * S) {
                uint4 v[4];
#pragma unroll
                for (u32 u = 0; u < 4; ++u) v[u] = inc_ld_cg_v4(a.output + (c + u * S) * 16u);
#pragma unroll
                for (u32 u = 0; u < 4; ++u) {
                    for (u32 i = 2; i < a.world; ++i) {
                        const u32 p = inc_rot_peer(a, i);
                        inc_st_v4(a.data[p] + k.region + gather + ((u64)inc_area(a.rank, p) * slice + c + u * S - lo) * 16u, v[u]);
                    }
                }
            }
            for (; c < whole; c += S) {
                const uint4 v = inc_ld_cg_v4(a.output + c * 16u);
                for (u32 i = 2; i < a.world; ++i) {
                    const u32 p = inc_rot_peer(a, i);
                    inc_st_v4(a.data[p] + k.region + gather + ((u64)inc_area(a.rank, p) * slice + c - lo) * 16u, v);
                }
            }
        }
"""
check(base, ONE, CE, FW4, CS)
variants = {
    "nv": base,
    "fw1": base.replace(ONE, ONE_FW).replace(CE, CE_FW),
    "fw8": base.replace(FW4, FW8),
    "cfw": base.replace(CS, CFW),
}
write(src, dest, variants)
