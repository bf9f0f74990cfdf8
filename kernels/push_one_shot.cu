// push one-shot allreduce for small messages, LL protocol (NCCL's low-latency idea): every
// rank stores its data straight into slot[p][me] of every peer as 16-byte lines
// {data, tag, data, tag} with tag = the call's epoch; a reader polls its own slots until
// every tag of a line is this call's epoch (all peers' lines polled together, folded in
// rank order once all are here). No barrier, no fence, no clearing pass: one
// NVLink traversal per call. Mirrors inc-sim's push program (inc_sim::push; docs/PROTOCOL.md
// "push one-shot").
//
// Push region of a rank (device address = data + 2 * half_bytes; inc_sim::PushLayout):
//   hdr[2][INC_MAX_RANKS] lines {sig, e, sig, e} at INC_PUSH_HDR,
//   slot[p][s] at INC_PUSH_SLOTS + (p * INC_MAX_RANKS + s) * push_slot_bytes.
// Line h of a slot carries payload bytes [8h, 8h + 8) of the writer's input. Each 8-byte
// half {data word, tag} must arrive whole (8-byte single-copy atomicity, as NCCL's LL relies
// on; tools/litmus checks it on the GPU); the reader checks the tag of both halves.

__device__ __forceinline__ void inc_st_line(u64 addr, u32 d0, u32 d1, u32 tag) {
    asm volatile("st.volatile.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(addr), "r"(d0),
                 "r"(tag), "r"(d1), "r"(tag)
                 : "memory");
}

// A tag newer than this call's epoch: the writer is more than one call ahead in this parity
// (tag 0, fresh memory, never is).
__device__ __forceinline__ bool inc_line_newer(uint4 v, u32 tag) {
    return inc_tag_newer(v.y, tag) || inc_tag_newer(v.w, tag);
}

// acc = fold(acc, two payload words) (first: acc = v); the upper lanes are unused.
template <int DT, int OP>
__device__ __forceinline__ void inc_fold8(float (&acc)[8], u32 w0, u32 w1, bool first) {
    uint4 r;
    r.x = w0;
    r.y = w1;
    r.z = 0u;
    r.w = 0u;
    inc_fold_chunk<DT, OP>(acc, r, first);
}

// Slow path of a poll on peer q's line: hdr says another call -> CALL_MISMATCH; a newer tag
// -> SEQ_MISMATCH; abort word / deadline as every wait. Returns 0 to keep waiting.
__device__ __forceinline__ u32 inc_ll_slow(const IncArgs& a, const IncCall& k, u64 hdr, u32 q,
                                        u32 phase, u64 t0, uint4 v) {
    const uint4 h = inc_ld_volatile_v4(hdr);
    if (inc_line_ready(h, k.e) && (h.x != a.sig || h.z != a.sig)) {
        inc_fail(a, INC_ERR_CALL_MISMATCH, q, phase, k.flag, ((u64)h.y << 32) | h.x);
        return INC_ERR_CALL_MISMATCH;
    }
    if (inc_line_newer(v, k.e) || inc_line_newer(h, k.e)) {
        const u32 t = inc_line_newer(v, k.e) ? (inc_tag_newer(v.y, k.e) ? v.y : v.w) : h.y;
        inc_fail(a, INC_ERR_SEQ_MISMATCH, q, phase, k.flag, ((u64)t << 32) | h.x);
        return INC_ERR_SEQ_MISMATCH;
    }
    return inc_wait_slow(a, t0, q, phase, k.flag, ((u64)v.y << 32) | v.w);
}

template <int DT, int OP>
__device__ void inc_push_one_shot(const IncArgs& a) {
    __shared__ volatile int s_fail;
    __shared__ volatile u32 s_e;
    IncCall k;
    // STEP push_one_shot 0 Prologue
    // The first input line does not depend on the epoch: its load overlaps the prologue's.
    const u64 nbytes = a.count * (u64)IncLanes<DT>::ES;
    const u64 lines = (nbytes + 7) / 8;
    const u64 first = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    uint2 v0;
    v0.x = 0u;
    v0.y = 0u;
    if (first < lines) v0 = inc_load8<DT>(a, first, nbytes);
    if (!inc_prologue(a, &s_fail, &s_e, k)) return;
    const u64 slot = (u64)a.push_slot_bytes;
    const u64 push = 2u * a.half_bytes;  // offset of the push region in every data area
    const u64 own = a.data[a.rank] + push;
    const u32 tag = k.e;
    const u64 S = inc_stride();
    const u64 mine_in_peer = push + INC_PUSH_SLOTS + ((u64)k.p * INC_MAX_RANKS + a.rank) * slot;

    // STEP push_one_shot 1 PushData
    if (blockIdx.x == 0 && threadIdx.x < a.world && threadIdx.x != a.rank) {
        inc_st_line(a.data[threadIdx.x] + push + INC_PUSH_HDR +
                        ((u64)k.p * INC_MAX_RANKS + a.rank) * 16u,
                    a.sig, a.sig, tag);
    }
    for (u64 h = first; h < lines; h += S) {
        const uint2 v = h == first ? v0 : inc_load8<DT>(a, h, nbytes);
        // peers in rotated order (r+1, r+2, ...): at any time every rank receives from one
        // writer (GPU run 76, world 4: 256 KiB 8.77 -> 7.53 us, 128 KiB 5.60 -> 5.34, 64 KiB
        // 4.33 -> 4.23)
#pragma unroll
        for (u32 i = 1; i < INC_MAX_RANKS; ++i) {
            if (i < a.world) inc_st_line(a.data[inc_rot_peer(a, i)] + mine_in_peer + h * 16u, v.x, v.y, tag);
        }
    }

    // STEP push_one_shot 2 PollReduce
    const u64 t0 = inc_now_ns();
    // Thread t < W reloads peer t's header line with its data lines, every spin until it is
    // this call's, so that HdrCheck normally finds it in a register instead of paying one
    // more load after the fold (loaded once up front, it was usually stale: 4x H200, world
    // 4, HdrCheck took 0.2-0.8 us of a 2.5-4 us call, GPU run 60).
    const bool hdr_thread = threadIdx.x < a.world && threadIdx.x != a.rank;
    const u64 hdr = own + INC_PUSH_HDR + ((u64)k.p * INC_MAX_RANKS + threadIdx.x) * 16u;
    uint4 hv;
    hv.y = 0u;
    hv.w = 0u;
    bool hwait = hdr_thread;
    for (u64 h = first; h < lines && s_fail == 0; h += S) {
        // Every peer's line first (all loads in flight), then wait for each in rank order.
        uint4 in[INC_MAX_RANKS];
#pragma unroll
        for (u32 q = 0; q < INC_MAX_RANKS; ++q) {
            if (q < a.world && q != a.rank) {
                in[q] = inc_ld_volatile_v4(own + INC_PUSH_SLOTS +
                                           ((u64)k.p * INC_MAX_RANKS + q) * slot + h * 16u);
            }
        }
        if (hwait) hv = inc_ld_volatile_v4(hdr);
        const uint2 mine = h == first ? v0 : inc_load8<DT>(a, h, nbytes);
        // Wait for every peer's line at once: each spin reloads all lines still missing
        // together (one L2 round trip per spin, not one per peer).
        u32 pending = 0u;
#pragma unroll
        for (u32 q = 0; q < INC_MAX_RANKS; ++q) {
            if (q < a.world && q != a.rank && !inc_line_ready(in[q], tag)) pending |= 1u << q;
        }
        bool ok = true;
        u32 it = 0;
        hwait = hwait && !inc_line_ready(hv, tag);
        while (pending != 0u) {
            if ((++it & INC_SPIN_CHECK) == 0u) {
                // the slow path for the first peer still missing (static indices: in[]
                // stays in registers)
                u32 bad = s_fail != 0 ? 1u : 0u;
#pragma unroll
                for (u32 q = 0; q < INC_MAX_RANKS; ++q) {
                    if (bad == 0u && (pending & ((2u << q) - 1u)) == (1u << q)) {
                        bad = inc_ll_slow(a, k,
                                          own + INC_PUSH_HDR + ((u64)k.p * INC_MAX_RANKS + q) * 16u,
                                          q, 2, t0, in[q]);
                    }
                }
                if (bad != 0u) {
                    s_fail = 1;
                    ok = false;
                    break;
                }
            }
#pragma unroll
            for (u32 q = 0; q < INC_MAX_RANKS; ++q) {
                if (pending & (1u << q)) {
                    in[q] = inc_ld_volatile_v4(own + INC_PUSH_SLOTS +
                                               ((u64)k.p * INC_MAX_RANKS + q) * slot + h * 16u);
                }
            }
            if (hwait) {
                hv = inc_ld_volatile_v4(hdr);
                hwait = !inc_line_ready(hv, tag);
            }
#pragma unroll
            for (u32 q = 0; q < INC_MAX_RANKS; ++q) {
                if ((pending & (1u << q)) && inc_line_ready(in[q], tag)) pending &= ~(1u << q);
            }
        }
        float acc[8];
        if (ok) {
#pragma unroll
            for (u32 q = 0; q < INC_MAX_RANKS; ++q) {
                if (q < a.world) {
                    if (q == a.rank) {
                        inc_fold8<DT, OP>(acc, mine.x, mine.y, q == 0);
                    } else {
                        inc_fold8<DT, OP>(acc, in[q].x, in[q].z, q == 0);
                    }
                }
            }
        }
        if (!ok) break;
        inc_finish<DT, OP>(acc, a.scale);
        const uint4 r = inc_pack<DT>(acc);
        uint2 out;
        out.x = r.x;
        out.y = r.y;
        inc_store8<DT>(a, h, nbytes, out);
    }

    // STEP push_one_shot 3 HdrCheck
    // Every peer's header line says this call (catches a peer that sends more lines, or the
    // same bytes with another dtype or op).
    if (hdr_thread && s_fail == 0) {
        const u32 q = threadIdx.x;
        uint4 v = hv;  // this call's header already, normally (see PollReduce)
        u32 it = 0;
        while (!inc_line_ready(v, tag)) {
            if ((++it & INC_SPIN_CHECK) == 0u) {
                if (s_fail != 0 || inc_ll_slow(a, k, hdr, q, 3, t0, v) != 0u) {
                    s_fail = 1;
                    break;
                }
            }
            v = inc_ld_volatile_v4(hdr);
        }
        if (s_fail == 0 && (v.x != a.sig || v.z != a.sig)) {
            inc_fail(a, INC_ERR_CALL_MISMATCH, q, 3, k.flag, ((u64)v.y << 32) | v.x);
            s_fail = 1;
        }
    }

    // STEP push_one_shot 4 Epilogue
    inc_epilogue(a, k, lines * 16u);
}
