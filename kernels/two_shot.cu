// two-shot allreduce, push form: reduce-scatter by storing each slice of my input straight
// into its owner's receive area (copy-in fused into the NVLink transfer), a barrier, the
// owner reduces its slice locally in rank order, then all-gather by storing the result into
// every peer's gather area, a barrier, and a local copy-out. Every byte crosses NVLink once
// per phase as a store (stores keep the links busier than pulls). Mirrors inc-sim program
// `inc::two_shot` (docs/PROTOCOL.md "two-shot").
//
// Parity half p of rank r (region = p * half_bytes), S = ceil(C / W) chunks a slice, one
// area per other rank in rank order (inc_area; PROTOCOL.md "Areas"):
//   R[s] at inc_area(s, r) * S * 16 (s != r): slice r of writer s's input
//   G    at (W - 1) * S * 16: G[inc_area(q, r) * S + j] = chunk q * S + j of the result,
//        from q, the owner of that slice (q != r).

// two-shot, zero-copy (symmetric tensors): every rank's tensor is buf[q] = data[q] +
// zc_offset, readable and writable by every rank. In place: the owner of slice r folds
// buf[0..W][c] for its chunks c in rank order and stores the result into every buf[q][c];
// only the owner ever touches a slice, so no barrier separates the reads from the stores.
// The end barrier keeps my kernel running until every peer stored into my tensor.
// Mirrors inc-sim program `inc::two_shot_zc` (docs/PROTOCOL.md "two-shot, zero-copy").
template <int DT, int OP>
__device__ void inc_two_shot_zc(const IncArgs& a) {
    __shared__ volatile int s_fail;
    __shared__ volatile u32 s_e;
    IncCall k;
    // STEP two_shot_zc 0 Prologue
    if (!inc_prologue(a, &s_fail, &s_e, k)) return;
    const u64 nbytes = a.count * (u64)IncLanes<DT>::ES;
    const u64 chunks = (nbytes + 15) / 16;
    const u64 slice = (chunks + a.world - 1) / a.world;
    const u64 lo = (u64)a.rank * slice;
    const u64 hi = (lo + slice < chunks) ? lo + slice : chunks;
    const u64 S = inc_stride();

    // STEP two_shot_zc 1 Barrier
    if (inc_barrier(a, k, INC_PAD_START, inc_others(a), 1, &s_fail)) {
        // STEP two_shot_zc 2 ReduceStore
        // Whole chunks here; the partial tail chunk (if mine) after the loop, masked.
        const u64 full = nbytes / 16;
        const u64 hf = hi < full ? hi : full;
        for (u64 c = inc_first_chunk(lo); c < hf; c += 2 * S) {
            const bool two = c + S < hf;
            uint4 r0[INC_MAX_RANKS], r1[INC_MAX_RANKS];
#pragma unroll
            for (u32 q = 0; q < INC_MAX_RANKS; ++q) {
                if (q < a.world) {
                    const u64 src = a.data[q] + k.region;
                    r0[q] = inc_ld_cg_v4(src + c * 16u);
                    if (two) r1[q] = inc_ld_cg_v4(src + (c + S) * 16u);
                }
            }
            const uint4 v0 = inc_fold_ranks<DT, OP>(a, r0);
            uint4 v1;
            if (two) v1 = inc_fold_ranks<DT, OP>(a, r1);
            // rotated order: at any time the owners store into different ranks
#pragma unroll
            for (u32 i = 0; i < INC_MAX_RANKS; ++i) {
                if (i < a.world) {
                    const u32 q = (a.rank + i) % a.world;
                    const u64 dst = a.data[q] + k.region;
                    inc_st_v4(dst + c * 16u, v0);
                    if (two) inc_st_v4(dst + (c + S) * 16u, v1);
                }
            }
        }
        if (full < hi && full >= lo && inc_first_chunk(full) == full) {
            uint4 r[INC_MAX_RANKS];
#pragma unroll
            for (u32 q = 0; q < INC_MAX_RANKS; ++q) {
                if (q < a.world) r[q] = inc_ld_cg_v4(a.data[q] + k.region + full * 16u);
            }
            const uint4 v = inc_fold_ranks<DT, OP>(a, r);
            for (u32 q = 0; q < a.world; ++q) inc_store_at<DT>(a.data[q] + k.region, false, full, nbytes, v);
        }
        // STEP two_shot_zc 3 EndBarrier
        inc_barrier(a, k, INC_PAD_END, inc_others(a), 3, &s_fail);
    }

    // STEP two_shot_zc 4 Epilogue
    inc_epilogue(a, k);
}

// The zero-copy push two-shot's ReduceStore at a world of W ranks (known at compile time)
// for my chunks c, c + S, ... below hf, U per iteration with all U * W loads (my tensor's
// chunk and what each peer sent to `own`'s areas) in flight together; returns the first
// chunk it left (fewer than U remain, for the one-chunk loop after it). Same chunks and
// rank-order fold as that loop, but it stores each result into my tensor and rank r + 1's
// only (every rank's at world 2): inc_zcp_forward copies these chunks into the other ranks'
// tensors afterwards, one pass with four chunks in flight, so that the fold's NVLink stores
// go to one peer. (GPU runs on 4x H200 against one chunk per iteration storing into every
// rank: world 2 four chunks, 64 MiB 193.8 -> 189.4 us, 256 MiB 762.8 -> 747.0, eight
// spilled registers and gained less (run 125); world 3 two chunks, 16 MiB 70.0 -> 68.9,
// 64 MiB 259.7 -> 257.7; world 4 two chunks, 16 MiB 78.6 -> 78.1, 64 MiB 293.1 -> 292.1,
// three gained nothing; the ranks a compile-time W, not the runtime loop to INC_MAX_RANKS:
// world 2 16 MiB 52.0 -> 51.6 (run 130). Then the forward pass: world 4 64 MiB 290.7 ->
// 286.2, 256 MiB 1161.1 -> 1147.2, 16 MiB 77.9 -> 77.2; world 3 64 MiB 257.8 -> 255.6; the
// peers after r + 1 in passes of their own gained the same (run 133).)
template <int DT, int OP, u32 W, u32 U>
__device__ __forceinline__ u64 inc_zcp_reduce_store_w(const IncArgs& a, u64 c, u64 lo, u64 hf,
                                                      u64 own, u64 slice, u64 S) {
    // chunk c of rank q's contribution at src[q] + c * 16 (u64 wraps back for the areas)
    u64 src[W];
#pragma unroll
    for (u32 q = 0; q < W; ++q) {
        src[q] = q == a.rank ? a.input : own + ((u64)inc_area(q, a.rank) * slice - lo) * 16u;
    }
    for (; c + (U - 1) * S < hf; c += U * S) {
        uint4 r[U][W];
#pragma unroll
        for (u32 u = 0; u < U; ++u) {
#pragma unroll
            for (u32 q = 0; q < W; ++q) r[u][q] = inc_ld_cg_v4(src[q] + (c + u * S) * 16u);
        }
#pragma unroll
        for (u32 u = 0; u < U; ++u) {
            float acc[8];
#pragma unroll
            for (u32 q = 0; q < W; ++q) inc_fold_chunk<DT, OP>(acc, r[u][q], q == 0);
            inc_finish<DT, OP>(acc, a.scale);
            const uint4 v = inc_pack<DT>(acc);
            // mine and rank r + 1's (all at world 2); Forward stores the others
            inc_st_v4(a.sym[a.rank] + a.zc_offset + (c + u * S) * 16u, v);
            inc_st_v4(a.sym[(a.rank + 1u) % W] + a.zc_offset + (c + u * S) * 16u, v);
        }
    }
    return c;
}

// Forward of the zero-copy push two-shot at a world of W > 2 ranks: my chunks c, c + S,
// ... below ce, read back from my tensor (what inc_zcp_reduce_store_w stored there; only
// I write my slice), into every rank's tensor but mine and rank r + 1's; four chunks'
// loads in flight.
template <u32 W>
__device__ __forceinline__ void inc_zcp_forward(const IncArgs& a, u64 c, u64 ce, u64 S) {
    for (; c + 3 * S < ce; c += 4 * S) {
        uint4 v[4];
#pragma unroll
        for (u32 u = 0; u < 4; ++u) v[u] = inc_ld_cg_v4(a.input + (c + u * S) * 16u);
#pragma unroll
        for (u32 u = 0; u < 4; ++u) {
#pragma unroll
            for (u32 i = 2; i < W; ++i) {
                inc_st_v4(a.sym[(a.rank + i) % W] + a.zc_offset + (c + u * S) * 16u, v[u]);
            }
        }
    }
    for (; c < ce; c += S) {
        const uint4 v = inc_ld_cg_v4(a.input + c * 16u);
#pragma unroll
        for (u32 i = 2; i < W; ++i) inc_st_v4(a.sym[(a.rank + i) % W] + a.zc_offset + c * 16u, v);
    }
}

// two-shot, zero-copy, push form: the scatter of the copy-in two-shot (my input, here my
// symmetric tensor, stored into each owner's receive area of this call's parity half), a
// barrier, the owner folds its slice and stores the result straight into every rank's
// tensor (sym[q] + zc_offset), and an end barrier: no copy-out pass.
// Mirrors inc-sim program `inc::two_shot_zcp` (docs/PROTOCOL.md "two-shot, zero-copy").
template <int DT, int OP>
__device__ void inc_two_shot_zcp(const IncArgs& a) {
    __shared__ volatile int s_fail;
    __shared__ volatile u32 s_e;
    IncCall k;
    // STEP two_shot_zcp 0 Prologue
    if (!inc_prologue(a, &s_fail, &s_e, k)) return;
    const u64 nbytes = a.count * (u64)IncLanes<DT>::ES;
    const u64 chunks = (nbytes + 15) / 16;
    const u64 slice = (chunks + a.world - 1) / a.world;
    const u64 scratch = (u64)k.p * a.half_bytes;
    const u64 own = a.data[a.rank] + scratch;
    const u64 S = inc_stride();

    // STEP two_shot_zcp 1 Scatter
    for (u32 i = 1; i < a.world; ++i) {
        const u32 q = (a.rank + i) % a.world;
        const u64 lo = (u64)q * slice;
        const u64 hi = (lo + slice < chunks) ? lo + slice : chunks;
        const u64 dst = a.data[q] + scratch + (u64)inc_area(a.rank, q) * slice * 16u - lo * 16u;
        if (lo < hi) inc_copy_in<DT>(a, dst, lo, hi, nbytes);
    }

    // STEP two_shot_zcp 2 Barrier
    if (inc_barrier(a, k, INC_PAD_START, inc_others(a), 2, &s_fail)) {
        // STEP two_shot_zcp 3 ReduceStore
        // Whole chunks here (at world 2 four at a time, at worlds 3 and 4 two, then one chunk
        // per iteration: local reads, W loads in flight); the partial tail chunk (if mine)
        // after the loop, masked.
        const u64 lo = (u64)a.rank * slice;
        const u64 hi = (lo + slice < chunks) ? lo + slice : chunks;
        const u64 full = nbytes / 16;
        const u64 hf = hi < full ? hi : full;
        const u64 c0 = inc_first_chunk(lo);
        u64 c = c0;
        if (a.world == 2) {
            c = inc_zcp_reduce_store_w<DT, OP, 2, 4>(a, c, lo, hf, own, slice, S);
        } else if (a.world == 3) {
            c = inc_zcp_reduce_store_w<DT, OP, 3, 2>(a, c, lo, hf, own, slice, S);
        } else if (a.world == 4) {
            c = inc_zcp_reduce_store_w<DT, OP, 4, 2>(a, c, lo, hf, own, slice, S);
        }
        // chunks c0, c0 + S, ... below ce are in my tensor and rank r + 1's only
        const u64 ce = c;
        for (; c < hf; c += S) {
            const uint4 v0 = inc_fold_received<DT, OP>(a, c, nbytes, own, slice, c - lo);
#pragma unroll
            for (u32 i = 0; i < INC_MAX_RANKS; ++i) {
                if (i < a.world) {
                    const u32 q = (a.rank + i) % a.world;
                    inc_st_v4(a.sym[q] + a.zc_offset + c * 16u, v0);
                }
            }
        }
        if (full < hi && full >= lo && inc_first_chunk(full) == full) {
            const uint4 v = inc_fold_received<DT, OP>(a, full, nbytes, own, slice, full - lo);
            for (u32 q = 0; q < a.world; ++q) inc_store_at<DT>(a.sym[q] + a.zc_offset, false, full, nbytes, v);
        }
        // STEP two_shot_zcp 4 Forward
        // (the chunks after ce and the tail chunk went into every rank's tensor above: the
        // same values, earlier; PROTOCOL.md "Push form")
        if (a.world == 3) {
            inc_zcp_forward<3>(a, c0, ce, S);
        } else if (a.world == 4) {
            inc_zcp_forward<4>(a, c0, ce, S);
        }
        // STEP two_shot_zcp 5 EndBarrier
        inc_barrier(a, k, INC_PAD_END, inc_others(a), 5, &s_fail);
    }

    // STEP two_shot_zcp 6 Epilogue
    inc_epilogue(a, k);
}

// The previous piece's Gather (PROTOCOL.md "Deferred gather"; it ran with
// INC_FLAG_DEFER_GATHER): its G area in half `pp` (the other half: consecutive kernels,
// consecutive epochs) into its output, which ends where this piece's begins; the chunks
// of every slice but mine, thread `idx` of `n` taking every n-th chunk. Local reads and
// writes.
template <int DT>
__device__ __forceinline__ void inc_gather_prev(const IncArgs& a, u32 pp, u64 idx, u64 n) {
    const u64 pbytes = a.prev_count * (u64)IncLanes<DT>::ES;
    const u64 pchunks = (pbytes + 15) / 16;
    const u64 pslice = (pchunks + a.world - 1) / a.world;
    // G: chunk c of a slice before mine at G[c], of a slice after mine at G[c - S]
    const u64 src = a.data[a.rank] + (u64)pp * a.half_bytes + (u64)(a.world - 1u) * pslice * 16u;
    const u64 dst = a.output - pbytes;
    const bool aligned = (a.flags & INC_FLAG_IO_ALIGNED) != 0;
    const u64 mlo = (u64)a.rank * pslice < pchunks ? (u64)a.rank * pslice : pchunks;
    const u64 mhi = mlo + pslice < pchunks ? mlo + pslice : pchunks;
    inc_copy_out<DT>(src, dst, aligned, idx, n, mlo, pbytes);  // slices before mine
    inc_copy_out<DT>(src - pslice * 16u, dst, aligned, mhi + idx, n, pchunks, pbytes);  // after it
}

// A copy block of a piece after the first (the last gridDim.x / INC_COPY_BLOCK_DIV blocks):
// its own epoch word as a prologue would read it, its share of the previous piece's
// Gather, then the epoch into its word (release: the blocks that move this piece acquire
// it before their mid flags), and exit. It never waits.
template <int DT>
__device__ void inc_two_shot_copy_block(const IncArgs& a, u32 G, u32 ncopy) {
    __shared__ volatile u32 s_e;
    const u64 word = a.pad[a.rank] + INC_PAD_EPOCHS + 4u * blockIdx.x;
    if (threadIdx.x == 0) s_e = inc_next_epoch(inc_ld_relaxed_sys_u32(word));
    __syncthreads();
    inc_pdl_launch();
    const u32 e = s_e;
    inc_gather_prev<DT>(a, (e & 1u) ^ 1u, (u64)(blockIdx.x - G) * blockDim.x + threadIdx.x,
                        (u64)ncopy * blockDim.x);
    __syncthreads();
    if (threadIdx.x == 0) asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(word), "r"(e) : "memory");
}

// Before its mid flag, a block that moves the piece waits until every copy block stored
// this call's epoch (thread t < ncopy watches copy block G + t; bounded like every wait).
// Returns false once this block has failed.
__device__ bool inc_wait_copies(const IncArgs& a, const IncCall& k, u32 G, u32 ncopy,
                                volatile int* s_fail) {
    __syncthreads();
    if (threadIdx.x < ncopy && *s_fail == 0) {
        const u64 word = a.pad[a.rank] + INC_PAD_EPOCHS + 4u * (G + threadIdx.x);
        const u64 t0 = inc_now_ns();
        u32 it = 0, v;
        asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(word) : "memory");
        while (v != k.e) {
            if ((++it & INC_SPIN_CHECK) == 0u) {
                if (*s_fail != 0) break;
                if (inc_wait_slow(a, t0, a.rank, 4, k.e, v) != 0u) {
                    *s_fail = 1;
                    break;
                }
            }
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(word) : "memory");
        }
    }
    __syncthreads();
    return *s_fail == 0;
}

// v into every peer's data area at byte offset `off`, peers in rotated order (r+1, r+2, ...):
// at any time every rank receives from one owner (4x H200, world 4, GPU runs 74 and 76: one
// pass 1 MiB 11.71 -> 11.58 us, loop form 2 MiB 17.85 -> 17.55, 4 MiB 27.37 -> 26.87).
// (Chunk j of my slice goes to G[inc_area(me, p) * S + j] of every peer p, `gather` the
// offset of G in a data area.)
__device__ __forceinline__ void inc_st_gather(const IncArgs& a, u64 gather, u64 slice, u64 j,
                                              uint4 v) {
#pragma unroll
    for (u32 i = 1; i < INC_MAX_RANKS; ++i) {
        if (i < a.world) {
            const u32 p = inc_rot_peer(a, i);
            inc_st_v4(a.data[p] + gather + ((u64)inc_area(a.rank, p) * slice + j) * 16u, v);
        }
    }
}

// The copy-in two-shot in one pass: a call of its own (no pieces) whose grid covers every
// chunk (C <= G * T). Same program, same grid-stride partition and same flags as the loop
// form below; thread `mine` = blockIdx.x * T + threadIdx.x handles chunk c = mine only: one
// division (its slice) instead of a per-peer loop with a division per peer and phase (4x
// H200 GPU run 71, graph, world 4: 1 MiB 12.78 -> 11.66 us, 1 KiB 8.5 -> 6.2; world 2 1 MiB
// 10.2 -> 9.6). Mirrors inc-sim program `inc::two_shot` (docs/PROTOCOL.md "two-shot").
// STEP two_shot_1p 0 Prologue
// (inc_two_shot's, before it calls this)
template <int DT, int OP>
__device__ __forceinline__ void inc_two_shot_one_pass(const IncArgs& a, const IncCall& k,
                                                      volatile int* s_fail, u64 nbytes,
                                                      u64 chunks, u64 slice, u64 own,
                                                      u64 gather) {
    const u64 c = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const bool live = c < chunks;
    // chunks < 2^32 (the caller checks), so a 32-bit division
    const u32 q = live ? (u32)c / (u32)slice : a.rank;
    const u64 j = c - (u64)q * slice;
    // STEP two_shot_1p 1 Scatter
    // chunk c of slice q -> peer q's R[me][j]
    if (live && q != a.rank) {
        inc_st_v4(a.data[q] + k.region + ((u64)inc_area(a.rank, q) * slice + j) * 16u,
                  inc_load_input<DT>(a, c, nbytes));
    }
    // STEP two_shot_1p 2 Barrier
    if (inc_barrier(a, k, INC_PAD_START, inc_others(a), 2, s_fail)) {
        // STEP two_shot_1p 3 ReduceSlice
        if (live && q == a.rank) {
            const uint4 v = inc_fold_received<DT, OP>(a, c, nbytes, own, slice, j);
            inc_st_gather(a, k.region + gather, slice, j, v);
            inc_store_output<DT>(a, c, nbytes, v);
        }
        // STEP two_shot_1p 4 GatherPrev
        // (a call of its own: no previous piece)
        // STEP two_shot_1p 5 Barrier
        if (inc_barrier(a, k, INC_PAD_MID, inc_others(a), 5, s_fail)) {
            // STEP two_shot_1p 6 Gather
            if (live && q != a.rank) {
                const u64 g = own + gather + ((u64)inc_area(q, a.rank) * slice + j) * 16u;
                inc_store_output<DT>(a, c, nbytes, inc_ld_cg_v4(g));
            }
        }
    }
    // STEP two_shot_1p 7 Epilogue
    inc_epilogue(a, k);
}

// ----- two-shot of 128-byte lines (PROTOCOL.md "two-shot of lines") ---------------------
// The copy-in two-shot of a call of its own that fits the lines region (flag INC_FLAG_LINES),
// without barriers: a line is 128 bytes, 8 lanes x 16 bytes, stored with ONE warp-wide
// st.volatile.v2.u64 and polled with ONE warp-wide ld.volatile.v2.u64 (seen whole: GPU run
// 87's litmus); words 0..14 carry payload bytes [120 L, 120 L + 120), word 15 the flag
// (e << 32 | sig). The owner of a slice polls every writer's line, folds in rank order and
// stores the result line into every peer; every rank polls the other slices' lines and
// copies them out. The consumer clears each flag it took. Mirrors inc-sim's lines checker
// (inc_sim::lines) and the CPU backend (inc_sim::cpu).

// The lines region of rank q (after the push region of its data area).
__device__ __forceinline__ u64 inc_lines_base(const IncArgs& a, u32 q) {
    return a.data[q] + 2u * a.half_bytes + INC_PUSH_SLOTS +
           (u64)INC_PUSH_BUFFERS * INC_MAX_RANKS * a.push_slot_bytes;
}

__device__ __forceinline__ void inc_st_line128(u64 addr, u64 x, u64 y) {
    asm volatile("st.volatile.global.v2.u64 [%0], {%1, %2};" ::"l"(addr), "l"(x), "l"(y) : "memory");
}

__device__ __forceinline__ void inc_ld_line128(u64 addr, u64& x, u64& y) {
    asm volatile("ld.volatile.global.v2.u64 {%0, %1}, [%2];" : "=l"(x), "=l"(y) : "l"(addr) : "memory");
}

// Whether the 8 lanes of my line hold it whole: its flag (lane 7's second word) is f.
// Every lane of the warp calls it (warp-uniform code).
__device__ __forceinline__ bool inc_line128_ok(u64 y, u64 f, u32 lane) {
    const u32 m = __ballot_sync(0xffffffffu, (lane & 7u) != 7u || y == f);
    const u32 g = 0xffu << (lane & 24u);
    return (m & g) == g;
}

// Slot k of rank `other` at rank `me`: (other - me - 1) mod W (inc_proto LinesLayout::slot_of).
__device__ __forceinline__ u32 inc_lines_slot(u32 me, u32 other, u32 w) {
    const u32 k = other + w - me - 1u;
    return k >= w ? k - w : k;
}

// Slow path of a line poll (lane 7 of a line still missing, every INC_SPIN_CHECK + 1 spins):
// a flag of this epoch with another signature -> CALL_MISMATCH; a newer epoch ->
// SEQ_MISMATCH; the writer's header word of this epoch with another signature ->
// CALL_MISMATCH (a peer with another count never writes the lines I poll); then abort
// word and deadline. Returns 0 to keep waiting.
__device__ __forceinline__ u32 inc_lines_slow(const IncArgs& a, const IncCall& k, u32 s,
                                           u32 phase, u64 t0, u64 v) {
    const u32 ve = (u32)(v >> 32);
    if (v != 0ull && (ve == k.e || inc_tag_newer(ve, k.e))) {
        const u32 code = ve == k.e ? INC_ERR_CALL_MISMATCH : INC_ERR_SEQ_MISMATCH;
        inc_fail(a, code, s, phase, k.flag, v);
        return code;
    }
    u64 h;
    asm volatile("ld.relaxed.sys.global.u64 %0, [%1];"
                 : "=l"(h)
                 : "l"(inc_lines_base(a, a.rank) + 8u * ((u64)k.p * INC_MAX_RANKS + s))
                 : "memory");
    if ((u32)(h >> 32) == k.e && h != k.flag) {
        inc_fail(a, INC_ERR_CALL_MISMATCH, s, phase, k.flag, h);
        return INC_ERR_CALL_MISMATCH;
    }
    // A peer that took another form or algorithm at this epoch (a count on the other side
    // of the lines rule, or an LL call) writes its block 0's start flag into my pad, or
    // its LL header line into my push region, instead of my lines.
    const u64 sf = inc_ld_acquire_sys(a.pad[a.rank] + INC_PAD_START +
                                      (u64)k.p * INC_MAX_BLOCKS * INC_MAX_RANKS * 8u + 8u * s);
    const uint4 lh = inc_ld_volatile_v4(a.data[a.rank] + 2u * a.half_bytes + INC_PUSH_HDR +
                                        ((u64)k.p * INC_MAX_RANKS + s) * 16u);
    if ((u32)(sf >> 32) == k.e || inc_line_ready(lh, k.e)) {
        const u64 seen = (u32)(sf >> 32) == k.e ? sf : (((u64)lh.y << 32) | lh.x);
        inc_fail(a, INC_ERR_CALL_MISMATCH, s, phase, k.flag, seen);
        return INC_ERR_CALL_MISMATCH;
    }
    return inc_wait_slow(a, t0, s, phase, k.flag, v);
}

// NW: the largest world this instance serves (its per-writer registers); the dispatch
// below takes NW = 4 up to world 4 (no spills) and NW = INC_MAX_RANKS above.
template <int DT, int OP, u32 NW>
__device__ void inc_two_shot_lines_w(const IncArgs& a) {
    __shared__ volatile int s_fail;
    __shared__ volatile u32 s_e;
    IncCall k;
    // STEP two_shot_lines 0 Prologue
    if (!inc_prologue(a, &s_fail, &s_e, k)) return;
    const u64 nbytes = a.count * (u64)IncLanes<DT>::ES;
    const u32 W = a.world, r = a.rank;
    // lines < 2^32 (the call fits the region): 32-bit arithmetic on line indices
    const u32 nl = (u32)((nbytes + INC_LINE_PAYLOAD - 1) / INC_LINE_PAYLOAD);
    u32 SL = (nl + W - 1u) / W;
    SL = (SL + INC_LINES_ALIGN - 1u) / INC_LINES_ALIGN * INC_LINES_ALIGN;
    const u32 NL = SL * W;
    const u64 off = INC_LINES_HDR_BYTES + (u64)k.p * INC_MAX_RANKS * a.push_slot_bytes;
    const u32 lane = threadIdx.x & 31u, l8 = lane & 7u;
    const u64 lane_off = (u64)l8 * 16u;
    const u32 groups = gridDim.x * (blockDim.x / 8u);
    const u32 g0 = (blockIdx.x * blockDim.x + threadIdx.x) / 8u;
    const u64 w0 = l8 < 7u ? 2u * l8 : 14u;  // my first payload word of a line
    const u64 own = inc_lines_base(a, r) + off;
    const u64 gath = (u64)(W - 1u) * SL * INC_LINE_BYTES;  // gather lines follow recv lines
    const u64 t0 = inc_now_ns();
    bool ok = true;

    // STEP two_shot_lines 1 Scatter
    if (blockIdx.x == 0 && threadIdx.x < W && threadIdx.x != r) {
        inc_st_relaxed_sys_u64(inc_lines_base(a, threadIdx.x) + 8u * ((u64)k.p * INC_MAX_RANKS + r),
                               k.flag);
    }
    // The 4 lines of a warp lie in one slice (SL and NL multiples of 4, groups a multiple
    // of 4): every branch on q below is warp-uniform.
    for (u32 L = g0; L < NL; L += groups) {
        const u32 q = L / SL;
        if (q == r) continue;
        const uint2 x = inc_load8<DT>(a, 15u * (u64)L + w0, nbytes);
        u64 y = k.flag;
        if (l8 < 7u) {
            const uint2 v = inc_load8<DT>(a, 15u * (u64)L + w0 + 1u, nbytes);
            y = ((u64)v.y << 32) | v.x;
        }
        const u64 dst = inc_lines_base(a, q) + off +
                        ((u64)inc_lines_slot(q, r, W) * SL + (L - q * SL)) * INC_LINE_BYTES;
        inc_st_line128(dst + lane_off, ((u64)x.y << 32) | x.x, y);
    }

    // STEP two_shot_lines 2 ReduceStore
    for (u32 L = g0; L < NL && ok; L += groups) {
        if (L / SL != r) continue;
        const u32 j = L - r * SL;
        u64 va[NW], vb[NW];
        u32 pend = 0u;
#pragma unroll
        for (u32 s = 0; s < NW; ++s) {
            if (s < W && s != r) {
                inc_ld_line128(own + ((u64)inc_lines_slot(r, s, W) * SL + j) * INC_LINE_BYTES + lane_off,
                               va[s], vb[s]);
                pend |= 1u << s;
            }
        }
        u32 it = 0;
        while (true) {
#pragma unroll
            for (u32 s = 0; s < NW; ++s) {
                if (s < W && s != r && inc_line128_ok(vb[s], k.flag, lane)) pend &= ~(1u << s);
            }
            if (!__any_sync(0xffffffffu, pend != 0u)) break;
            if ((++it & INC_SPIN_CHECK) == 0u) {
                // lane 7 of a line still missing: the slow path for its lowest writer
                u32 bad = s_fail != 0 ? 1u : 0u;
                if (l8 == 7u && bad == 0u && pend != 0u) {
                    const u32 low = __ffs(pend) - 1u;
                    u64 v = 0ull;
#pragma unroll
                    for (u32 s = 0; s < NW; ++s) {
                        if (s == low) v = vb[s];  // static indices: vb stays in registers
                    }
                    bad = inc_lines_slow(a, k, low, 2, t0, v);
                }
                if (__any_sync(0xffffffffu, bad != 0u)) {
                    ok = false;
                    break;
                }
            }
#pragma unroll
            for (u32 s = 0; s < NW; ++s) {
                if (s < W && s != r && __any_sync(0xffffffffu, (pend >> s) & 1u)) {
                    u64 x, y;
                    inc_ld_line128(own + ((u64)inc_lines_slot(r, s, W) * SL + j) * INC_LINE_BYTES + lane_off,
                                   x, y);
                    if ((pend >> s) & 1u) {
                        va[s] = x;
                        vb[s] = y;
                    }
                }
            }
        }
        if (!ok) break;
        // take: clear each flag (lane 7 holds it, at line + 120), then fold in rank order
        if (l8 == 7u) {
#pragma unroll
            for (u32 s = 0; s < NW; ++s) {
                if (s < W && s != r) {
                    inc_st_relaxed_sys_u64(own + ((u64)inc_lines_slot(r, s, W) * SL + j) * INC_LINE_BYTES + 120u,
                                           0ull);
                }
            }
        }
        const uint2 m0 = inc_load8<DT>(a, 15u * (u64)L + w0, nbytes);
        uint2 m1;
        m1.x = 0u;
        m1.y = 0u;
        if (l8 < 7u) m1 = inc_load8<DT>(a, 15u * (u64)L + w0 + 1u, nbytes);
        float acc[8];
#pragma unroll
        for (u32 s = 0; s < NW; ++s) {
            if (s < W) {
                uint4 raw;
                if (s == r) {
                    raw.x = m0.x;
                    raw.y = m0.y;
                    raw.z = m1.x;
                    raw.w = m1.y;
                } else {
                    raw.x = (u32)va[s];
                    raw.y = (u32)(va[s] >> 32);
                    raw.z = (u32)vb[s];  // lane 7: the flag, folded and discarded
                    raw.w = (u32)(vb[s] >> 32);
                }
                inc_fold_chunk<DT, OP>(acc, raw, s == 0);
            }
        }
        inc_finish<DT, OP>(acc, a.scale);
        const uint4 v = inc_pack<DT>(acc);
        const u64 x = ((u64)v.y << 32) | v.x;
        const u64 y = l8 < 7u ? (((u64)v.w << 32) | v.z) : k.flag;
        // into every peer's gather lines, rotated order (r+1, r+2, ...)
#pragma unroll
        for (u32 i = 1; i < NW; ++i) {
            if (i < W) {
                const u32 q = inc_rot_peer(a, i);
                inc_st_line128(inc_lines_base(a, q) + off + gath +
                                   ((u64)inc_lines_slot(q, r, W) * SL + j) * INC_LINE_BYTES + lane_off,
                               x, y);
            }
        }
        uint2 o;
        o.x = v.x;
        o.y = v.y;
        inc_store8<DT>(a, 15u * (u64)L + w0, nbytes, o);
        if (l8 < 7u) {
            o.x = v.z;
            o.y = v.w;
            inc_store8<DT>(a, 15u * (u64)L + w0 + 1u, nbytes, o);
        }
    }

    // STEP two_shot_lines 3 Gather
    for (u32 L = g0; L < NL && ok; L += groups) {
        const u32 q = L / SL;
        if (q == r) continue;
        const u64 src = own + gath + ((u64)inc_lines_slot(r, q, W) * SL + (L - q * SL)) * INC_LINE_BYTES;
        u64 x, y;
        inc_ld_line128(src + lane_off, x, y);
        u32 it = 0;
        while (!__all_sync(0xffffffffu, inc_line128_ok(y, k.flag, lane))) {
            if ((++it & INC_SPIN_CHECK) == 0u) {
                u32 bad = s_fail != 0 ? 1u : 0u;
                if (bad == 0u && l8 == 7u && y != k.flag) bad = inc_lines_slow(a, k, q, 3, t0, y);
                if (__any_sync(0xffffffffu, bad != 0u)) {
                    ok = false;
                    break;
                }
            }
            u64 nx, ny;
            inc_ld_line128(src + lane_off, nx, ny);
            if (!inc_line128_ok(y, k.flag, lane)) {
                x = nx;
                y = ny;
            }
        }
        if (!ok) break;
        if (l8 == 7u) inc_st_relaxed_sys_u64(src + 120u, 0ull);
        uint2 o;
        o.x = (u32)x;
        o.y = (u32)(x >> 32);
        inc_store8<DT>(a, 15u * (u64)L + w0, nbytes, o);
        if (l8 < 7u) {
            o.x = (u32)y;
            o.y = (u32)(y >> 32);
            inc_store8<DT>(a, 15u * (u64)L + w0 + 1u, nbytes, o);
        }
    }
    if (!ok) s_fail = 1;

    // STEP two_shot_lines 4 Epilogue
    inc_epilogue(a, k);
}

template <int DT, int OP>
__device__ void inc_two_shot_lines(const IncArgs& a) {
    if (a.world <= 4u) {
        inc_two_shot_lines_w<DT, OP, 4u>(a);
    } else {
        inc_two_shot_lines_w<DT, OP, INC_MAX_RANKS>(a);
    }
}

template <int DT, int OP>
__device__ void inc_two_shot(const IncArgs& a) {
    if (a.flags & INC_FLAG_LINES) {
        inc_two_shot_lines<DT, OP>(a);
        return;
    }
    if (a.flags & INC_FLAG_ZERO_COPY) {
        if (a.flags & INC_FLAG_ZC_PUSH) {
            inc_two_shot_zcp<DT, OP>(a);
        } else {
            inc_two_shot_zc<DT, OP>(a);
        }
        return;
    }
    // A piece after the first: the last G / INC_COPY_BLOCK_DIV blocks copy out the previous
    // piece; the other G' blocks partition this piece's chunks (every rank alike).
    const bool prev = (a.flags & INC_FLAG_PREV_GATHER) != 0;
    const u32 ncopy = prev ? gridDim.x / INC_COPY_BLOCK_DIV : 0u;
    const u32 G = gridDim.x - ncopy;
    if (blockIdx.x >= G) {
        inc_two_shot_copy_block<DT>(a, G, ncopy);
        return;
    }
    __shared__ volatile int s_fail;
    __shared__ volatile u32 s_e;
    IncCall k;
    // STEP two_shot 0 Prologue
    if (!inc_prologue(a, &s_fail, &s_e, k)) return;
    const u64 nbytes = a.count * (u64)IncLanes<DT>::ES;
    const u64 chunks = (nbytes + 15) / 16;
    const u64 slice = (chunks + a.world - 1) / a.world;
    const u64 gather = (u64)(a.world - 1u) * slice * 16u;
    const u64 own = a.data[a.rank] + k.region;
    const u64 S = inc_stride_g(G);
    if (!prev && (a.flags & INC_FLAG_DEFER_GATHER) == 0 && chunks <= S && chunks < (1ull << 32)) {
        inc_two_shot_one_pass<DT, OP>(a, k, &s_fail, nbytes, chunks, slice, own, gather);
        return;
    }

    // STEP two_shot 1 Scatter
    // Peers in rotated order (r+1, r+2, ...): at any time every rank receives from one
    // writer, instead of all writers storing into rank 0 first.
    for (u32 i = 1; i < a.world; ++i) {
        const u32 q = (a.rank + i) % a.world;
        const u64 lo = (u64)q * slice;
        const u64 hi = (lo + slice < chunks) ? lo + slice : chunks;
        // chunk c of slice q -> peer q's R[me][c - lo]
        const u64 dst = a.data[q] + k.region + (u64)inc_area(a.rank, q) * slice * 16u - lo * 16u;
        if (lo < hi) inc_copy_in_g<DT>(a, dst, lo, hi, nbytes, G);
    }

    // STEP two_shot 2 Barrier
    if (inc_barrier(a, k, INC_PAD_START, inc_others(a), 2, &s_fail)) {
        // STEP two_shot 3 ReduceSlice
        // For my chunks c of slice r: fold R[0..W] in rank order (my own input for R[r]),
        // out[c] = v, and v into every peer's G[c].
        const u64 lo = (u64)a.rank * slice;
        const u64 hi = (lo + slice < chunks) ? lo + slice : chunks;
        // One chunk per iteration: the reads are local (W loads in flight), and two chunks
        // per iteration spilled registers in this loop (4x H200, world 4, GPU run 49: 16 MiB
        // 100.2 -> 84.9 us, 4 MiB 32.4 -> 27.7).
        for (u64 c = inc_first_chunk_g(lo, G); c < hi; c += S) {
            const uint4 v = inc_fold_received<DT, OP>(a, c, nbytes, own, slice, c - lo);
            inc_st_gather(a, k.region + gather, slice, c - lo, v);
            inc_store_output<DT>(a, c, nbytes, v);
        }

        // STEP two_shot 4 GatherPrev
        // A piece after the first: the copy blocks' share of the previous piece's Gather
        // happens before my mid flag (or, without copy blocks, this block's own share).
        bool ok = true;
        if (ncopy > 0) {
            ok = inc_wait_copies(a, k, G, ncopy, &s_fail);
        } else if (prev) {
            inc_gather_prev<DT>(a, k.p ^ 1u, (u64)blockIdx.x * blockDim.x + threadIdx.x,
                                (u64)G * blockDim.x);
        }

        // STEP two_shot 5 Barrier
        if (ok && inc_barrier(a, k, INC_PAD_MID, inc_others(a), 5, &s_fail) &&
            (a.flags & INC_FLAG_DEFER_GATHER) == 0) {
            // The owners stored every other slice here: local reads. (A piece that is not
            // the last leaves this to the next piece's GatherPrev.)
            // STEP two_shot 6 Gather
            for (u32 q = 0; q < a.world; ++q) {
                if (q == a.rank) continue;
                const u64 qlo = (u64)q * slice;
                const u64 qhi = (qlo + slice < chunks) ? qlo + slice : chunks;
                // chunk c of slice q sits at G[inc_area(q, me) * S + c - qlo]
                const u64 src = own + gather + ((u64)inc_area(q, a.rank) * slice - qlo) * 16u;
                if (qlo < qhi) inc_gather_g<DT>(a, src, qlo, qhi, nbytes, G);
            }
        }
    }

    // STEP two_shot 7 Epilogue
    inc_epilogue(a, k);
}
