// two-shot allreduce: reduce-scatter (rank r reduces slice r in place), then all-gather.
// Mirrors inc-sim program `inc::two_shot` (docs/PROTOCOL.md "two-shot").

template <int DT, int OP>
__device__ void inc_two_shot(const IncArgs& a) {
    __shared__ volatile int s_fail;
    __shared__ volatile u32 s_e;
    IncCall k;
    // STEP two_shot 0 Prologue
    if (!inc_prologue(a, &s_fail, &s_e, k)) return;
    const u64 nbytes = a.count * (u64)IncLanes<DT>::ES;
    const u64 chunks = (nbytes + 15) / 16;
    const bool zero_copy = (a.flags & INC_FLAG_ZERO_COPY) != 0;
    const u64 own = a.data[a.rank] + k.region;
    const u64 slice = (chunks + a.world - 1) / a.world;
    const u64 lo = (u64)a.rank * slice;
    const u64 hi = (lo + slice < chunks) ? lo + slice : chunks;

    // STEP two_shot 1 CopyIn
    if (!zero_copy) {
        for (u64 c = inc_first_chunk(0); c < chunks; c += inc_stride()) {
            inc_st_v4(own + c * 16, inc_load_input<DT>(a, c, nbytes));
        }
    }

    // STEP two_shot 2 Barrier
    if (inc_barrier(a, k, INC_PAD_START, inc_others(a), 2, &s_fail)) {
        // STEP two_shot 3 ReduceSlice
        for (u64 c = inc_first_chunk(lo); c < hi; c += inc_stride()) {
            uint4 raw[INC_MAX_RANKS];
#pragma unroll
            for (u32 q = 0; q < INC_MAX_RANKS; ++q) {
                if (q < a.world) raw[q] = inc_ld_cg_v4(a.data[q] + k.region + c * 16);
            }
            float acc[8];
#pragma unroll
            for (u32 q = 0; q < INC_MAX_RANKS; ++q) {
                if (q < a.world) inc_fold_chunk<DT, OP>(acc, raw[q], q == 0);
            }
            inc_finish<DT, OP>(acc, a.scale);
            const uint4 v = inc_pack<DT>(acc);
            inc_st_v4(own + c * 16, v);
            inc_store_output<DT>(a, c, nbytes, v);
        }

        // STEP two_shot 4 Barrier
        if (inc_barrier(a, k, INC_PAD_MID, inc_others(a), 4, &s_fail)) {
            // STEP two_shot 5 Gather
            for (u64 c = inc_first_chunk(0); c < chunks; c += inc_stride()) {
                const u64 q = c / slice;
                if (q == a.rank) continue;
                inc_store_output<DT>(a, c, nbytes, inc_ld_cg_v4(a.data[q] + k.region + c * 16));
            }

            // STEP two_shot 6 EndBarrier
            if (zero_copy) inc_barrier(a, k, INC_PAD_END, inc_others(a), 6, &s_fail);
        }
    }

    // STEP two_shot 7 Epilogue
    inc_epilogue(a, k);
}
