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
//   R[s] at inc_area(s, me) * C * 16 (s != me): writer s's input (PROTOCOL.md "Areas").

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

template <int DT, int OP>
__device__ void inc_one_shot(const IncArgs& a) {
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
    const u64 S = inc_stride();

    // STEP one_shot 1 PushIn
    // Two chunks per iteration (both loads before the stores); peers in rotated order; my
    // receive area in peer q's half at inc_area(me, q) * C chunks.
    u64 c = inc_first_chunk(0);
    for (; c + S < chunks; c += 2 * S) {
        const uint4 v0 = inc_load_input<DT>(a, c, nbytes);
        const uint4 v1 = inc_load_input<DT>(a, c + S, nbytes);
#pragma unroll
        for (u32 i = 1; i < INC_MAX_RANKS; ++i) {
            if (i < a.world) {
                const u32 q = inc_rot_peer(a, i);
                const u64 d = a.data[q] + k.region + (u64)inc_area(a.rank, q) * chunks * 16u;
                inc_st_v4(d + c * 16u, v0);
                inc_st_v4(d + (c + S) * 16u, v1);
            }
        }
    }
    for (; c < chunks; c += S) {
        const uint4 v0 = inc_load_input<DT>(a, c, nbytes);
#pragma unroll
        for (u32 i = 1; i < INC_MAX_RANKS; ++i) {
            if (i < a.world) {
                const u32 q = inc_rot_peer(a, i);
                inc_st_v4(a.data[q] + k.region + ((u64)inc_area(a.rank, q) * chunks + c) * 16u, v0);
            }
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
