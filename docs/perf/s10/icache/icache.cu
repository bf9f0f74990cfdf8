// i-cache microbenchmark: cycles of N straight-line instructions (unrolled) against the same
// work as a loop, measured inside the kernel (block 0, thread 0), launch after launch, and in
// a CUDA graph of 50 launches. Prints per launch: straight-line cycles, loop cycles.
#include <cstdio>
#include <cuda_runtime.h>
template <int N>
__global__ void straight(unsigned long long* out, int rep, unsigned* sink) {
    unsigned a = threadIdx.x, b = a * 3, c = a * 5, d = a * 7;
    __syncthreads();
    long long t0 = clock64();
#pragma unroll
    for (int i = 0; i < N; ++i) {
        asm volatile("mad.lo.u32 %0, %0, %1, %2;\n\tmad.lo.u32 %1, %1, %2, %3;\n\tmad.lo.u32 %2, %2, %3, %0;\n\tmad.lo.u32 %3, %3, %0, %1;" : "+r"(a), "+r"(b), "+r"(c), "+r"(d));
    }
    __syncthreads();
    long long t1 = clock64();
    if (threadIdx.x == 0 && blockIdx.x == 0) out[rep] = t1 - t0;
    if (a + b + c + d == 0x12345) sink[0] = 1;
}
__global__ void looped(unsigned long long* out, int rep, unsigned* sink, int n) {
    unsigned a = threadIdx.x, b = a * 3, c = a * 5, d = a * 7;
    __syncthreads();
    long long t0 = clock64();
#pragma unroll 1
    for (int i = 0; i < n; ++i) {
        asm volatile("mad.lo.u32 %0, %0, %1, %2;\n\tmad.lo.u32 %1, %1, %2, %3;\n\tmad.lo.u32 %2, %2, %3, %0;\n\tmad.lo.u32 %3, %3, %0, %1;" : "+r"(a), "+r"(b), "+r"(c), "+r"(d));
    }
    __syncthreads();
    long long t1 = clock64();
    if (threadIdx.x == 0 && blockIdx.x == 0) out[rep] = t1 - t0;
    if (a + b + c + d == 0x12345) sink[0] = 1;
}
template <int N>
void run(int blocks, int threads, unsigned long long* d, unsigned* s) {
    unsigned long long h[64];
    for (int r = 0; r < 8; ++r) straight<N><<<blocks, threads>>>(d, r, s);
    cudaStream_t st; cudaStreamCreate(&st);
    cudaGraph_t g; cudaGraphExec_t ge;
    cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
    for (int r = 8; r < 58; ++r) straight<N><<<blocks, threads, 0, st>>>(d, r, s);
    cudaStreamEndCapture(st, &g); cudaGraphInstantiate(&ge, g, 0);
    cudaGraphLaunch(ge, st); cudaStreamSynchronize(st);
    cudaDeviceSynchronize();
    cudaMemcpy(h, d, sizeof(h), cudaMemcpyDeviceToHost);
    unsigned long long l[64];
    for (int r = 0; r < 8; ++r) looped<<<blocks, threads>>>(d, r, s, N);
    cudaDeviceSynchronize();
    cudaMemcpy(l, d, sizeof(l), cudaMemcpyDeviceToHost);
    printf("N=%5d instr(~%2d KB code) grid %3dx%3d straight: first %6llu then %6llu %6llu %6llu | graph %6llu %6llu %6llu | loop %6llu %6llu\n",
           4 * N, 4 * N * 16 / 1024, blocks, threads, h[0], h[1], h[2], h[7], h[9], h[30], h[57], l[0], l[7]);
    cudaGraphExecDestroy(ge); cudaGraphDestroy(g); cudaStreamDestroy(st);
}
int main() {
    unsigned long long* d; unsigned* s;
    cudaMalloc(&d, 64 * 8); cudaMalloc(&s, 4);
    int cfg[3][2] = {{1, 32}, {1, 512}, {132, 512}};
    for (auto& c : cfg) {
        run<64>(c[0], c[1], d, s);
        run<256>(c[0], c[1], d, s);
        run<512>(c[0], c[1], d, s);
        run<1024>(c[0], c[1], d, s);
        run<2048>(c[0], c[1], d, s);
    }
    cudaError_t e = cudaDeviceSynchronize();
    printf("status %s\n", cudaGetErrorString(e));
}
