// inc kernels: shared definitions (signal pad layout, flag barrier, chunk I/O, folds).
//
// Compiled at run time by NVRTC (crates/inc-cuda/src/source.rs concatenates proto.cuh,
// common.cuh, one_shot.cu, two_shot.cu, hcm.cu, push_one_shot.cu and instances.cu). No CUDA
// headers are included: the 16-bit conversions are done here by hand (bf16 by bit
// arithmetic, f16 by PTX cvt), so the same code runs on sm_70 and newer without cuda_bf16.h.
//
// Every protocol constant is generated into proto.cuh from inc-proto (the one source of
// them); nothing here restates one.

// Layout constants, limits, error codes, flag bits and the IncErrorRecord / IncArgs structs
// come from proto.cuh (generated from inc-proto by `cargo xtask codegen`), which NVRTC
// compiles just before this file.

// Waits: the clock, the abort word and the error rules are looked at every
// INC_SPIN_CHECK + 1 spins; the mapped host word (PCIe) only after INC_HOST_POLL_NS of
// waiting (the host's abort normally reaches the device abort word through a memset).
#define INC_SPIN_CHECK 255u
#define INC_HOST_POLL_NS 100000ull

// ----- memory-model primitives (system scope) -------------------------------------------

__device__ __forceinline__ void inc_st_release_sys(u64 addr, u64 v) {
    asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(addr), "l"(v) : "memory");
}

__device__ __forceinline__ u64 inc_ld_acquire_sys(u64 addr) {
    u64 v;
    asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(addr) : "memory");
    return v;
}

__device__ __forceinline__ u32 inc_ld_relaxed_sys_u32(u64 addr) {
    u32 v;
    asm volatile("ld.relaxed.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(addr) : "memory");
    return v;
}

__device__ __forceinline__ void inc_st_relaxed_sys_u32(u64 addr, u32 v) {
    asm volatile("st.relaxed.sys.global.u32 [%0], %1;" ::"l"(addr), "r"(v) : "memory");
}

__device__ __forceinline__ void inc_st_relaxed_sys_u64(u64 addr, u64 v) {
    asm volatile("st.relaxed.sys.global.u64 [%0], %1;" ::"l"(addr), "l"(v) : "memory");
}

// The epoch after e: e + 1, but never 0 (after 2^32 - 1, odd, comes 2, even: the parity
// still alternates), so a zero word — fresh memory or a flag slot its consumer cleared —
// never carries the current epoch (PROTOCOL.md "Wrap"; inc_proto::types::next_epoch).
__device__ __forceinline__ u32 inc_next_epoch(u32 e) {
    const u32 n = e + 1u;
    return n == 0u ? 2u : n;
}

// A tag (an epoch read from a flag or a line) newer than this call's epoch e: ahead by
// 1..=INC_SEQ_WINDOW modulo 2^32 (inc_proto::push::tag_is_newer). 0 never is (no live
// epoch is 0: fresh memory or a cleared word, "not yet"); a tag further ahead is a word
// untouched for 2^31 calls or more, "not yet" too.
__device__ __forceinline__ bool inc_tag_newer(u32 tag, u32 e) {
    const u32 d = tag - e;
    return tag != 0u && d != 0u && d <= INC_SEQ_WINDOW;
}

__device__ __forceinline__ u64 inc_now_ns() {
    u64 t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// 128-bit load that bypasses L1 (peer and symmetric-buffer data). volatile keeps it after
// the barrier that precedes it; no "memory" clobber, so independent loads stay in flight
// together.
__device__ __forceinline__ uint4 inc_ld_cg_v4(u64 addr) {
    uint4 r;
    asm volatile("ld.global.cg.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(addr));
    return r;
}

__device__ __forceinline__ void inc_st_v4(u64 addr, uint4 v) {
    asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(addr), "r"(v.x), "r"(v.y),
                 "r"(v.z), "r"(v.w)
                 : "memory");
}

// ----- element conversions ---------------------------------------------------------------
// DT: 0 = bf16, 1 = f16, 2 = f32. OP: 0 = sum, 1 = avg, 2 = min, 3 = max.

__device__ __forceinline__ float inc_f16_to_f32(u32 h) {
    float f;
    unsigned short s = (unsigned short)h;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(s));
    return f;
}

// Round to nearest even; NaN stays NaN (quiet bit set), like half::bf16::from_f32
// (GPUs before sm_80, which have no bf16 conversion instruction).
__device__ __forceinline__ u32 inc_f32_to_bf16(float f) {
    u32 u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
    u += 0x7fffu + ((u >> 16) & 1u);
    return u >> 16;
}

__device__ __forceinline__ u32 inc_f32_to_f16(float f) {
    unsigned short s;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(s) : "f"(f));
    return (u32)s;
}

template <int DT>
struct IncLanes {
    static const int N = (DT == 2) ? 4 : 8;  // elements per 16-byte chunk
    static const int ES = (DT == 2) ? 4 : 2; // bytes per element
};

template <int DT>
__device__ __forceinline__ void inc_unpack(uint4 r, float (&f)[8]) {
    u32 w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        if (DT == 2) {
            f[i] = __uint_as_float(w[i]);
        } else if (DT == 0) {
            f[2 * i] = __uint_as_float(w[i] << 16);
            f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        } else {
            f[2 * i] = inc_f16_to_f32(w[i] & 0xffffu);
            f[2 * i + 1] = inc_f16_to_f32(w[i] >> 16);
        }
    }
}

template <int DT>
__device__ __forceinline__ uint4 inc_pack(const float (&f)[8]) {
    u32 w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        if (DT == 2) {
            w[i] = __float_as_uint(f[i]);
        } else if (DT == 0) {
            // One cvt.rn.bf16x2.f32 for both lanes (sm_80+): round to nearest even, like
            // the integer rounding it replaces; the folds (f32 add, min, max, multiply)
            // leave only non-NaNs and the canonical NaN, which both turn into 0x7fff.
            // 4x H200, GPU run 66: world 2 4 MiB 18.17 -> 17.58 us, 1 MiB 7.30 -> 7.12;
            // world 4 16 KiB 3.52 -> 3.48, 256 KiB 6.47 -> 6.32.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
            asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(w[i]) : "f"(f[2 * i + 1]), "f"(f[2 * i]));
#else
            w[i] = inc_f32_to_bf16(f[2 * i]) | (inc_f32_to_bf16(f[2 * i + 1]) << 16);
#endif
        } else {
            w[i] = inc_f32_to_f16(f[2 * i]) | (inc_f32_to_f16(f[2 * i + 1]) << 16);
        }
    }
    uint4 r;
    r.x = w[0];
    r.y = w[1];
    r.z = w[2];
    r.w = w[3];
    return r;
}

template <int OP>
__device__ __forceinline__ float inc_fold(float a, float b) {
    if (OP == 2) return fminf(a, b);
    if (OP == 3) return fmaxf(a, b);
    return __fadd_rn(a, b);
}

// acc = fold(acc, v) lane-wise (first: acc = v).
template <int DT, int OP>
__device__ __forceinline__ void inc_fold_chunk(float (&acc)[8], uint4 raw, bool first) {
    float v[8];
    inc_unpack<DT>(raw, v);
#pragma unroll
    for (int i = 0; i < IncLanes<DT>::N; ++i) acc[i] = first ? v[i] : inc_fold<OP>(acc[i], v[i]);
}

template <int DT, int OP>
__device__ __forceinline__ void inc_finish(float (&acc)[8], float scale) {
    if (OP == 1) {
#pragma unroll
        for (int i = 0; i < IncLanes<DT>::N; ++i) acc[i] = __fmul_rn(acc[i], scale);
    }
}

// ----- user tensor I/O (handles the partial tail chunk and unaligned tensors) ----------

// Words of tensor bytes [off, off + 4 NW) at `base`, element by element, zero past
// `nbytes` (the partial tail and unaligned tensors; NW = 4: a chunk, 2: an LL payload word).
template <int DT, int NW>
__device__ __forceinline__ void inc_load_masked(u64 base, u64 off, u64 nbytes, u32 (&w)[NW]) {
    const int es = IncLanes<DT>::ES;
#pragma unroll
    for (int i = 0; i < 4 * NW / es; ++i) {
        const u64 b = off + (u64)i * es;
        if (b < nbytes) {
            if (es == 4) {
                w[i] = *reinterpret_cast<const u32*>(base + b);
            } else {
                u32 h = *reinterpret_cast<const u16*>(base + b);
                w[i / 2] |= h << ((i & 1) * 16);
            }
        }
    }
}

// The stores of inc_load_masked: words w to tensor bytes [off, off + 4 NW) at `base`,
// element by element, none past `nbytes`.
template <int DT, int NW>
__device__ __forceinline__ void inc_store_masked(u64 base, u64 off, u64 nbytes, const u32 (&w)[NW]) {
    const int es = IncLanes<DT>::ES;
#pragma unroll
    for (int i = 0; i < 4 * NW / es; ++i) {
        const u64 b = off + (u64)i * es;
        if (b < nbytes) {
            if (es == 4) {
                *reinterpret_cast<u32*>(base + b) = w[i];
            } else {
                *reinterpret_cast<u16*>(base + b) = (u16)(w[i / 2] >> ((i & 1) * 16));
            }
        }
    }
}

template <int DT>
__device__ __forceinline__ uint4 inc_load_input(const IncArgs& a, u64 c, u64 nbytes) {
    const u64 off = c * 16;
    if ((a.flags & INC_FLAG_IO_ALIGNED) && off + 16 <= nbytes) {
        return *reinterpret_cast<const uint4*>(a.input + off);
    }
    u32 w[4] = {0, 0, 0, 0};
    inc_load_masked<DT, 4>(a.input, off, nbytes, w);
    return make_uint4(w[0], w[1], w[2], w[3]);
}

// Chunk c of a tensor at `base`: whole 16-byte store, or element by element for the
// partial tail chunk and for unaligned tensors (bytes past `nbytes` are never written).
template <int DT>
__device__ __forceinline__ void inc_store_at(u64 base, bool aligned, u64 c, u64 nbytes, uint4 v) {
    const u64 off = c * 16;
    if (aligned && off + 16 <= nbytes) {
        *reinterpret_cast<uint4*>(base + off) = v;
        return;
    }
    const u32 w[4] = {v.x, v.y, v.z, v.w};
    inc_store_masked<DT, 4>(base, off, nbytes, w);
}

template <int DT>
__device__ __forceinline__ void inc_store_output(const IncArgs& a, u64 c, u64 nbytes, uint4 v) {
    inc_store_at<DT>(a.output, (a.flags & INC_FLAG_IO_ALIGNED) != 0, c, nbytes, v);
}

// First chunk >= lo owned by this thread under the grid-stride partition over the first
// G blocks (chunk c belongs to block (c / T) % G, thread c % T; the copy-in two-shot with
// INC_FLAG_PREV_GATHER partitions over its G' blocks that are not copy blocks, every
// other kernel over G = gridDim.x).
__device__ __forceinline__ u64 inc_first_chunk_g(u64 lo, u32 G) {
    const u64 T = blockDim.x;
    const u64 stride = (u64)G * T;
    const u64 mine = (u64)blockIdx.x * T + threadIdx.x;
    if (lo <= mine) return mine;
    return mine + ((lo - mine + stride - 1) / stride) * stride;
}

__device__ __forceinline__ u64 inc_first_chunk(u64 lo) { return inc_first_chunk_g(lo, gridDim.x); }

__device__ __forceinline__ u64 inc_stride_g(u32 G) { return (u64)G * blockDim.x; }

__device__ __forceinline__ u64 inc_stride() { return inc_stride_g(gridDim.x); }

// ----- unrolled data movement ------------------------------------------------------------
// Each thread takes INC_UNROLL chunks (copies) or 2 chunks x W peers (reductions) per
// iteration and issues every load before the first use, so it keeps several independent
// 16-byte accesses in flight (one at a time caps an NVLink pull far below the link rate).
#define INC_UNROLL 4

// dst[c] = input[c] for my chunks c in [lo, hi) (dst: a symmetric-buffer address), under
// the partition over G blocks.
template <int DT>
__device__ __forceinline__ void inc_copy_in_g(const IncArgs& a, u64 dst, u64 lo, u64 hi,
                                              u64 nbytes, u32 G) {
    const u64 S = inc_stride_g(G);
    u64 c = inc_first_chunk_g(lo, G);
    for (; c + (INC_UNROLL - 1) * S < hi; c += INC_UNROLL * S) {
        uint4 v[INC_UNROLL];
#pragma unroll
        for (int u = 0; u < INC_UNROLL; ++u) v[u] = inc_load_input<DT>(a, c + u * S, nbytes);
#pragma unroll
        for (int u = 0; u < INC_UNROLL; ++u) inc_st_v4(dst + (c + u * S) * 16, v[u]);
    }
    for (; c < hi; c += S) inc_st_v4(dst + c * 16, inc_load_input<DT>(a, c, nbytes));
}

template <int DT>
__device__ __forceinline__ void inc_copy_in(const IncArgs& a, u64 dst, u64 lo, u64 hi,
                                            u64 nbytes) {
    inc_copy_in_g<DT>(a, dst, lo, hi, nbytes, gridDim.x);
}

// out[c] = src[c] for chunks c = first, first + S, ... below hi (out: `nbytes` bytes at
// `dst`; src: a symmetric-buffer address).
template <int DT>
__device__ __forceinline__ void inc_copy_out(u64 src, u64 dst, bool aligned, u64 first, u64 S,
                                             u64 hi, u64 nbytes) {
    u64 c = first;
    for (; c + (INC_UNROLL - 1) * S < hi; c += INC_UNROLL * S) {
        uint4 v[INC_UNROLL];
#pragma unroll
        for (int u = 0; u < INC_UNROLL; ++u) v[u] = inc_ld_cg_v4(src + (c + u * S) * 16);
#pragma unroll
        for (int u = 0; u < INC_UNROLL; ++u) inc_store_at<DT>(dst, aligned, c + u * S, nbytes, v[u]);
    }
    for (; c < hi; c += S) inc_store_at<DT>(dst, aligned, c, nbytes, inc_ld_cg_v4(src + c * 16));
}

// out[c] = src[c] for my chunks c in [lo, hi) under the partition over G blocks.
template <int DT>
__device__ __forceinline__ void inc_gather_g(const IncArgs& a, u64 src, u64 lo, u64 hi,
                                             u64 nbytes, u32 G) {
    inc_copy_out<DT>(src, a.output, (a.flags & INC_FLAG_IO_ALIGNED) != 0,
                     inc_first_chunk_g(lo, G), inc_stride_g(G), hi, nbytes);
}

template <int DT, int OP>
__device__ __forceinline__ uint4 inc_fold_ranks(const IncArgs& a, const uint4 (&raw)[INC_MAX_RANKS]) {
    float acc[8];
#pragma unroll
    for (u32 q = 0; q < INC_MAX_RANKS; ++q) {
        if (q < a.world) inc_fold_chunk<DT, OP>(acc, raw[q], q == 0);
    }
    inc_finish<DT, OP>(acc, a.scale);
    return inc_pack<DT>(acc);
}

// Index of rank s's area among rank `owner`'s areas (s != owner): the other ranks in rank
// order, the owner skipped (PROTOCOL.md "Areas"; inc_proto::areas::area_index).
__device__ __forceinline__ u32 inc_area(u32 s, u32 owner) { return s > owner ? s - 1u : s; }

// Chunk c of the result from what a rank received: fold in rank order my own input chunk
// c (q == me) and, for every peer q, the chunk at recv + (inc_area(q, me) * area + j) * 16
// (my receive area from q: local reads, W loads in flight). The copy-in one-shot (area =
// C, j = c) and the two-shots' reduce of my slice (area = S, j = c - lo) read their receive
// areas so.
template <int DT, int OP>
__device__ __forceinline__ uint4 inc_fold_received(const IncArgs& a, u64 c, u64 nbytes,
                                                   u64 recv, u64 area, u64 j) {
    uint4 r[INC_MAX_RANKS];
#pragma unroll
    for (u32 q = 0; q < INC_MAX_RANKS; ++q) {
        if (q < a.world) {
            r[q] = (q == a.rank) ? inc_load_input<DT>(a, c, nbytes)
                                 : inc_ld_cg_v4(recv + ((u64)inc_area(q, a.rank) * area + j) * 16u);
        }
    }
    return inc_fold_ranks<DT, OP>(a, r);
}

// For my chunks c in [lo, hi): v = fold over ranks 0..W-1 (rank order, f32) of
// data[q] + region + c*16; out[c] = v, and own[c] = v when own != 0. Two chunks per
// iteration, all 2W loads in flight together.
template <int DT, int OP>
__device__ __forceinline__ void inc_reduce(const IncArgs& a, u64 region, u64 lo, u64 hi,
                                           u64 nbytes, u64 own) {
    const u64 S = inc_stride();
    for (u64 c = inc_first_chunk(lo); c < hi; c += 2 * S) {
        const bool two = c + S < hi;
        uint4 r0[INC_MAX_RANKS], r1[INC_MAX_RANKS];
#pragma unroll
        for (u32 q = 0; q < INC_MAX_RANKS; ++q) {
            if (q < a.world) {
                r0[q] = inc_ld_cg_v4(a.data[q] + region + c * 16);
                if (two) r1[q] = inc_ld_cg_v4(a.data[q] + region + (c + S) * 16);
            }
        }
        const uint4 v0 = inc_fold_ranks<DT, OP>(a, r0);
        if (own != 0) inc_st_v4(own + c * 16, v0);
        inc_store_output<DT>(a, c, nbytes, v0);
        if (two) {
            const uint4 v1 = inc_fold_ranks<DT, OP>(a, r1);
            if (own != 0) inc_st_v4(own + (c + S) * 16, v1);
            inc_store_output<DT>(a, c + S, nbytes, v1);
        }
    }
}

// ----- per-call context, errors, barrier ---------------------------------------------------

struct IncCall {
    u32 e;       // epoch of this call
    u32 p;       // parity
    u64 flag;    // (e << 32) | sig
    u64 region;  // offset of this call's region in every rank's data area
};

// Record the first error of this rank (pad + host mirror) and raise the abort word on every
// rank's pad (own included).
__device__ void inc_fail(const IncArgs& a, u32 code, u32 peer, u32 phase, u64 expected,
                         u64 seen) {
    const u64 rec = a.pad[a.rank] + INC_PAD_ERROR;
    if (atomicCAS_system(reinterpret_cast<unsigned int*>(rec), 0u, code) == 0u) {
        volatile IncErrorRecord* r = reinterpret_cast<volatile IncErrorRecord*>(rec);
        r->rank = a.rank;
        r->block = blockIdx.x;
        r->peer = peer;
        r->phase = phase;
        r->expected = expected;
        r->seen = seen;
        if (a.host != 0) {
            volatile IncErrorRecord* h =
                reinterpret_cast<volatile IncErrorRecord*>(a.host + INC_HOST_ERROR);
            h->rank = a.rank;
            h->block = blockIdx.x;
            h->peer = peer;
            h->phase = phase;
            h->expected = expected;
            h->seen = seen;
            __threadfence_system();
            h->code = code;
        }
        __threadfence_system();
    }
    const u32 word = 0x80000000u | ((a.rank & 0x7fffffu) << 8) | (code & 0xffu);
    for (u32 q = 0; q < a.world && q < INC_MAX_RANKS; ++q) {
        const u64 ab = a.pad[q] + INC_PAD_ABORT;
        if (inc_ld_relaxed_sys_u32(ab) == 0u) inc_st_relaxed_sys_u32(ab, word);
    }
}

// The device abort word of this rank (local memory; never PCIe).
__device__ __forceinline__ u32 inc_abort_seen(const IncArgs& a) {
    return inc_ld_relaxed_sys_u32(a.pad[a.rank] + INC_PAD_ABORT);
}

// Slow path of every wait, run once per INC_SPIN_CHECK + 1 spins: abort word (device;
// the mapped host word too once the wait is older than INC_HOST_POLL_NS) and deadline.
// Returns 0 to keep waiting, else the error code it recorded.
__device__ __forceinline__ u32 inc_wait_slow(const IncArgs& a, u64 t0, u32 peer, u32 phase,
                                          u64 expected, u64 seen) {
    u32 w = inc_abort_seen(a);
    const u64 dt = inc_now_ns() - t0;
    if (w == 0u && a.host != 0 && dt > INC_HOST_POLL_NS) {
        w = inc_ld_relaxed_sys_u32(a.host + INC_HOST_ABORT);
    }
    if (w != 0u) {
        inc_fail(a, INC_ERR_PEER_ABORT, (w >> 8) & 0x7fffffu, phase, expected, seen);
        return INC_ERR_PEER_ABORT;
    }
    if (dt > a.timeout_ns) {
        inc_fail(a, INC_ERR_TIMEOUT, peer, phase, expected, seen);
        return INC_ERR_TIMEOUT;
    }
    return 0u;
}

// Programmatic dependent launch (sm_90+; no-ops when the launch did not ask for it): a
// kernel may be scheduled while the previous kernel of its stream still runs, so every
// entry point first waits for that kernel's completion and memory (inc_pdl_wait), and
// every block lets the next kernel be scheduled once it passed its prologue
// (inc_pdl_launch): the launch latency of call n+1 hides behind call n.
__device__ __forceinline__ void inc_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void inc_pdl_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// PROLOGUE. Returns false when the whole block must exit (comm aborted). Thread 0 reads
// this block's epoch word and the abort word (local memory, never PCIe).
__device__ bool inc_prologue(const IncArgs& a, volatile int* s_fail, volatile u32* s_e,
                             IncCall& k) {
    if (threadIdx.x == 0) {
        *s_fail = 0;
        // This block's epoch word and the abort word: two independent loads in flight
        // together (PROTOCOL.md "Kernel prologue / epilogue").
        u32 ep, w;
        asm volatile("ld.relaxed.sys.global.u32 %0, [%1];"
                     : "=r"(ep)
                     : "l"(a.pad[a.rank] + INC_PAD_EPOCHS + 4u * blockIdx.x)
                     : "memory");
        asm volatile("ld.relaxed.sys.global.u32 %0, [%1];"
                     : "=r"(w)
                     : "l"(a.pad[a.rank] + INC_PAD_ABORT)
                     : "memory");
        if (w != 0u) {
            *s_fail = 2;
            if (blockIdx.x == 0) inc_fail(a, INC_ERR_PEER_ABORT, (w >> 8) & 0x7fffffu, 0, 0, w);
        }
        *s_e = inc_next_epoch(ep);
    }
    __syncthreads();
    inc_pdl_launch();
    if (*s_fail != 0) return false;
    k.e = *s_e;
    k.p = k.e & 1u;
    k.flag = ((u64)k.e << 32) | (u64)a.sig;
    k.region = (a.flags & INC_FLAG_ZERO_COPY) ? a.zc_offset : (u64)k.p * a.half_bytes;
    return true;
}

// Flag barrier over the ranks in `mask` (PROTOCOL.md "Barrier"). All threads of the block
// call it. Returns false once this block has failed (then it must skip every later step).
__device__ bool inc_barrier(const IncArgs& a, const IncCall& k, u32 kind_off, u32 mask,
                            u32 phase, volatile int* s_fail) {
    __syncthreads();
    const u32 t = threadIdx.x;
    const u32 n = __popc(mask);
    if (t < n && *s_fail == 0) {
        // peer = the t-th set bit of mask
        u32 m = mask;
        for (u32 i = 0; i < t; ++i) m &= m - 1u;
        const u32 peer = __ffs(m) - 1u;
        const u64 slot = kind_off + ((u64)(k.p * INC_MAX_BLOCKS + blockIdx.x) * INC_MAX_RANKS) * 8u;
        inc_st_release_sys(a.pad[peer] + slot + (u64)a.rank * 8u, k.flag);
        const u64 mine = a.pad[a.rank] + slot + (u64)peer * 8u;
        const u64 t0 = inc_now_ns();
        u32 it = 0;
        // Spin on the flag alone; everything else every INC_SPIN_CHECK + 1 spins.
        u64 v = inc_ld_acquire_sys(mine);
        while (v != k.flag) {
            const u32 ve = (u32)(v >> 32);
            if (ve == k.e || inc_tag_newer(ve, k.e)) {
                inc_fail(a, ve == k.e ? INC_ERR_CALL_MISMATCH : INC_ERR_SEQ_MISMATCH, peer,
                         phase, k.flag, v);
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
        // The consumer clears the slot it took (PROTOCOL.md "Wrap"): this peer writes it
        // next in call e + 2, after my kernel e + 1 started, i.e. after this kernel ended.
        // A slot untouched for 2^31 calls then holds 0, not an epoch that reads as newer.
        if (v == k.flag) inc_st_relaxed_sys_u64(mine, 0ull);
    }
    __syncthreads();
    return *s_fail == 0;
}

// The i-th peer in rotated order (r+1, r+2, ...) for 1 <= i < world: storing into the
// peers in this order, at any time every rank receives from one writer.
__device__ __forceinline__ u32 inc_rot_peer(const IncArgs& a, u32 i) {
    const u32 q = a.rank + i;
    return q >= a.world ? q - a.world : q;
}

// Bit mask of every rank except me.
__device__ __forceinline__ u32 inc_others(const IncArgs& a) {
    return ((1u << a.world) - 1u) & ~(1u << a.rank);
}

// Block 0 of one call in INC_SCRUB_EVERY / 2 (e / 2 a multiple of INC_SCRUB_EVERY / 2)
// zeroes one window of INC_SCRUB_BYTES of its own push region in this call's parity
// (PROTOCOL.md "Wrap", rule 5; inc_proto::push::scrub_window): the window rotates over
// every peer's slot, so no LL data line or header keeps a tag for 2^32 - SEQ_WINDOW calls.
// No peer writes this parity of my push region during my call e but for the LL call e
// itself, whose lines below `ll_used` bytes (0: not an LL call) are left alone; a call of
// another algorithm also zeroes the parity's headers.
__device__ __forceinline__ void inc_scrub_push(const IncArgs& a, const IncCall& k, u64 ll_used) {
    const u32 slot = a.push_slot_bytes;
    const u32 half = INC_SCRUB_EVERY / 2u;
    if (blockIdx.x != 0 || ((k.e >> 1) & (half - 1u)) != 0u || slot == 0u || a.world < 2u) return;
    const u32 per = (slot + INC_SCRUB_BYTES - 1u) / INC_SCRUB_BYTES;
    const u32 m = ((k.e >> 1) / half) % (per * (a.world - 1u));
    const u32 j = m / per;
    const u32 s = j < a.rank ? j : j + 1u;
    const u32 lo = (m % per) * INC_SCRUB_BYTES;
    const u32 hi = lo + INC_SCRUB_BYTES < slot ? lo + INC_SCRUB_BYTES : slot;
    // my push region: after my pad and my two parity halves (a.data may be the symmetric
    // tensors in a zero-copy call; the pad is always my buffer's)
    const u64 push = a.pad[a.rank] + INC_PAD_BYTES + 2u * a.half_bytes;
    const u64 base = push + INC_PUSH_SLOTS + ((u64)k.p * INC_MAX_RANKS + s) * slot;
    uint4 z;
    z.x = 0u;
    z.y = 0u;
    z.z = 0u;
    z.w = 0u;
    for (u32 o = lo + threadIdx.x * 16u; o < hi; o += blockDim.x * 16u) {
        if (o >= ll_used) inc_st_v4(base + o, z);
    }
    if (ll_used == 0 && threadIdx.x < a.world && threadIdx.x != a.rank) {
        inc_st_v4(push + INC_PUSH_HDR + ((u64)k.p * INC_MAX_RANKS + threadIdx.x) * 16u, z);
    }
}

// EPILOGUE (no atomic, no fence: 0.2-0.34 us less per multi-block call than the old
// done counter, 2x H200 run 17). `ll_used`: the slot bytes an LL call's lines use (0 for
// every other call; see inc_scrub_push).
__device__ void inc_epilogue(const IncArgs& a, const IncCall& k, u64 ll_used = 0) {
    __syncthreads();
    inc_scrub_push(a, k, ll_used);
    // Every block advances its own epoch word; block 0 also those of the blocks this call
    // did not launch. No counter joins the blocks: a block reads only its own word, and the
    // next kernel on this stream reads any word only after this one completed.
    const u64 ep = a.pad[a.rank] + INC_PAD_EPOCHS;
    if (threadIdx.x == 0) *reinterpret_cast<volatile u32*>(ep + 4u * blockIdx.x) = k.e;
    if (blockIdx.x == 0) {
        for (u32 t = gridDim.x + threadIdx.x; t < INC_MAX_BLOCKS; t += blockDim.x) {
            *reinterpret_cast<volatile u32*>(ep + 4u * t) = k.e;
        }
    }
}

// ----- 8-byte payload words and LL lines (the push one-shot and the two-shot of lines) ----

__device__ __forceinline__ uint4 inc_ld_volatile_v4(u64 addr) {
    uint4 r;
    asm volatile("ld.volatile.global.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(addr));
    return r;
}

__device__ __forceinline__ bool inc_line_ready(uint4 v, u32 tag) {
    return v.y == tag && v.w == tag;
}

// Payload bytes [8h, 8h + 8) of the input as two words (zero past the end).
template <int DT>
__device__ __forceinline__ uint2 inc_load8(const IncArgs& a, u64 h, u64 nbytes) {
    const u64 off = h * 8;
    if ((a.flags & INC_FLAG_IO_ALIGNED) && off + 8 <= nbytes) {
        return *reinterpret_cast<const uint2*>(a.input + off);
    }
    u32 w[2] = {0, 0};
    inc_load_masked<DT, 2>(a.input, off, nbytes, w);
    return make_uint2(w[0], w[1]);
}

template <int DT>
__device__ __forceinline__ void inc_store8(const IncArgs& a, u64 h, u64 nbytes, uint2 v) {
    const u64 off = h * 8;
    if ((a.flags & INC_FLAG_IO_ALIGNED) && off + 8 <= nbytes) {
        *reinterpret_cast<uint2*>(a.output + off) = v;
        return;
    }
    const u32 w[2] = {v.x, v.y};
    inc_store_masked<DT, 2>(a.output, off, nbytes, w);
}
