// Session 11 (run 87): is a 128-byte line that 8 lanes of one warp store with ONE warp-wide
// st.volatile.global.v2.u64 instruction seen whole by a peer GPU over NVLink? NCCL's LL128
// relies on it (120 payload bytes and an 8-byte flag in one line, no fence); inc has not
// modelled or tested it (docs/PROTOCOL.md "push one-shot, LL protocol": inc's LL relies on
// 8-byte atomicity only).
//
// GPU 0 (writer) fills lines of a buffer in GPU 1's memory; line l of round r holds 16
// u64 words, word k = (r << 32) | (l * 16 + k): word 15 is the flag. GPU 1 (reader) polls
// each line with the same kind of warp-wide load (8 lanes x 16 B) until word 15 carries
// round r, then checks the 15 other words it loaded in that same instruction. A "torn"
// line: flag new, some word old. Every round uses fresh lines (no overwrite). Spins are
// bounded by %globaltimer (1 s), so a lost line cannot hang the machine.
// Variants: the writer stores the line with lanes in order, or with the lanes' slots
// reversed (one instruction either way), or — the negative control, which must show torn
// lines or the test is blind — the flag's lane first and the other 7 lanes 2 us later.
// Each round starts the writer only when the reader of that round runs (go[r]), so the
// reader polls while the lines arrive ("complete at first look" counts the lines it never
// saw incomplete).
// nvcc -O3 -arch=sm_90 ll128_litmus.cu -o ll128 && ./ll128
#include <cstdio>
#include <cstdint>
#include <cuda_runtime.h>
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("ERR %s line %d\n", cudaGetErrorString(e), __LINE__); return 1; } } while (0)

typedef unsigned long long u64;
__device__ __forceinline__ u64 now_ns() { u64 t; asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); return t; }
__device__ __forceinline__ void st2(u64* p, u64 a, u64 b) {
    asm volatile("st.volatile.global.v2.u64 [%0], {%1, %2};" ::"l"(p), "l"(a), "l"(b) : "memory");
}
__device__ __forceinline__ void ld2(const u64* p, u64& a, u64& b) {
    asm volatile("ld.volatile.global.v2.u64 {%0, %1}, [%2];" : "=l"(a), "=l"(b) : "l"(p) : "memory");
}

// lines [0, L) of round r at buf + (r * L + l) * 16 words; warp w of the grid writes lines
// w*4 .. w*4+3 per step (lanes 8j..8j+7 one line), grid-stride.
__global__ void writer(u64* buf, int L, int r, int mode, volatile unsigned* go) {
    const int lane = threadIdx.x & 31, sub = lane >> 3, k = (lane & 7) * 2;
    // start when the reader of round r runs (it raises go[r] in my memory), so that it
    // polls while I write; bounded
    const u64 t0 = now_ns();
    while (go[r] == 0u && now_ns() - t0 < 1000000000ull) {}
    const int warps = gridDim.x * blockDim.x / 32;
    const int w0 = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    for (int w = w0; w * 4 < L; w += warps) {
        const int l = w * 4 + sub;
        u64* line = buf + ((u64)r * L + l) * 16;
        const u64 a = ((u64)r << 32) | (u64)(l * 16 + k), b = ((u64)r << 32) | (u64)(l * 16 + k + 1);
        if (mode == 0) {
            st2(line + k, a, b);
        } else if (mode == 1) {
            // the same single instruction, but lane i of the line stores slot 7 - i
            const int kk = (7 - (lane & 7)) * 2;
            st2(line + kk, ((u64)r << 32) | (u64)(l * 16 + kk), ((u64)r << 32) | (u64)(l * 16 + kk + 1));
        } else {
            // negative control: the flag's lane first, then (after a pause) the other 7:
            // a reader polling meanwhile must see torn lines, or the detector is blind
            if ((lane & 7) == 7) st2(line + k, a, b);
            __syncwarp();
            __nanosleep(2000);
            if ((lane & 7) != 7) st2(line + k, a, b);
        }
    }
}

__global__ void reader(const u64* buf, int L, int r, unsigned long long* torn,
                       unsigned long long* timeouts, unsigned long long* early,
                       volatile unsigned* go) {
    const int lane = threadIdx.x & 31, sub = lane >> 3, k = (lane & 7) * 2;
    if (blockIdx.x == 0 && threadIdx.x == 0) { go[r] = 1u; __threadfence_system(); }
    const int warps = gridDim.x * blockDim.x / 32;
    const int w0 = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    for (int w = w0; w * 4 < L; w += warps) {
        const int l = w * 4 + sub;
        const u64* line = buf + ((u64)r * L + l) * 16;
        const u64 t0 = now_ns();
        bool first = true, seen = false;
        while (true) {
            u64 a, b;
            ld2(line + k, a, b);
            // the flag is word 15: lane 7 of the line's 8 lanes holds it in b
            const u64 flag = __shfl_sync(0xffffffffu, b, (lane & ~7) | 7);
            const bool ready = flag == (((u64)r << 32) | (u64)(l * 16 + 15));
            // judge each line once: the first load that shows its flag
            const bool judge = ready && !seen;
            const unsigned jmask = __ballot_sync(0xffffffffu, judge);
            if (judge) {
                const bool ok = a == (((u64)r << 32) | (u64)(l * 16 + k)) &&
                                b == (((u64)r << 32) | (u64)(l * 16 + k + 1));
                const unsigned bad = __ballot_sync(jmask, !ok);
                if ((lane & 7) == 7) {
                    if ((bad >> (sub * 8)) & 0xffu) atomicAdd(torn, 1ull);
                    if (first) atomicAdd(early, 1ull);  // complete at the first look
                }
            }
            seen = seen || ready;
            const bool timed_out = now_ns() - t0 > 1000000000ull;
            if (__all_sync(0xffffffffu, seen || timed_out)) {
                if (!seen && (lane & 7) == 7) atomicAdd(timeouts, 1ull);
                break;
            }
            first = false;
        }
    }
}

int main() {
    int n = 0; cudaGetDeviceCount(&n);
    if (n < 2) { printf("needs 2 GPUs\n"); return 1; }
    const int L = 1 << 16, R = 64;  // 64K lines (8 MiB) a round, 64 rounds: 512 MiB
    u64* buf; unsigned long long *cnt; unsigned* go;
    CK(cudaSetDevice(1)); CK(cudaMalloc(&buf, (size_t)R * L * 128)); CK(cudaMemset(buf, 0, (size_t)R * L * 128));
    CK(cudaMalloc(&cnt, 3 * sizeof(unsigned long long)));
    CK(cudaDeviceEnablePeerAccess(0, 0));
    CK(cudaSetDevice(0)); CK(cudaDeviceEnablePeerAccess(1, 0));
    CK(cudaMalloc(&go, R * sizeof(unsigned)));
    cudaStream_t s0, s1;
    CK(cudaStreamCreateWithFlags(&s0, cudaStreamNonBlocking));
    CK(cudaSetDevice(1)); CK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
    const char* names[3] = {"one instruction, lanes in order", "one instruction, lanes reversed", "8 instructions (negative control)"};
    for (int mode = 0; mode < 3; ++mode) {
        unsigned long long h[3] = {0, 0, 0};
        CK(cudaSetDevice(0)); CK(cudaMemset(go, 0, R * sizeof(unsigned))); CK(cudaDeviceSynchronize());
        CK(cudaSetDevice(1)); CK(cudaMemset(buf, 0, (size_t)R * L * 128)); CK(cudaMemset(cnt, 0, sizeof(h))); CK(cudaDeviceSynchronize());
        for (int r = 1; r < R; ++r) {
            // reader first (it polls), then the writer on the other GPU
            CK(cudaSetDevice(1)); reader<<<132, 256, 0, s1>>>(buf, L, r, cnt, cnt + 1, cnt + 2, go);
            CK(cudaSetDevice(0)); writer<<<264, 256, 0, s0>>>(buf, L, r, mode, go);
        }
        CK(cudaSetDevice(0)); CK(cudaStreamSynchronize(s0));
        CK(cudaSetDevice(1)); CK(cudaStreamSynchronize(s1));
        CK(cudaMemcpy(h, cnt, sizeof(h), cudaMemcpyDeviceToHost));
        printf("%-36s lines %llu: torn %llu, timed out %llu, complete at first look %llu\n", names[mode],
               (unsigned long long)L * (R - 1), h[0], h[1], h[2]);
        fflush(stdout);
    }
    return 0;
}
