#!/usr/bin/env python3
"""Kernel variants of session 17 (run 136), as copies of kernels/ (as of commit 15ff1dd)
under DEST/<name>/ for INC_KERNEL_DIR. All change the zero-copy push two-shot's Scatter
at worlds 3 and 4 only (world 2 has one peer):
  nv    kernels/ unchanged (the control)
  opb   "one peer a block": block b scatters only to rank r + 1 + (b mod (W-1)), the
        blocks of one residue splitting that peer's slice (session 16's bare copy at 16 MiB
        a peer: 152.8 us against 163.0 for peer after peer, what the Scatter does now).
        The per-block start barrier then no longer orders my reads after the stores they
        need (block b's chunks come from other blocks of the writers): a PROBE of the
        time only, its results may be wrong
  opbg  opb, then a grid barrier among my own blocks after the start barrier (each block
        publishes the flag into its own-rank slot of the unused mid array, every block
        waits for all G; bounded by the timeout): after it every block has acquired every
        writer block's flag, so the reads are ordered again (the correct form's cost)
  gb    the control plus the same grid barrier (what the grid barrier alone costs)
usage: make6.py KERNELS_DIR DEST"""
import os, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "s16"))
from variants import check, write  # noqa: E402

src, dest = sys.argv[1], sys.argv[2]
base = open(os.path.join(src, "two_shot.cu")).read()

SCATTER = """    // STEP two_shot_zcp 1 Scatter
    for (u32 i = 1; i < a.world; ++i) {"""
SCATTER_OPB = """    // STEP two_shot_zcp 1 Scatter
    if (a.world > 2 && gridDim.x >= a.world - 1) {
        const u32 W1 = a.world - 1;
        const u32 g = blockIdx.x % W1;
        const u32 nb = (gridDim.x - g + W1 - 1) / W1;
        const u32 q = (a.rank + 1 + g) % a.world;
        const u64 lo = (u64)q * slice;
        const u64 hi = (lo + slice < chunks) ? lo + slice : chunks;
        const u64 dst = a.data[q] + scratch + (u64)inc_area(a.rank, q) * slice * 16u - lo * 16u;
        const u64 S1 = (u64)nb * blockDim.x;
        u64 c = lo + (u64)(blockIdx.x / W1) * blockDim.x + threadIdx.x;
        for (; c + 3 * S1 < hi; c += 4 * S1) {
            uint4 v[4];
#pragma unroll
            for (u32 u = 0; u < 4; ++u) v[u] = inc_load_input<DT>(a, c + u * S1, nbytes);
#pragma unroll
            for (u32 u = 0; u < 4; ++u) inc_st_v4(dst + (c + u * S1) * 16u, v[u]);
        }
        for (; c < hi; c += S1) inc_st_v4(dst + c * 16u, inc_load_input<DT>(a, c, nbytes));
    } else
    for (u32 i = 1; i < a.world; ++i) {"""
BAR = """    if (inc_barrier(a, k, INC_PAD_START, inc_others(a), 2, &s_fail)) {
        // STEP two_shot_zcp 3 ReduceStore"""
BAR_GB = """    if (inc_barrier(a, k, INC_PAD_START, inc_others(a), 2, &s_fail) && inc_grid_probe(a, k)) {
        // STEP two_shot_zcp 3 ReduceStore"""
ENTRY = "template <int DT, int OP>\n__device__ void inc_two_shot_zcp(const IncArgs& a) {"
GRID = """// probe (session 17): a barrier among my own blocks, in my own-rank column of the mid
// flags (no peer writes it; the push form uses no mid barrier), bounded by the timeout
__device__ bool inc_grid_probe(const IncArgs& a, const IncCall& k) {
    if (a.world <= 2) return true;
    const u64 base = a.pad[a.rank] + INC_PAD_MID + ((u64)k.p * INC_MAX_BLOCKS * INC_MAX_RANKS + a.rank) * 8u;
    if (threadIdx.x == 0) inc_st_release_sys(base + (u64)blockIdx.x * INC_MAX_RANKS * 8u, k.flag);
    if (threadIdx.x < gridDim.x) {
        const u64 w = base + (u64)threadIdx.x * INC_MAX_RANKS * 8u;
        const u64 t0 = inc_now_ns();
        while (inc_ld_acquire_sys(w) != k.flag) {
            if (inc_now_ns() - t0 > a.timeout_ns) break;
        }
    }
    __syncthreads();
    return true;
}

"""
check(base, SCATTER, BAR, ENTRY)
opb = base.replace(SCATTER, SCATTER_OPB)
gb = base.replace(BAR, BAR_GB).replace(ENTRY, GRID + ENTRY)
opbg = opb.replace(BAR, BAR_GB).replace(ENTRY, GRID + ENTRY)
write(src, dest, {"nv": base, "opb": opb, "opbg": opbg, "gb": gb})
