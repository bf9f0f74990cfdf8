// one-shot allreduce.
// Copy-in (push form): every rank stores its input into its receive area R[me] of every
// peer's parity half, a start barrier, then each rank folds R[0..W] locally in rank order
// (its own input for R[me]). Remote stores keep NVLink busier than pulls, and the fold
// reads local memory (4x H200 GPU run 51, against the pull form: world 4 512 KiB 10.1 ->
// 9.0 us, 256 KiB 7.1 -> 6.6; world 3 1 MiB 11.7 -> 10.4; world 2 16 KiB-2 MiB 0.3-0.5 us
// less). No end barrier: the parity halves stand in for it, as for the two-shot's Scatter.
// Mirrors inc-sim program `inc::one_shot` (docs/PROTOCOL.md "one-shot").
//
// Parity half p of a rank (region = p * half_bytes), C = ceil(bytes / 16) chunks:
//   R[s] at s * C * 16 (s = 0..W): writer s's input (R[me] unused: I read my input).

// one-shot, zero-copy (symmetric tensors): every rank reads every rank's tensor
// (data[q] + zc_offset) and folds it; the end barrier keeps my kernel running until every
// peer has read my tensor. Mirrors inc-sim program `inc::one_shot_zc` (docs/PROTOCOL.md
// "one-shot, zero-copy").
template <int DT, int OP>
__device__ void inc_one_shot_zc(const IncArgs& a) {
    __shared__ volatile int s_fail;
    __shared__ volatile u32 s_e;
    IncCall k;
    // STEP one_shot_zc 0 Prologue
    if (!inc_prologue(a, &s_fail, &s_e, k)) return;
    const u64 nbytes = a.count * (u64)IncLanes<DT>::ES;
    const u64 chunks = (nbytes + 15) / 16;
    // STEP one_shot_zc 1 CopyIn
    // (the user's write of its tensor before the launch: nothing to do here)

    // STEP one_shot_zc 2 Barrier
    if (inc_barrier(a, k, INC_PAD_START, inc_others(a), 2, &s_fail)) {
        // STEP one_shot_zc 3 ReduceAll
        inc_reduce<DT, OP>(a, k.region, 0, chunks, nbytes, 0);

        // STEP one_shot_zc 4 EndBarrier
        inc_barrier(a, k, INC_PAD_END, inc_others(a), 4, &s_fail);
    }

    // STEP one_shot_zc 5 Epilogue
    inc_epilogue(a, k);
}


#ifndef INC_RU
#define INC_RU 4
#endif
#ifndef INC_AHEAD
#define INC_AHEAD 1
#endif
#ifndef INC_MINR
#define INC_MINR 4
#endif
// PROTOTYPE (session 13): world 2, the one-shot in rounds. Block b, round i covers chunks
// (i*G + b)*per .. +per (per = T*u). Round flags: slot k = i % 8 of [p][b] (START area for
// k < 4, MID for 4..7; index k%4*2 + writer).
__device__ __forceinline__ u64 inc_rnd_slot(const IncArgs& a, u32 owner, u32 p, u32 i, u32 s) {
    const u32 k = i & 7u;
    const u64 area = (k < 4u) ? INC_PAD_START : INC_PAD_MID;
    return a.pad[owner] + area + ((u64)(p * INC_MAX_BLOCKS + blockIdx.x) * INC_MAX_RANKS + (k & 3u) * 2u + s) * 8u;
}

__device__ bool inc_rnd_wait(const IncArgs& a, const IncCall& k, u32 i, volatile int* s_fail) {
    const u32 peer = a.rank ^ 1u;
    if (threadIdx.x == 0 && *s_fail == 0) {
        const u64 mine = inc_rnd_slot(a, a.rank, k.p, i, peer);
        const u64 t0 = inc_now_ns();
        u32 it = 0;
        u64 v = inc_ld_acquire_sys(mine);
        while (v != k.flag) {
            const u32 ve = (u32)(v >> 32);
            if (ve == k.e || inc_tag_newer(ve, k.e)) {
                inc_fail(a, ve == k.e ? INC_ERR_CALL_MISMATCH : INC_ERR_SEQ_MISMATCH, peer, 2, k.flag, v);
                *s_fail = 1;
                break;
            }
            if ((++it & INC_SPIN_CHECK) == 0u) {
                if (inc_wait_slow(a, t0, peer, 2, k.flag, v) != 0u) {
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

template <int DT>
__device__ __forceinline__ void inc_rnd_push(const IncArgs& a, const IncCall& k, u64 base, u32 u, u64 chunks, u64 nbytes, u64 dst, u32 i) {
    uint4 v[INC_RU];
#pragma unroll
    for (u32 x = 0; x < INC_RU; ++x) {
        const u64 c = base + (u64)x * blockDim.x + threadIdx.x;
        if (x < u && c < chunks) v[x] = inc_load_input<DT>(a, c, nbytes);
    }
#pragma unroll
    for (u32 x = 0; x < INC_RU; ++x) {
        const u64 c = base + (u64)x * blockDim.x + threadIdx.x;
        if (x < u && c < chunks) inc_st_v4(dst + c * 16u, v[x]);
    }
    __syncthreads();
    if (threadIdx.x == 0) inc_st_release_sys(inc_rnd_slot(a, a.rank ^ 1u, k.p, i, a.rank), k.flag);
}

template <int DT, int OP>
__device__ void inc_one_shot_rnd(const IncArgs& a) {
    __shared__ volatile int s_fail;
    __shared__ volatile u32 s_e;
    IncCall k;
    if (!inc_prologue(a, &s_fail, &s_e, k)) return;
    const u64 nbytes = a.count * (u64)IncLanes<DT>::ES;
    const u64 chunks = (nbytes + 15) / 16;
    const u32 peer = a.rank ^ 1u;
    const u64 dst = a.data[peer] + k.region + (u64)a.rank * chunks * 16u;
    const u64 recv = a.data[a.rank] + k.region;
    const u64 T = blockDim.x, G = gridDim.x;
    u64 uu = (chunks + G * T * INC_MINR - 1) / (G * T * INC_MINR);
    const u32 u = uu < 1 ? 1u : (uu > INC_RU ? (u32)INC_RU : (u32)uu);
    const u64 per = T * u;
    const u64 first = (u64)blockIdx.x * per;
    const u32 nr = first < chunks ? (u32)((chunks - first + G * per - 1) / (G * per)) : 0u;
    for (u32 i = 0; i < INC_AHEAD && i < nr; ++i) inc_rnd_push<DT>(a, k, (i * G + blockIdx.x) * per, u, chunks, nbytes, dst, i);
    for (u32 i = 0; i < nr; ++i) {
        if (i + INC_AHEAD < nr) inc_rnd_push<DT>(a, k, ((i + INC_AHEAD) * G + blockIdx.x) * per, u, chunks, nbytes, dst, i + INC_AHEAD);
        if (!inc_rnd_wait(a, k, i, &s_fail)) break;
        const u64 base = (i * G + blockIdx.x) * per;
        uint4 r0[INC_RU], r1[INC_RU];
#pragma unroll
        for (u32 x = 0; x < INC_RU; ++x) {
            const u64 c = base + (u64)x * T + threadIdx.x;
            if (x < u && c < chunks) {
                r0[x] = inc_load_input<DT>(a, c, nbytes);
                r1[x] = inc_ld_cg_v4(recv + ((u64)peer * chunks + c) * 16u);
            }
        }
#pragma unroll
        for (u32 x = 0; x < INC_RU; ++x) {
            const u64 c = base + (u64)x * T + threadIdx.x;
            if (x < u && c < chunks) {
                const bool lo = a.rank == 0u;
                float acc[8];
                inc_fold_chunk<DT, OP>(acc, lo ? r0[x] : r1[x], true);
                inc_fold_chunk<DT, OP>(acc, lo ? r1[x] : r0[x], false);
                inc_finish<DT, OP>(acc, a.scale);
                inc_store_output<DT>(a, c, nbytes, inc_pack<DT>(acc));
            }
        }
    }
    inc_epilogue(a, k);
}

template <int DT, int OP>
__device__ void inc_one_shot(const IncArgs& a) {
    if (a.world == 2 && (a.flags & INC_FLAG_ZERO_COPY) == 0) {
        inc_one_shot_rnd<DT, OP>(a);
        return;
    }
    if (a.flags & INC_FLAG_ZERO_COPY) {
        inc_one_shot_zc<DT, OP>(a);
        return;
    }
    __shared__ volatile int s_fail;
    __shared__ volatile u32 s_e;
    IncCall k;
    // STEP one_shot 0 Prologue
    if (!inc_prologue(a, &s_fail, &s_e, k)) return;
    const u64 nbytes = a.count * (u64)IncLanes<DT>::ES;
    const u64 chunks = (nbytes + 15) / 16;
    const u64 own = a.data[a.rank] + k.region;
    const u64 mine = (u64)a.rank * chunks * 16u;  // R[me] in every peer's half
    const u64 S = inc_stride();

    // STEP one_shot 1 PushIn
    // Two chunks per iteration (both loads before the stores); peers in rotated order.
    u64 c = inc_first_chunk(0);
    for (; c + S < chunks; c += 2 * S) {
        const uint4 v0 = inc_load_input<DT>(a, c, nbytes);
        const uint4 v1 = inc_load_input<DT>(a, c + S, nbytes);
#pragma unroll
        for (u32 i = 1; i < INC_MAX_RANKS; ++i) {
            if (i < a.world) {
                const u64 d = a.data[(a.rank + i) % a.world] + k.region + mine;
                inc_st_v4(d + c * 16u, v0);
                inc_st_v4(d + (c + S) * 16u, v1);
            }
        }
    }
    for (; c < chunks; c += S) {
        const uint4 v0 = inc_load_input<DT>(a, c, nbytes);
#pragma unroll
        for (u32 i = 1; i < INC_MAX_RANKS; ++i) {
            if (i < a.world) inc_st_v4(a.data[(a.rank + i) % a.world] + k.region + mine + c * 16u, v0);
        }
    }

    // STEP one_shot 2 Barrier
    if (inc_barrier(a, k, INC_PAD_START, inc_others(a), 2, &s_fail)) {
        // STEP one_shot 3 ReduceRecv
        // Local reads: one chunk per iteration, W loads in flight.
        for (u64 c2 = inc_first_chunk(0); c2 < chunks; c2 += S) {
            inc_store_output<DT>(a, c2, nbytes, inc_fold_received<DT, OP>(a, c2, nbytes, own, chunks, c2));
        }
    }

    // STEP one_shot 4 Epilogue
    inc_epilogue(a, k);
}
