// hybrid cube mesh allreduce (8 ranks): reduce inside my quad of NVLink neighbours, then
// combine with the relay's quad partial. Mirrors inc-sim program `inc::hcm`
// (docs/PROTOCOL.md "hybrid cube mesh"). Each parity half holds the input copy
// (chunks * 16 bytes) followed by the f32 partial (chunks * lanes * 4 bytes).

template <int DT, int OP>
__device__ void inc_hcm(const IncArgs& a) {
    __shared__ volatile int s_fail;
    __shared__ volatile u32 s_e;
    IncCall k;
    // STEP hcm 0 Prologue
    if (!inc_prologue(a, &s_fail, &s_e, k)) return;
    const int N = IncLanes<DT>::N;
    const u64 nbytes = a.count * (u64)IncLanes<DT>::ES;
    const u64 chunks = (nbytes + 15) / 16;
    const u64 own = a.data[a.rank] + k.region;
    const u64 partial_off = k.region + chunks * 16;
    const u32 quad_mask = (1u << a.rank) | (1u << a.hcm[0]) | (1u << a.hcm[1]) | (1u << a.hcm[2]);
    const u32 relay = a.hcm[3];
    // lo = the quad that holds the smallest rank of both quads (rank 0 for W = 8).
    const bool mine_is_lo = (quad_mask & 1u) != 0;

    // STEP hcm 1 CopyIn
    inc_copy_in<DT>(a, own, 0, chunks, nbytes);

    // STEP hcm 2 Barrier
    if (inc_barrier(a, k, INC_PAD_START, quad_mask & ~(1u << a.rank), 2, &s_fail)) {
        // STEP hcm 3 QuadReduce
        for (u64 c = inc_first_chunk(0); c < chunks; c += inc_stride()) {
            float acc[8];
            bool first = true;
#pragma unroll
            for (u32 q = 0; q < INC_MAX_RANKS; ++q) {
                if (quad_mask & (1u << q)) {
                    inc_fold_chunk<DT, OP>(acc, inc_ld_cg_v4(a.data[q] + k.region + c * 16), first);
                    first = false;
                }
            }
            const u64 dst = a.data[a.rank] + partial_off + c * (u64)N * 4;
#pragma unroll
            for (int h = 0; h < N / 4; ++h) {
                uint4 v;
                v.x = __float_as_uint(acc[4 * h]);
                v.y = __float_as_uint(acc[4 * h + 1]);
                v.z = __float_as_uint(acc[4 * h + 2]);
                v.w = __float_as_uint(acc[4 * h + 3]);
                inc_st_v4(dst + h * 16, v);
            }
        }

        // STEP hcm 4 Barrier
        if (inc_barrier(a, k, INC_PAD_MID, 1u << relay, 4, &s_fail)) {
            // STEP hcm 5 RelayReduce
            const u64 lo_base = a.data[mine_is_lo ? a.rank : relay] + partial_off;
            const u64 hi_base = a.data[mine_is_lo ? relay : a.rank] + partial_off;
            for (u64 c = inc_first_chunk(0); c < chunks; c += inc_stride()) {
                float acc[8];
#pragma unroll
                for (int h = 0; h < N / 4; ++h) {
                    const uint4 l = inc_ld_cg_v4(lo_base + c * (u64)N * 4 + h * 16);
                    const uint4 r = inc_ld_cg_v4(hi_base + c * (u64)N * 4 + h * 16);
                    acc[4 * h] = inc_fold<OP>(__uint_as_float(l.x), __uint_as_float(r.x));
                    acc[4 * h + 1] = inc_fold<OP>(__uint_as_float(l.y), __uint_as_float(r.y));
                    acc[4 * h + 2] = inc_fold<OP>(__uint_as_float(l.z), __uint_as_float(r.z));
                    acc[4 * h + 3] = inc_fold<OP>(__uint_as_float(l.w), __uint_as_float(r.w));
                }
                inc_finish<DT, OP>(acc, a.scale);
                inc_store_output<DT>(a, c, nbytes, inc_pack<DT>(acc));
            }
        }
    }

    // STEP hcm 6 Epilogue
    inc_epilogue(a, k);
}
