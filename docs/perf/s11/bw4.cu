// Session 11 (runs 80-83; bw3.cu of run 78 plus the peer order): can anything beat the SM remote-store ceiling (~345 GB/s a rank)?
// W GPUs of one process, every GPU sends P bytes to each of its W-1 peers at once (the
// traffic of one two-shot phase). Modes:
//   v4     SM stores, 16 B a thread, 4 in flight, peers in rotated order (inc's form)
//   tma    bulk copies: cp.async.bulk global->shared (local), then shared->peer global
//   ce     copy-engine peer copies, one stream per peer
//   v4+ce  SM stores for a fraction f of every peer's bytes, CE for the rest, concurrently
//   tma+ce the same with the bulk copies
// Prints per-GPU egress GB/s ((W-1) P / t), mean of 20 after 3 warm-ups, slowest GPU.
// nvcc -O3 -arch=sm_90 bw3.cu -o bw3 && ./bw3 W
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cuda_runtime.h>
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("ERR %s line %d\n", cudaGetErrorString(e), __LINE__); exit(1); } } while (0)

struct Dsts { char* p[8]; int n; };

template <int NP>
__global__ void push_v4(const char* src, Dsts d, size_t per_peer, size_t lim) {
    // lim: bytes of each peer's region moved here (the rest by CE)
    const size_t n = lim / 16, S = (size_t)gridDim.x * blockDim.x;
    for (size_t c = (size_t)blockIdx.x * blockDim.x + threadIdx.x; c < n; c += 4 * S) {
        uint4 v[NP][4];
#pragma unroll
        for (int i = 0; i < NP; ++i)
#pragma unroll
            for (int u = 0; u < 4; ++u)
                if (c + u * S < n) v[i][u] = ((const uint4*)(src + i * per_peer))[c + u * S];
#pragma unroll
        for (int i = 0; i < NP; ++i)
#pragma unroll
            for (int u = 0; u < 4; ++u)
                if (c + u * S < n) ((uint4*)d.p[i])[c + u * S] = v[i][u];
    }
}

// peer-sequential: every thread copies its chunks to peer 0, then peer 1, ... (grid-stride,
// 4 in flight): at any time each GPU writes into one peer (a permutation when all GPUs keep pace)
__global__ void push_seq(const char* src, Dsts d, size_t per_peer, size_t lim, int brot) {
    const size_t n = lim / 16, S = (size_t)gridDim.x * blockDim.x;
    for (int ii = 0; ii < d.n; ++ii) {
        const int i = brot ? (ii + blockIdx.x) % d.n : ii;  // brot: block b starts at peer b mod n
        const uint4* s = (const uint4*)(src + i * per_peer);
        uint4* o = (uint4*)d.p[i];
        for (size_t c = (size_t)blockIdx.x * blockDim.x + threadIdx.x; c < n; c += 4 * S) {
            uint4 v[4];
#pragma unroll
            for (int u = 0; u < 4; ++u) if (c + u * S < n) v[u] = s[c + u * S];
#pragma unroll
            for (int u = 0; u < 4; ++u) if (c + u * S < n) o[c + u * S] = v[u];
        }
    }
}

// one destination a block: block b copies peer (b % n)'s bytes, grid-stride over the G / n
// blocks of that peer (4 in flight)
__global__ void push_blk(const char* src, Dsts d, size_t per_peer, size_t lim) {
    const int i = blockIdx.x % d.n;
    const size_t nb = gridDim.x / d.n;
    if ((size_t)blockIdx.x >= nb * d.n) return;
    const size_t n = lim / 16, S = nb * blockDim.x;
    const uint4* s = (const uint4*)(src + i * per_peer);
    uint4* o = (uint4*)d.p[i];
    for (size_t c = (blockIdx.x / d.n) * blockDim.x + threadIdx.x; c < n; c += 4 * S) {
        uint4 v[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) if (c + u * S < n) v[u] = s[c + u * S];
#pragma unroll
        for (int u = 0; u < 4; ++u) if (c + u * S < n) o[c + u * S] = v[u];
    }
}

template <int ST>
__global__ void push_tma(const char* src, Dsts d, size_t per_peer, size_t lim, int tile, int pm) {
    extern __shared__ __align__(128) char sm[];
    __shared__ __align__(8) uint64_t bar[ST];
    if (threadIdx.x != 0) return;
    for (int s = 0; s < ST; ++s) {
        uint32_t b = (uint32_t)__cvta_generic_to_shared(&bar[s]);
        asm volatile("mbarrier.init.shared.b64 [%0], 1;" ::"r"(b));
    }
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    const size_t per = lim / tile, total = per * d.n;
    uint32_t it = 0;
    for (size_t t = blockIdx.x; t < total; t += gridDim.x, ++it) {
        const int s = it % ST;
        const uint32_t ph = (it / ST) & 1u;
        asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(ST - 1) : "memory");
        const int i = pm ? (int)(t / per) : (int)(t % d.n);
        const size_t off = pm ? (t % per) * (size_t)tile : (t / d.n) * (size_t)tile;
        const uint32_t b = (uint32_t)__cvta_generic_to_shared(&bar[s]);
        const uint32_t dsm = (uint32_t)__cvta_generic_to_shared(sm + (size_t)s * tile);
        asm volatile("mbarrier.arrive.expect_tx.shared.b64 _, [%0], %1;" ::"r"(b), "r"(tile) : "memory");
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                     ::"r"(dsm), "l"(src + i * per_peer + off), "r"(tile), "r"(b) : "memory");
        uint32_t done = 0;
        while (!done) {
            asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                         : "=r"(done) : "r"(b), "r"(ph) : "memory");
        }
        asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;"
                     ::"l"(d.p[i] + off), "r"(dsm), "r"(tile) : "memory");
        asm volatile("cp.async.bulk.commit_group;" ::: "memory");
    }
    asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
}

int W;
char *src[8], *rcv[8];
cudaStream_t st[8][8];
cudaEvent_t e0[8], e1[8], j[8][8];
size_t maxper;

// mode: 0 v4, 1 tma, 2 ce, 3 v4+ce, 4 tma+ce, 5 v4 peer after peer, 6 tma peer after peer,
// 7 ring (all (W-1) P bytes to peer r+1), 8 v4 one destination a block,
// 9 v4 peer after peer, block b starting at peer b mod (W-1); f: fraction by SM
float run(int mode, size_t P, double f, int G, int T, int tile, int reps = 20) {
    double tot = 0; int cnt = 0;
    size_t lim = (size_t)(P * f) / 65536 * 65536;
    if (mode == 0 || mode == 1 || mode >= 5) lim = P;
    if (mode == 2) lim = 0;
    for (int r = 0; r < reps + 3; ++r) {
        for (int d = 0; d < W; ++d) { cudaSetDevice(d); cudaDeviceSynchronize(); }
        for (int d = 0; d < W; ++d) {
            cudaSetDevice(d);
            Dsts ds; ds.n = W - 1;
            for (int i = 1; i < W; ++i) { int q = (d + i) % W; ds.p[i - 1] = rcv[q] + (size_t)d * maxper; }
            cudaEventRecord(e0[d], st[d][0]);
            if (lim < P) {
                for (int i = 1; i < W; ++i) {
                    cudaStreamWaitEvent(st[d][i], e0[d]);
                    int q = (d + i) % W;
                    cudaMemcpyPeerAsync(ds.p[i - 1] + lim, q, src[d] + (size_t)(i - 1) * maxper + lim, d, P - lim, st[d][i]);
                }
            }
            if (lim > 0) {
                if (mode == 0 || mode == 3) {
                    if (W == 2) push_v4<1><<<G, T, 0, st[d][0]>>>(src[d], ds, maxper, lim);
                    else if (W == 3) push_v4<2><<<G, T, 0, st[d][0]>>>(src[d], ds, maxper, lim);
                    else push_v4<3><<<G, T, 0, st[d][0]>>>(src[d], ds, maxper, lim);
                }
                else if (mode == 8) push_blk<<<G, T, 0, st[d][0]>>>(src[d], ds, maxper, lim);
                else if (mode == 5 || mode == 9) push_seq<<<G, T, 0, st[d][0]>>>(src[d], ds, maxper, lim, mode == 9);
                else if (mode == 7) { Dsts r1; r1.n = 1; r1.p[0] = ds.p[0]; push_seq<<<G, T, 0, st[d][0]>>>(src[d], r1, maxper, lim * (W - 1), 0); }
                else push_tma<4><<<G, 32, 4 * tile, st[d][0]>>>(src[d], ds, maxper, lim, tile, mode == 6);
            }
            if (lim < P) {
                for (int i = 1; i < W; ++i) { cudaEventRecord(j[d][i], st[d][i]); cudaStreamWaitEvent(st[d][0], j[d][i]); }
            }
            cudaEventRecord(e1[d], st[d][0]);
        }
        float mx = 0;
        for (int d = 0; d < W; ++d) {
            cudaSetDevice(d); CK(cudaEventSynchronize(e1[d]));
            float ms; cudaEventElapsedTime(&ms, e0[d], e1[d]); if (ms > mx) mx = ms;
        }
        if (r >= 3) { tot += mx; cnt++; }
    }
    return (float)(tot / cnt * 1000.0);
}

int check(size_t P) {  // every receive slot holds the sender's bytes after a tma run
    int bad = 0;
    char* h = (char*)malloc(P); char* g = (char*)malloc(P);
    for (int d = 0; d < W; ++d)
        for (int i = 1; i < W; ++i) {
            int q = (d + i) % W;
            cudaSetDevice(d); CK(cudaMemcpy(h, src[d] + (size_t)(i - 1) * maxper, P, cudaMemcpyDeviceToHost));
            cudaSetDevice(q); CK(cudaMemcpy(g, rcv[q] + (size_t)d * maxper, P, cudaMemcpyDeviceToHost));
            for (size_t b = 0; b < P; ++b) if (h[b] != g[b]) { bad++; break; }
        }
    free(h); free(g);
    return bad;
}

__global__ void fill(char* p, size_t n, int seed) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = (char)(i * 131 + seed * 7 + (i >> 12));
}

int main(int argc, char** argv) {
    W = argc > 1 ? atoi(argv[1]) : 2;
    maxper = 64ull << 20;
    for (int d = 0; d < W; ++d) {
        CK(cudaSetDevice(d));
        for (int q = 0; q < W; ++q) if (q != d) CK(cudaDeviceEnablePeerAccess(q, 0));
        CK(cudaMalloc(&src[d], maxper * (W - 1))); CK(cudaMalloc(&rcv[d], maxper * (W + 2)));
        fill<<<264, 256>>>(src[d], maxper * (W - 1), d); cudaMemset(rcv[d], 0, maxper * W);
        for (int i = 0; i < W; ++i) CK(cudaStreamCreateWithFlags(&st[d][i], cudaStreamNonBlocking));
        cudaEventCreate(&e0[d]); cudaEventCreate(&e1[d]);
        for (int i = 0; i < W; ++i) cudaEventCreateWithFlags(&j[d][i], cudaEventDisableTiming);
        CK(cudaFuncSetAttribute(push_tma<4>, cudaFuncAttributeMaxDynamicSharedMemorySize, 4 * 32768));
        CK(cudaDeviceSynchronize());
    }
    cudaDeviceProp p; cudaGetDeviceProperties(&p, 0);
    printf("# %s, %d SMs, W=%d\n", p.name, p.multiProcessorCount, W);
    size_t Ps[3] = {2ull << 20, 8ull << 20, 32ull << 20};
    for (int s = 0; s < 3; ++s) {
        size_t P = Ps[s]; double by = (double)P * (W - 1);
        auto pr = [&](const char* nm, float t) { printf("  %-28s %8.1f us %5.0f GB/s\n", nm, t, by / t / 1e3); fflush(stdout); };
        printf("per peer %zu MiB (egress %zu MiB a GPU)\n", P >> 20, (P * (W - 1)) >> 20);
        pr("v4 all peers a chunk 132x512", run(0, P, 1, 132, 512, 0));
        pr("v4 peer after peer 132x512", run(5, P, 1, 132, 512, 0));
        pr("v4 peer after peer, block-rotated", run(9, P, 1, 132, 512, 0));
        pr("v4 one peer a block 132x512", run(8, P, 1, 132, 512, 0));
        pr("v4 ring (all to r+1) 132x512", run(7, P, 1, 132, 512, 0));
        pr("tma interleaved 264 16K", run(1, P, 1, 264, 0, 16384));
        pr("v4 peer after peer 132x512", run(5, P, 1, 132, 512, 0));
        pr("v4 peer after peer, block-rotated", run(9, P, 1, 132, 512, 0));
    }
    CK(cudaGetLastError());
    return 0;
}
