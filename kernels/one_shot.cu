// one-shot allreduce: every rank reads every peer's whole buffer.
// Mirrors inc-sim program `inc::one_shot` (docs/PROTOCOL.md "one-shot").

template <int DT, int OP>
__device__ void inc_one_shot(const IncArgs& a) {
    __shared__ volatile int s_fail;
    __shared__ volatile u32 s_e;
    IncCall k;
    // STEP one_shot 0 Prologue
    if (!inc_prologue(a, &s_fail, &s_e, k)) return;
    const u64 nbytes = a.count * (u64)IncLanes<DT>::ES;
    const u64 chunks = (nbytes + 15) / 16;
    const bool zero_copy = (a.flags & INC_FLAG_ZERO_COPY) != 0;
    const u64 own = a.data[a.rank] + k.region;

    // STEP one_shot 1 CopyIn
    if (!zero_copy) {
        for (u64 c = inc_first_chunk(0); c < chunks; c += inc_stride()) {
            inc_st_v4(own + c * 16, inc_load_input<DT>(a, c, nbytes));
        }
    }

    // STEP one_shot 2 Barrier
    if (inc_barrier(a, k, INC_PAD_START, inc_others(a), 2, &s_fail)) {
        // STEP one_shot 3 ReduceAll
        for (u64 c = inc_first_chunk(0); c < chunks; c += inc_stride()) {
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
            inc_store_output<DT>(a, c, nbytes, inc_pack<DT>(acc));
        }

        // STEP one_shot 4 EndBarrier
        if (zero_copy) inc_barrier(a, k, INC_PAD_END, inc_others(a), 4, &s_fail);
    }

    // STEP one_shot 5 Epilogue
    inc_epilogue(a, k);
}
