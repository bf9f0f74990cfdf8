// Bandwidth ceilings between 2 GPUs (session 6): SM remote stores / pulls (both directions
// at once) by grid, threads, unroll; copy engine peer copies; local CE copy alone and beside
// the stores. nvcc -O3 -arch=sm_90 bw.cu -o bw && ./bw
#include <cstdio>
#include <cuda_runtime.h>
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("ERR %s line %d\n", cudaGetErrorString(e), __LINE__); return 1; } } while (0)

template <int U>
__global__ void push(const uint4* __restrict__ src, uint4* dst, size_t n) {
    size_t S = (size_t)gridDim.x * blockDim.x;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i + (U - 1) * S < n; i += U * S) {
        uint4 v[U];
#pragma unroll
        for (int u = 0; u < U; ++u) v[u] = src[i + u * S];
#pragma unroll
        for (int u = 0; u < U; ++u) dst[i + u * S] = v[u];
    }
    for (; i < n; i += S) dst[i] = src[i];
}
template <int U>
__global__ void pull(const uint4* src, uint4* __restrict__ dst, size_t n) {
    size_t S = (size_t)gridDim.x * blockDim.x;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i + (U - 1) * S < n; i += U * S) {
        uint4 v[U];
#pragma unroll
        for (int u = 0; u < U; ++u) asm volatile("ld.global.cg.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v[u].x), "=r"(v[u].y), "=r"(v[u].z), "=r"(v[u].w) : "l"(src + i + u * S));
#pragma unroll
        for (int u = 0; u < U; ++u) dst[i + u * S] = v[u];
    }
    for (; i < n; i += S) dst[i] = src[i];
}
typedef void (*K)(const uint4*, uint4*, size_t);
uint4 *loc[2], *rem[2], *cpy[2];
cudaStream_t st[2], side[2];
cudaEvent_t e0[2], e1[2];

float run(K k, int G, int T, size_t bytes, bool remote, int ce_mode, int reps = 20) {
    // ce_mode: 0 = kernel; 1 = CE peer copy (both dirs); 2 = local CE copy only; 3 = kernel + local CE copy
    float best = 1e30f, tot = 0; int cnt = 0;
    for (int r = 0; r < reps + 3; ++r) {
        for (int d = 0; d < 2; ++d) { cudaSetDevice(d); cudaStreamSynchronize(st[d]); cudaStreamSynchronize(side[d]); }
        for (int d = 0; d < 2; ++d) {
            cudaSetDevice(d);
            cudaEventRecord(e0[d], st[d]);
            if (ce_mode == 3 || ce_mode == 2) { cudaStreamWaitEvent(side[d], e0[d]); cudaMemcpyAsync(cpy[d], loc[d], bytes / 2, cudaMemcpyDeviceToDevice, side[d]); }
            if (ce_mode == 1) cudaMemcpyPeerAsync(rem[1 - d], 1 - d, loc[d], d, bytes, st[d]);
            else if (ce_mode != 2) {
                if (remote) k<<<G, T, 0, st[d]>>>(loc[d], rem[1 - d], bytes / 16);
                else k<<<G, T, 0, st[d]>>>(rem[1 - d], loc[d], bytes / 16);
            }
            if (ce_mode == 3 || ce_mode == 2) { cudaEvent_t j; cudaEventCreate(&j); cudaEventRecord(j, side[d]); cudaStreamWaitEvent(st[d], j); cudaEventDestroy(j); }
            cudaEventRecord(e1[d], st[d]);
        }
        float mx = 0;
        for (int d = 0; d < 2; ++d) { cudaSetDevice(d); cudaEventSynchronize(e1[d]); float ms; cudaEventElapsedTime(&ms, e0[d], e1[d]); if (ms > mx) mx = ms; }
        if (r >= 3) { tot += mx; cnt++; if (mx < best) best = mx; }
    }
    return tot / cnt * 1000.f;  // mean us
}

int main() {
    size_t maxb = 64ull << 20;
    for (int d = 0; d < 2; ++d) {
        CK(cudaSetDevice(d)); CK(cudaDeviceEnablePeerAccess(1 - d, 0));
        CK(cudaMalloc(&loc[d], maxb)); CK(cudaMalloc(&rem[d], maxb)); CK(cudaMalloc(&cpy[d], maxb));
        cudaMemset(loc[d], 1, maxb); cudaMemset(rem[d], 0, maxb);
        CK(cudaStreamCreateWithFlags(&st[d], cudaStreamNonBlocking)); CK(cudaStreamCreateWithFlags(&side[d], cudaStreamNonBlocking));
        cudaEventCreate(&e0[d]); cudaEventCreate(&e1[d]);
    }
    cudaDeviceProp p; cudaGetDeviceProperties(&p, 0); printf("# %s, %d SMs\n", p.name, p.multiProcessorCount);
    size_t sizes[3] = {2ull << 20, 8ull << 20, 32ull << 20};
    int Gs[5] = {64, 128, 132, 264, 396}; int Ts[3] = {256, 512, 1024};
    K ks[4] = {push<1>, push<2>, push<4>, push<8>}; int Us[4] = {1, 2, 4, 8};
    K kp[4] = {pull<1>, pull<2>, pull<4>, pull<8>};
    for (int s = 0; s < 3; ++s) {
        size_t b = sizes[s];
        printf("bytes/dir %zu MiB\n", b >> 20);
        float t = run(nullptr, 0, 0, b, true, 1); printf("  CE peer both dirs: %.1f us %.0f GB/s\n", t, b / t / 1e3);
        t = run(nullptr, 0, 0, b, true, 2); printf("  CE local copy of b/2: %.1f us %.0f GB/s\n", t, b / 2 / t / 1e3);
        for (int g = 0; g < 5; ++g) for (int tt = 0; tt < 3; ++tt) for (int u = 0; u < 4; ++u) {
            if (Gs[g] * Ts[tt] > 396 * 512) continue;
            float a = run(ks[u], Gs[g], Ts[tt], b, true, 0);
            float c = run(kp[u], Gs[g], Ts[tt], b, false, 0);
            printf("  G %3d T %4d U %d: push %.1f us %.0f GB/s | pull %.1f us %.0f GB/s\n", Gs[g], Ts[tt], Us[u], a, b / a / 1e3, c, b / c / 1e3);
        }
        float a = run(ks[2], 128, 512, b, true, 0), c = run(ks[2], 128, 512, b, true, 3);
        printf("  push 128x512x4 alone %.1f us, with local CE copy of b/2 beside: %.1f us\n", a, c);
    }
    return 0;
}
