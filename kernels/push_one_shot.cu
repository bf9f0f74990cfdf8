// push one-shot ("Lamport") allreduce for small messages: every rank stores its chunks
// straight into L[e % 3].slot[me] of every rank; the data carries its own readiness
// (negative zero = empty), so there is no barrier. Mirrors inc-sim's push program
// (inc_sim::push::PUSH_STEP_NAMES; docs/PROTOCOL.md "push one-shot").
//
// Push region of a rank (device address = data + 2 * half_bytes, see inc_sim::PushLayout):
//   sig [2][INC_MAX_BLOCKS][INC_MAX_RANKS] u64 at 0, used[3] u32 at INC_PUSH_USED,
//   slots from INC_PUSH_HEADER: L[k].slot[s] at HEADER + (k * MAX_RANKS + s) * push_slot.
// Every 32-bit word of an empty slot is 0x80000000 (f32 -0.0; its high half is the
// bf16/f16 -0.0), so a chunk is empty for every dtype; readers check every lane, so only
// 4-byte single-copy atomicity of the 16-byte vector store is relied on.

__device__ __forceinline__ uint4 inc_ld_volatile_v4(u64 addr) {
    uint4 r;
    asm volatile("ld.volatile.global.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(addr)
                 : "memory");
    return r;
}

__device__ __forceinline__ void inc_st_volatile_v4(u64 addr, uint4 v) {
    asm volatile("st.volatile.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(addr), "r"(v.x),
                 "r"(v.y), "r"(v.z), "r"(v.w)
                 : "memory");
}

__device__ __forceinline__ u64 inc_ld_relaxed_sys_u64(u64 addr) {
    u64 v;
    asm volatile("ld.relaxed.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(addr) : "memory");
    return v;
}

// -0.0 lanes -> +0.0 (so no data lane equals the sentinel).
template <int DT>
__device__ __forceinline__ u32 inc_push_fix(u32 w) {
    if (DT == 2) return w == INC_PUSH_SENTINEL ? 0u : w;
    if ((w & 0xffffu) == 0x8000u) w &= 0xffff0000u;
    if ((w >> 16) == 0x8000u) w &= 0x0000ffffu;
    return w;
}

template <int DT>
__device__ __forceinline__ bool inc_push_lane_empty(u32 w) {
    if (DT == 2) return w == INC_PUSH_SENTINEL;
    return (w & 0xffffu) == 0x8000u || (w >> 16) == 0x8000u;
}

template <int DT>
__device__ __forceinline__ bool inc_push_ready(uint4 v) {
    return !(inc_push_lane_empty<DT>(v.x) || inc_push_lane_empty<DT>(v.y) ||
             inc_push_lane_empty<DT>(v.z) || inc_push_lane_empty<DT>(v.w));
}

// A signature word seen from writer q: 0 = fine/not yet, else an error code.
__device__ __forceinline__ u32 inc_push_sig_verdict(const IncCall& k, u64 v) {
    if (v == k.flag) return 0u;
    const u32 ve = (u32)(v >> 32);
    if (ve == k.e) return INC_ERR_CALL_MISMATCH;
    if ((int)(ve - k.e) > 0) return INC_ERR_SEQ_MISMATCH;
    return 0u;
}

template <int DT, int OP>
__device__ void inc_push_one_shot(const IncArgs& a) {
    __shared__ volatile int s_fail;
    __shared__ volatile u32 s_e;
    IncCall k;
    // STEP push_one_shot 0 Prologue
    if (!inc_prologue(a, &s_fail, &s_e, k)) return;
    const u64 nbytes = a.count * (u64)IncLanes<DT>::ES;
    const u64 chunks = (nbytes + 15) / 16;
    const u64 slot = (u64)a.push_slot;
    const u64 own = a.data[a.rank] + 2u * a.half_bytes;
    // Buffers rotate per push call, not per epoch (other algorithms may run in between):
    // last = buffer of this rank's previous push call (stable: that kernel completed).
    const u32 kc = *reinterpret_cast<volatile u32*>(own + INC_PUSH_LAST) % 3u;
    const u32 kb = (kc + 1u) % 3u;
    const u64 sig_off = ((u64)(k.p * INC_MAX_BLOCKS + blockIdx.x) * INC_MAX_RANKS) * 8u;
    // used[kc] was written by the previous push call (completed: stream order); read it
    // before this call's write to used[kb] can matter (kb != kc).
    const u32 used_old = *reinterpret_cast<volatile u32*>(own + INC_PUSH_USED + 4u * kc);
    if (threadIdx.x == 0) {
        *reinterpret_cast<volatile u32*>(own + INC_PUSH_USED + 4u * kb) = (u32)chunks;
    }

    // STEP push_one_shot 1 PushData
    for (u64 c = inc_first_chunk(0); c < chunks; c += inc_stride()) {
        uint4 v = inc_load_input<DT>(a, c, nbytes);
        v.x = inc_push_fix<DT>(v.x);
        v.y = inc_push_fix<DT>(v.y);
        v.z = inc_push_fix<DT>(v.z);
        v.w = inc_push_fix<DT>(v.w);
        const u64 off = INC_PUSH_HEADER + ((u64)kb * INC_MAX_RANKS + a.rank) * slot + c * 16u;
#pragma unroll
        for (u32 q = 0; q < INC_MAX_RANKS; ++q) {
            if (q < a.world) inc_st_volatile_v4(a.data[q] + 2u * a.half_bytes + off, v);
        }
    }

    // STEP push_one_shot 2 PushSig
    __syncthreads();
    if (threadIdx.x < a.world) {
        const u32 q = threadIdx.x;
        inc_st_release_sys(a.data[q] + 2u * a.half_bytes + sig_off + (u64)a.rank * 8u, k.flag);
    }

    // STEP push_one_shot 3 ClearOld
    // Re-arm L[last] (the previous push call's buffer) now, while peers' data is in flight:
    // no rank writes it during this call (a peer is at most one call ahead; a push call
    // there writes L[(kb+1)%3]); every store of the previous push call into it
    // happened-before (our SigCheck of that call).
    {
        uint4 sent;
        sent.x = INC_PUSH_SENTINEL;
        sent.y = INC_PUSH_SENTINEL;
        sent.z = INC_PUSH_SENTINEL;
        sent.w = INC_PUSH_SENTINEL;
        for (u64 c = inc_first_chunk(0); c < (u64)used_old; c += inc_stride()) {
#pragma unroll
            for (u32 q = 0; q < INC_MAX_RANKS; ++q) {
                if (q < a.world) {
                    inc_st_volatile_v4(
                        own + INC_PUSH_HEADER + ((u64)kc * INC_MAX_RANKS + q) * slot + c * 16u,
                        sent);
                }
            }
        }
    }

    // STEP push_one_shot 4 PollReduce
    {
        const u64 t0 = inc_now_ns();
        for (u64 c = inc_first_chunk(0); c < chunks && s_fail == 0; c += inc_stride()) {
            float acc[8];
            bool ok = true;
#pragma unroll
            for (u32 q = 0; q < INC_MAX_RANKS; ++q) {
                if (q < a.world && ok) {
                    const u64 addr =
                        own + INC_PUSH_HEADER + ((u64)kb * INC_MAX_RANKS + q) * slot + c * 16u;
                    uint4 v = inc_ld_volatile_v4(addr);
                    u32 it = 0;
                    while (!inc_push_ready<DT>(v)) {
                        ++it;
                        if ((it & 15u) == 0u) {
                            const u64 s = inc_ld_relaxed_sys_u64(own + sig_off + (u64)q * 8u);
                            u32 code = inc_push_sig_verdict(k, s);
                            if (code == 0u && s_fail != 0) {
                                ok = false;
                                break;
                            }
                            if (code == 0u) {
                                const u32 w = inc_abort_seen(a, (it & 1023u) == 0u);
                                if (w != 0u) {
                                    inc_fail(a, INC_ERR_PEER_ABORT, (w >> 8) & 0x7fffffu, 4,
                                             k.flag, s);
                                    s_fail = 1;
                                    ok = false;
                                    break;
                                }
                                if (inc_now_ns() - t0 > a.timeout_ns) code = INC_ERR_TIMEOUT;
                            }
                            if (code != 0u) {
                                inc_fail(a, code, q, 4, k.flag, s);
                                s_fail = 1;
                                ok = false;
                                break;
                            }
                        }
                        v = inc_ld_volatile_v4(addr);
                    }
                    if (ok) inc_fold_chunk<DT, OP>(acc, v, q == 0);
                }
            }
            if (!ok) break;
            inc_finish<DT, OP>(acc, a.scale);
            inc_store_output<DT>(a, c, nbytes, inc_pack<DT>(acc));
        }
    }

    // STEP push_one_shot 5 SigCheck
    __syncthreads();
    if (threadIdx.x < a.world && s_fail == 0) {
        const u32 q = threadIdx.x;
        const u64 mine = own + sig_off + (u64)q * 8u;
        const u64 t0 = inc_now_ns();
        u32 it = 0;
        while (true) {
            const u64 v = inc_ld_acquire_sys(mine);
            if (v == k.flag) break;
            u32 code = inc_push_sig_verdict(k, v);
            if (code == 0u) {
                ++it;
                if (s_fail != 0) break;
                const u32 w = inc_abort_seen(a, (it & 63u) == 0u);
                if (w != 0u) {
                    inc_fail(a, INC_ERR_PEER_ABORT, (w >> 8) & 0x7fffffu, 5, k.flag, v);
                    s_fail = 1;
                    break;
                }
                if (inc_now_ns() - t0 > a.timeout_ns) code = INC_ERR_TIMEOUT;
            }
            if (code != 0u) {
                inc_fail(a, code, q, 5, k.flag, v);
                s_fail = 1;
                break;
            }
        }
    }

    // STEP push_one_shot 6 Epilogue
    // As inc_epilogue, and the last block also publishes this call's buffer as `last`.
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned int* done = reinterpret_cast<unsigned int*>(a.pad[a.rank] + INC_PAD_DONE);
        __threadfence();
        if (atomicAdd(done, 1u) == gridDim.x - 1u) {
            *reinterpret_cast<volatile u32*>(done) = 0u;
            *reinterpret_cast<volatile u32*>(own + INC_PUSH_LAST) = kb;
            *reinterpret_cast<volatile u32*>(a.pad[a.rank] + INC_PAD_EPOCH) = k.e;
            __threadfence();
        }
    }
}
