#!/usr/bin/env python3
"""Kernel variants of session 17 (run 136), as copies of kernels/ (as of commit 15ff1dd)
under DEST/<name>/ for INC_KERNEL_DIR. The zero-copy push two-shot's Scatter, "one
peer a block" (session 16's bare copy at 16 MiB a peer: 152.8 us against 163.0 for peer
after peer, what the Scatter does now):
  nv    kernels/ unchanged (the control)
  opbx  one peer a block with per-block barriers kept exact: with m = floor(G / (W-1)),
        block b < m (W-1) is block i = b / (W-1) of group g = b % (W-1) and scatters
        chunks i T + t + k m T (relative to the slice's start) of rank r + 1 + g's slice;
        it signals that rank alone, into the start slots of blocks i (W-1) .. i (W-1) +
        W - 2 (so every owner block b waits, as now, on its own slot from every writer:
        writer s's block i (W-1) + ((r - s - 1) mod W) wrote its chunks); the owner's block
        b = i (W-1) + j folds chunks (j m + i) T + t + k m (W-1) T of its slice (a subset of
        what those writer blocks stored), and Forward the same chunks. Blocks b >= m (W-1)
        move nothing and signal every peer as now. Correct: its results must be right
usage: make6.py KERNELS_DIR DEST"""
import os, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "s16"))
from variants import check, write  # noqa: E402

src, dest = sys.argv[1], sys.argv[2]
base = open(os.path.join(src, "two_shot.cu")).read()

SCATTER = """    // STEP two_shot_zcp 1 Scatter
    for (u32 i = 1; i < a.world; ++i) {"""
BAR = """    if (inc_barrier(a, k, INC_PAD_START, inc_others(a), 2, &s_fail)) {
        // STEP two_shot_zcp 3 ReduceStore"""
ENTRY = "template <int DT, int OP>\n__device__ void inc_two_shot_zcp(const IncArgs& a) {"
BARX = """    if (inc_barrier_opb(a, k, 2, &s_fail)) {
        // STEP two_shot_zcp 3 ReduceStore"""
OPB_BAR = """// variant opbx (session 17): the start barrier of the one-peer-a-block scatter
__device__ bool inc_barrier_opb(const IncArgs& a, const IncCall& k, u32 phase, volatile int* s_fail) {
    __syncthreads();
    const u32 t = threadIdx.x;
    const u32 W1 = a.world - 1u;
    const u32 m = gridDim.x / W1;
    if (t < W1 && *s_fail == 0) {
        const u32 peer = t < a.rank ? t : t + 1u;  // the t-th other rank: the one I wait on
        u32 to = peer, sb = blockIdx.x;
        if (blockIdx.x < m * W1) {
            to = (a.rank + 1u + blockIdx.x % W1) % a.world;
            sb = (blockIdx.x / W1) * W1 + t;
        }
        inc_st_release_sys(a.pad[to] + INC_PAD_START + ((u64)(k.p * INC_MAX_BLOCKS + sb) * INC_MAX_RANKS + a.rank) * 8u, k.flag);
        const u64 mine = a.pad[a.rank] + INC_PAD_START + ((u64)(k.p * INC_MAX_BLOCKS + blockIdx.x) * INC_MAX_RANKS + peer) * 8u;
        const u64 t0 = inc_now_ns();
        u32 it = 0;
        u64 v = inc_ld_acquire_sys(mine);
        while (v != k.flag) {
            const u32 ve = (u32)(v >> 32);
            if (ve == k.e || inc_tag_newer(ve, k.e)) {
                inc_fail(a, ve == k.e ? INC_ERR_CALL_MISMATCH : INC_ERR_SEQ_MISMATCH, peer, phase, k.flag, v);
                *s_fail = 1;
                break;
            }
            if ((++it & INC_SPIN_CHECK) == 0u) {
                if (*s_fail != 0) break;
                if (inc_wait_slow(a, t0, peer, phase, k.flag, v) != 0u) {
                    *s_fail = 1;
                    break;
                }
            }
            v = inc_ld_acquire_sys(mine);
        }
        if (v == k.flag) inc_st_relaxed_sys_u64(mine, 0ull);
    }
    __syncthreads();
    return *s_fail == 0;
}

"""
SCATTER_X = """    // STEP two_shot_zcp 1 Scatter
    const u32 W1 = a.world - 1u;
    const u32 m = gridDim.x / W1;
    const u64 T = blockDim.x;
    if (blockIdx.x < m * W1) {
        const u32 q = (a.rank + 1u + blockIdx.x % W1) % a.world;
        const u64 lo = (u64)q * slice;
        const u64 hi = (lo + slice < chunks) ? lo + slice : chunks;
        const u64 dst = a.data[q] + scratch + (u64)inc_area(a.rank, q) * slice * 16u - lo * 16u;
        const u64 S1 = (u64)m * T;
        u64 c = lo + (u64)(blockIdx.x / W1) * T + threadIdx.x;
        for (; c + 3 * S1 < hi; c += 4 * S1) {
            uint4 v[4];
#pragma unroll
            for (u32 u = 0; u < 4; ++u) v[u] = inc_load_input<DT>(a, c + u * S1, nbytes);
#pragma unroll
            for (u32 u = 0; u < 4; ++u) inc_st_v4(dst + (c + u * S1) * 16u, v[u]);
        }
        for (; c < hi; c += S1) inc_st_v4(dst + c * 16u, inc_load_input<DT>(a, c, nbytes));
    }
    if (false)
    for (u32 i = 1; i < a.world; ++i) {"""
STRIDE = """    const u64 S = inc_stride();

    // STEP two_shot_zcp 1 Scatter"""
C0 = "        const u64 c0 = inc_first_chunk(lo);\n"
C0X = """        // my chunks: (j m + i) T + t + k m (W-1) T of my slice, block b = i (W-1) + j
        const u64 c0 = blockIdx.x < m * W1
            ? lo + ((u64)(blockIdx.x % W1) * m + blockIdx.x / W1) * T + threadIdx.x
            : hf;
"""
TAIL = """        if (full < hi && full >= lo && inc_first_chunk(full) == full) {
            const uint4 v = inc_fold_received"""
TAILX = """        if (full < hi && blockIdx.x < m * W1 && full >= c0 && (full - c0) % S == 0) {
            const uint4 v = inc_fold_received"""
check(base, SCATTER, BAR, ENTRY, STRIDE, C0, TAIL)
opbx = (base.replace(STRIDE, STRIDE.replace("inc_stride()", "(u64)(gridDim.x / (a.world - 1u)) * (a.world - 1u) * blockDim.x"))
        .replace(SCATTER, SCATTER_X).replace(BAR, BARX).replace(ENTRY, OPB_BAR + ENTRY)
        .replace(C0, C0X).replace(TAIL, TAILX))
write(src, dest, {"nv": base, "opbx": opbx})
