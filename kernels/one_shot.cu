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
    if (!zero_copy) inc_copy_in<DT>(a, own, 0, chunks, nbytes);

    // STEP one_shot 2 Barrier
    if (inc_barrier(a, k, INC_PAD_START, inc_others(a), 2, &s_fail)) {
        // STEP one_shot 3 ReduceAll
        inc_reduce<DT, OP>(a, k.region, 0, chunks, nbytes, 0);

        // STEP one_shot 4 EndBarrier
        if (zero_copy) inc_barrier(a, k, INC_PAD_END, inc_others(a), 4, &s_fail);
    }

    // STEP one_shot 5 Epilogue
    inc_epilogue(a, k);
}
