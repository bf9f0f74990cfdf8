// Session 12 prototype: a two-shot allreduce of 128-byte lines without barriers (docs/PROTOCOL.md
// "Proposed: a two-shot of 128-byte lines"), to measure before building it into inc.
// One process, W GPUs with peer access; every GPU's receive region is a plain cudaMalloc.
//
// Line = 128 bytes = 8 lanes x 16 bytes, stored by one warp-wide st.volatile.v2.u64 and
// polled by one warp-wide ld.volatile.v2.u64 (run 87's litmus: seen whole). Payload u64 k
// (k = 0..14) of line L is input u64 15L + k; lane i < 7 carries payload 2i, 2i+1; lane 7
// carries payload 14 and the flag (e << 32 | sig). Lines are cut in W slices of SL lines
// (SL a multiple of 4: a warp's 4 lines are always in one slice, so a warp never diverges
// on its role). Parity p = e & 1. Region of a rank, per parity: R[s] (SL lines, writer s)
// then G (W*SL lines).
//   scatter : line L of slice q != r -> owner q's R[r][L - q*SL]
//   reduce  : owner r polls R[s][j] for every s != r at once, folds in rank order (f32),
//             stores the line into every peer's G[L] (rotated order) and its own output
//   gather  : line L of slice q != r: poll own G[L], copy to output
// The consumer clears the flag word it took when CLEAR is set (the wrap rule).
// Spins are bounded by %globaltimer (200 ms): a bug sets err and returns.
// nvcc -O3 -arch=sm_90 -o ll128_2s ll128_2s.cu && ./ll128_2s W sizes...
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <vector>
#include <algorithm>
#include <cuda_runtime.h>
#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("ERR %s line %d\n", cudaGetErrorString(e_), __LINE__); exit(1); } } while (0)

typedef unsigned long long u64;
typedef unsigned int u32;
#define MAXW 4  // worlds 2-4 here
#define SIG 0x5a5au

struct Args {
    u64 region[MAXW];  // every rank's receive region (peer pointers)
    u64 input, output;
    u32* epochs;       // per block
    u32* err;
    u64 nbytes, SL, parity_bytes;
    u32 rank, world, clear;
};

__device__ __forceinline__ u64 now_ns() { u64 t; asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); return t; }
__device__ __forceinline__ void st2(u64 p, u64 a, u64 b) {
    asm volatile("st.volatile.global.v2.u64 [%0], {%1, %2};" ::"l"(p), "l"(a), "l"(b) : "memory");
}
__device__ __forceinline__ void ld2(u64 p, u64& a, u64& b) {
    asm volatile("ld.volatile.global.v2.u64 {%0, %1}, [%2];" : "=l"(a), "=l"(b) : "l"(p) : "memory");
}
__device__ __forceinline__ u64 ldin(const Args& A, u64 k) {
    return 8 * k < A.nbytes ? *reinterpret_cast<const u64*>(A.input + 8 * k) : 0ull;
}
__device__ __forceinline__ void stout(const Args& A, u64 k, u64 v) {
    if (8 * k < A.nbytes) *reinterpret_cast<u64*>(A.output + 8 * k) = v;
}
__device__ __forceinline__ void add4(float (&acc)[4], u64 v, bool first) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float f = __uint_as_float(((u32)(v >> (16 * i)) & 0xffffu) << 16);
        acc[i] = first ? f : acc[i] + f;
    }
}
__device__ __forceinline__ u64 pack4(const float (&acc)[4]) {
    u64 r = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const u32 u = __float_as_uint(acc[i]);  // round to nearest even (no NaN here)
        r |= (u64)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16) << (16 * i);
    }
    return r;
}

// lanes of my line agree that the flag is there (lane 7 holds it); every lane of the warp
// takes part (warp-uniform roles)
__device__ __forceinline__ bool line_ok(u64 b, u64 flag, int lane) {
    const bool mine = (lane & 7) == 7 ? b == flag : true;
    const unsigned m = __ballot_sync(0xffffffffu, mine);
    const unsigned grp = 0xffu << (lane & 24);
    return (m & grp) == grp;
}

__global__ void __launch_bounds__(512, 2) ll128_2s(Args A) {
    __shared__ u32 s_e;
    if (threadIdx.x == 0) {
        u32 e = A.epochs[blockIdx.x] + 1;
        if (e == 0) e = 2;
        s_e = e;
    }
    __syncthreads();
    const u32 e = s_e, p = e & 1;
    const u64 flag = ((u64)e << 32) | SIG;
    const int lane = threadIdx.x & 31, l8 = lane & 7;
    const u64 NL = A.SL * A.world;
    const u64 gthreads = (u64)gridDim.x * blockDim.x;
    const u64 groups = gthreads / 8;
    const u64 g0 = ((u64)blockIdx.x * blockDim.x + threadIdx.x) / 8;
    const u64 own = A.region[A.rank] + p * A.parity_bytes;
    const u64 Goff = (u64)A.world * A.SL * 128;
    const u64 k0 = l8 < 7 ? 2 * l8 : 14;  // first payload u64 of this lane
    const u64 t0 = now_ns();
    // scatter
    for (u64 L = g0; L < NL; L += groups) {
        const u64 q = L / A.SL;
        if (q == A.rank) continue;
        const u64 a = ldin(A, 15 * L + k0);
        const u64 b = l8 < 7 ? ldin(A, 15 * L + k0 + 1) : flag;
        st2(A.region[q] + p * A.parity_bytes + ((u64)A.rank * A.SL + (L - q * A.SL)) * 128 + l8 * 16, a, b);
    }
    // reduce my slice
    for (u64 L = g0; L < NL; L += groups) {
        const u64 q = L / A.SL;
        if (q != A.rank) continue;
        const u64 j = L - q * A.SL;
        u64 va[MAXW], vb[MAXW];
        unsigned pending = 0;
#pragma unroll
        for (u32 s = 0; s < MAXW; ++s) {
            if (s < A.world && s != A.rank) {
                ld2(own + ((u64)s * A.SL + j) * 128 + l8 * 16, va[s], vb[s]);
                pending |= 1u << s;
            }
        }
        while (true) {
#pragma unroll
            for (u32 s = 0; s < MAXW; ++s) {
                if (s < A.world && s != A.rank) {
                    if (line_ok(vb[s], flag, lane)) pending &= ~(1u << s);
                }
            }
            // warp-uniform: every group of the warp has the same pending set only if they
            // agree; keep looping until the whole warp is done
            if (__all_sync(0xffffffffu, pending == 0)) break;
            if (__any_sync(0xffffffffu, now_ns() - t0 > 200000000ull)) { if (lane == 0) atomicAdd(A.err, 1u); return; }
#pragma unroll
            for (u32 s = 0; s < MAXW; ++s) {
                if (s < A.world && s != A.rank && (__any_sync(0xffffffffu, (pending >> s) & 1u))) {
                    u64 x, y;
                    ld2(own + ((u64)s * A.SL + j) * 128 + l8 * 16, x, y);
                    if (pending & (1u << s)) { va[s] = x; vb[s] = y; }
                }
            }
        }
        float acc0[4], acc1[4];
        const u64 mina = ldin(A, 15 * L + k0);
        const u64 minb = l8 < 7 ? ldin(A, 15 * L + k0 + 1) : 0ull;
#pragma unroll
        for (u32 s = 0; s < MAXW; ++s) {
            if (s < A.world) {
                const u64 x = s == A.rank ? mina : va[s];
                const u64 y = s == A.rank ? minb : vb[s];
                add4(acc0, x, s == 0);
                if (l8 < 7) add4(acc1, y, s == 0);
            }
        }
        const u64 ra = pack4(acc0);
        const u64 rb = l8 < 7 ? pack4(acc1) : flag;
        for (u32 i = 1; i < A.world; ++i) {
            u32 d = A.rank + i;
            if (d >= A.world) d -= A.world;
            st2(A.region[d] + p * A.parity_bytes + Goff + L * 128 + l8 * 16, ra, rb);
        }
        stout(A, 15 * L + k0, ra);
        if (l8 < 7) stout(A, 15 * L + k0 + 1, rb);
        if (A.clear && l8 == 7) {
            for (u32 s = 0; s < A.world; ++s)
                if (s != A.rank) *reinterpret_cast<volatile u64*>(own + ((u64)s * A.SL + j) * 128 + 120) = 0ull;
        }
    }
    // gather
    for (u64 L = g0; L < NL; L += groups) {
        const u64 q = L / A.SL;
        if (q == A.rank) continue;
        const u64 addr = own + Goff + L * 128 + l8 * 16;
        u64 a, b;
        ld2(addr, a, b);
        while (!__all_sync(0xffffffffu, line_ok(b, flag, lane))) {
            if (__any_sync(0xffffffffu, now_ns() - t0 > 200000000ull)) { if (lane == 0) atomicAdd(A.err, 1u); return; }
            u64 x, y;
            ld2(addr, x, y);
            if (!line_ok(b, flag, lane)) { a = x; b = y; }
        }
        stout(A, 15 * L + k0, a);
        if (l8 < 7) stout(A, 15 * L + k0 + 1, b);
        if (A.clear && l8 == 7) *reinterpret_cast<volatile u64*>(own + Goff + L * 128 + 120) = 0ull;
    }
    __syncthreads();
    if (threadIdx.x == 0) A.epochs[blockIdx.x] = e;
    if (blockIdx.x == 0)
        for (u32 t = gridDim.x + threadIdx.x; t < 1024; t += blockDim.x) A.epochs[t] = e;
}

static unsigned short f2bf(float f) { u32 u; memcpy(&u, &f, 4); u32 r = u + 0x7fff + ((u >> 16) & 1); return (unsigned short)(r >> 16); }
static float bf2f(unsigned short h) { u32 u = (u32)h << 16; float f; memcpy(&f, &u, 4); return f; }

int main(int argc, char** argv) {
    const int W = argc > 1 ? atoi(argv[1]) : 4;
    const int clear = argc > 2 ? atoi(argv[2]) : 0;
    std::vector<u64> sizes;
    for (int i = 3; i < argc; ++i) sizes.push_back(strtoull(argv[i], 0, 0));
    if (sizes.empty()) sizes = {262144, 524288, 1048576, 2097152};
    int sms = 0;
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    for (int i = 0; i < W; ++i) {
        CK(cudaSetDevice(i));
        for (int j = 0; j < W; ++j) if (j != i) CK(cudaDeviceEnablePeerAccess(j, 0));
    }
    const u64 maxbytes = *std::max_element(sizes.begin(), sizes.end());
    const u64 maxlines = (maxbytes + 119) / 120 + 4 * W;
    const u64 region_bytes = 2 * (2 * maxlines * 128 + 4096);
    std::vector<void*> reg(W), in(W), out(W);
    std::vector<u32*> ep(W), err(W);
    std::vector<cudaStream_t> st(W);
    for (int i = 0; i < W; ++i) {
        CK(cudaSetDevice(i));
        CK(cudaMalloc(&reg[i], region_bytes)); CK(cudaMemset(reg[i], 0, region_bytes));
        CK(cudaMalloc(&in[i], maxbytes)); CK(cudaMalloc(&out[i], maxbytes));
        CK(cudaMalloc(&ep[i], 1024 * 4)); CK(cudaMemset(ep[i], 0, 4096));
        CK(cudaMalloc(&err[i], 4)); CK(cudaMemset(err[i], 0, 4));
        CK(cudaStreamCreateWithFlags(&st[i], cudaStreamNonBlocking));
    }
    printf("# ll128 two-shot prototype, W=%d, clear=%d, %d SMs\n", W, clear, sms);
    printf("size,blocks,us_median,us_min,wrong\n");
    for (u64 nbytes : sizes) {
        const u64 n = nbytes / 2;
        std::vector<std::vector<unsigned short>> h(W, std::vector<unsigned short>(n));
        for (int i = 0; i < W; ++i) {
            unsigned s = 1234567u * (i + 1) + (unsigned)nbytes;
            for (u64 k = 0; k < n; ++k) { s = s * 1664525u + 1013904223u; h[i][k] = f2bf(((int)(s >> 9) % 2001 - 1000) / 37.0f); }
            CK(cudaSetDevice(i)); CK(cudaMemcpy(in[i], h[i].data(), nbytes, cudaMemcpyHostToDevice));
        }
        std::vector<unsigned short> ref(n);
        for (u64 k = 0; k < n; ++k) { float a = 0; for (int i = 0; i < W; ++i) a = i == 0 ? bf2f(h[i][k]) : a + bf2f(h[i][k]); ref[k] = f2bf(a); }
        const u64 NL0 = (nbytes + 119) / 120;
        u64 SL = (NL0 + W - 1) / W; SL = (SL + 3) / 4 * 4;
        const u64 NL = SL * W;
        const u64 groups_needed = NL;  // one line per 8 lanes
        u64 blocks = (groups_needed * 8 + 511) / 512;
        if (blocks > (u64)(2 * sms)) blocks = 2 * sms;
        std::vector<cudaGraphExec_t> ge(W);
        for (int i = 0; i < W; ++i) {
            CK(cudaSetDevice(i));
            Args A{};
            for (int j = 0; j < W; ++j) A.region[j] = (u64)reg[j];
            A.input = (u64)in[i]; A.output = (u64)out[i]; A.epochs = ep[i]; A.err = err[i];
            A.nbytes = nbytes; A.SL = SL; A.parity_bytes = region_bytes / 2; A.rank = i; A.world = W; A.clear = clear;
            cudaGraph_t g;
            CK(cudaStreamBeginCapture(st[i], cudaStreamCaptureModeThreadLocal));
            for (int c = 0; c < 50; ++c) ll128_2s<<<blocks, 512, 0, st[i]>>>(A);
            CK(cudaStreamEndCapture(st[i], &g));
            CK(cudaGraphInstantiate(&ge[i], g, 0));
        }
        std::vector<double> t;
        for (int rep = 0; rep < 22; ++rep) {
            std::vector<cudaEvent_t> a(W), b(W);
            for (int i = 0; i < W; ++i) { CK(cudaSetDevice(i)); CK(cudaEventCreate(&a[i])); CK(cudaEventCreate(&b[i])); CK(cudaEventRecord(a[i], st[i])); CK(cudaGraphLaunch(ge[i], st[i])); CK(cudaEventRecord(b[i], st[i])); }
            double worst = 0;
            for (int i = 0; i < W; ++i) { CK(cudaSetDevice(i)); CK(cudaEventSynchronize(b[i])); float ms; CK(cudaEventElapsedTime(&ms, a[i], b[i])); worst = std::max(worst, (double)ms); }
            if (rep >= 2) t.push_back(worst * 1000.0 / 50);
        }
        std::sort(t.begin(), t.end());
        u64 wrong = 0; u32 errs = 0;
        for (int i = 0; i < W; ++i) {
            CK(cudaSetDevice(i));
            std::vector<unsigned short> o(n);
            CK(cudaMemcpy(o.data(), out[i], nbytes, cudaMemcpyDeviceToHost));
            for (u64 k = 0; k < n; ++k) wrong += o[k] != ref[k];
            u32 e; CK(cudaMemcpy(&e, err[i], 4, cudaMemcpyDeviceToHost)); errs += e;
        }
        printf("%llu,%llu,%.2f,%.2f,%llu%s\n", nbytes, blocks, t[t.size() / 2], t[0], wrong, errs ? " TIMEOUTS" : "");
        fflush(stdout);
        if (errs) return 2;
    }
    return 0;
}
