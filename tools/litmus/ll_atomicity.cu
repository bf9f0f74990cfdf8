// LL store-atomicity litmus test over NVLink (PROTOCOL.md "push one-shot", "Atomicity").
//
// The LL protocol relies on each 8-byte half {data word, tag word} of a 16-byte
// st.volatile.global.v4.u32 arriving whole at the peer. GPU 0 rewrites N lines in GPU 1's
// memory round after round (tag = round, data = f(round, line)); GPU 1 polls the lines at
// the same time and checks every half whose tag it sees against the data of that round.
// Prints the halves checked, torn halves (must be 0: a tag with another round's data), and
// 16-byte lines whose two halves came from different rounds (allowed; the reader checks
// both tags). Every loop is bounded by %globaltimer.
//
//   nvcc -O3 -arch=sm_90 -o ll_atomicity ll_atomicity.cu && ./ll_atomicity [ms] [dev0] [dev1]
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

#define CK(x)                                                                         \
    do {                                                                              \
        cudaError_t e_ = (x);                                                         \
        if (e_ != cudaSuccess) {                                                      \
            printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
            return 2;                                                                 \
        }                                                                             \
    } while (0)

__device__ __forceinline__ unsigned long long now_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
__device__ __forceinline__ unsigned f0(unsigned t, unsigned j) { return t * 2654435761u ^ j; }
__device__ __forceinline__ unsigned f1(unsigned t, unsigned j) { return (t + 7u) * 40503u ^ (j << 3); }

__global__ void writer(uint4* remote, unsigned lines, unsigned long long ns, unsigned* rounds) {
    const unsigned long long t0 = now_ns();
    unsigned t = 1;
    while (now_ns() - t0 < ns) {
        for (unsigned j = blockIdx.x * blockDim.x + threadIdx.x; j < lines; j += gridDim.x * blockDim.x) {
            asm volatile("st.volatile.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(remote + j),
                         "r"(f0(t, j)), "r"(t), "r"(f1(t, j)), "r"(t)
                         : "memory");
        }
        ++t;
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) *rounds = t;
}

__global__ void reader(const uint4* local, unsigned lines, unsigned long long ns,
                       unsigned long long* out) {
    const unsigned long long t0 = now_ns();
    unsigned long long checked = 0, torn = 0, mixed = 0;
    while (now_ns() - t0 < ns) {
        for (unsigned j = blockIdx.x * blockDim.x + threadIdx.x; j < lines; j += gridDim.x * blockDim.x) {
            uint4 v;
            asm volatile("ld.volatile.global.v4.u32 {%0, %1, %2, %3}, [%4];"
                         : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                         : "l"(local + j));
            if (v.y != 0) { ++checked; if (v.x != f0(v.y, j)) ++torn; }
            if (v.w != 0) { ++checked; if (v.z != f1(v.w, j)) ++torn; }
            if (v.y != v.w) ++mixed;
        }
    }
    atomicAdd(&out[0], checked);
    atomicAdd(&out[1], torn);
    atomicAdd(&out[2], mixed);
}

int main(int argc, char** argv) {
    const unsigned ms = argc > 1 ? atoi(argv[1]) : 500;
    const int d0 = argc > 2 ? atoi(argv[2]) : 0, d1 = argc > 3 ? atoi(argv[3]) : 1;
    const unsigned lines = 1u << 16;  // 1 MiB of lines
    int ok = 0;
    CK(cudaDeviceCanAccessPeer(&ok, d0, d1));
    if (!ok) { printf("no peer access %d -> %d\n", d0, d1); return 2; }
    CK(cudaSetDevice(d1));
    uint4* buf; unsigned long long* out;
    CK(cudaMalloc(&buf, lines * sizeof(uint4)));
    CK(cudaMemset(buf, 0, lines * sizeof(uint4)));
    CK(cudaMalloc(&out, 3 * sizeof(unsigned long long)));
    CK(cudaMemset(out, 0, 3 * sizeof(unsigned long long)));
    CK(cudaDeviceSynchronize());
    CK(cudaSetDevice(d0));
    CK(cudaDeviceEnablePeerAccess(d1, 0));
    unsigned* rounds;
    CK(cudaMalloc(&rounds, sizeof(unsigned)));
    const unsigned long long ns = (unsigned long long)ms * 1000000ull;
    CK(cudaSetDevice(d1));
    reader<<<132, 512>>>(buf, lines, ns + 50000000ull, out);
    CK(cudaGetLastError());
    CK(cudaSetDevice(d0));
    writer<<<132, 512>>>(buf, lines, ns, rounds);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    CK(cudaSetDevice(d1));
    CK(cudaDeviceSynchronize());
    unsigned long long h[3];
    unsigned r;
    CK(cudaMemcpy(h, out, sizeof(h), cudaMemcpyDeviceToHost));
    CK(cudaSetDevice(d0));
    CK(cudaMemcpy(&r, rounds, sizeof(r), cudaMemcpyDeviceToHost));
    printf("ll_atomicity GPU%d -> GPU%d, %u ms: %u write rounds of %u lines, %llu halves checked, "
           "%llu torn 8-byte halves, %llu lines with halves from different rounds\n",
           d0, d1, ms, r, lines, h[0], h[1], h[2]);
    printf("%s\n", h[1] == 0 && h[0] > 0 ? "PASS: 8-byte {data, tag} halves arrive whole"
                                         : "FAIL");
    return h[1] == 0 && h[0] > 0 ? 0 : 1;
}
