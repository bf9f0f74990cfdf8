// Session 15: at world 2, does mixing pushes (SM stores into the peer) and pulls (SM loads
// from the peer) carry more bytes per direction than stores alone (~350 GB/s, session 11's
// bw4.cu)? Two GPUs of one process, P bytes a direction (or one direction), GRID x THREADS
// threads (argv: 132 512 by default), 16 B a thread, 4 accesses in flight. Modes:
//   bi-push   GPU a stores P into GPU b, and b into a          (inc's two-shot traffic)
//   bi-pull   GPU a loads P from GPU b, and b from a
//   bi-half   each GPU stores P/2 into its peer and loads P/2 from it (blocks split)
//   one-side  GPU 0 stores P into GPU 1 and loads P from it; GPU 1 idle
//   uni-push  GPU 0 stores P into GPU 1 only
//   uni-pull  GPU 1 loads P from GPU 0 only (bytes 0 -> 1)
//   uni-mix   bytes 0 -> 1 only: GPU 0 stores P/2, GPU 1 loads the other P/2
// Prints GB/s a direction (P / t, t = the slower GPU's kernel time, launch included), mean
// of 20 after 3 warm-ups, and checks every destination byte once per mode.
// nvcc -O3 -arch=sm_90 bw2mix.cu -o bw2mix && ./bw2mix
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <cuda_runtime.h>
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("ERR %s line %d\n", cudaGetErrorString(e), __LINE__); exit(1); } } while (0)

// Blocks [0, gp) copy `np` chunks src_p -> dst_p (a push: dst_p is the peer's), blocks
// [gp, grid) copy `nl` chunks src_l -> dst_l (a pull: src_l is the peer's).
__global__ void mover(const uint4* src_p, uint4* dst_p, size_t np, const uint4* src_l,
                      uint4* dst_l, size_t nl, int gp) {
    const bool push = (int)blockIdx.x < gp;
    const int nb = push ? gp : (int)gridDim.x - gp;
    const int b = push ? (int)blockIdx.x : (int)blockIdx.x - gp;
    const uint4* s = push ? src_p : src_l;
    uint4* d = push ? dst_p : dst_l;
    const size_t n = push ? np : nl;
    const size_t S = (size_t)nb * blockDim.x;
    for (size_t c = (size_t)b * blockDim.x + threadIdx.x; c < n; c += 4 * S) {
        uint4 v[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) if (c + u * S < n) v[u] = s[c + u * S];
#pragma unroll
        for (int u = 0; u < 4; ++u) if (c + u * S < n) d[c + u * S] = v[u];
    }
}

__global__ void fill(uint32_t* p, size_t n, uint32_t seed) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = (uint32_t)(i * 2654435761u) ^ seed;
}

const size_t MAXP = 128ull << 20;
int GRID = 132, THREADS = 512;
char *src[2], *dst[2];
cudaStream_t st[2];
cudaEvent_t e0[2], e1[2];

// What GPU d does in a mode: push `pp` bytes into the peer's dst (its first half), pull
// `pl` bytes of the peer's src into its own dst (second half), blocks split by bytes.
struct Job { size_t pp, pl; };

void launch(int d, Job j) {
    CK(cudaSetDevice(d));
    const int o = 1 - d;
    int G = GRID, gp;
    if (j.pp == 0) gp = 0;
    else if (j.pl == 0) gp = G;
    else gp = (int)(G * (double)j.pp / (double)(j.pp + j.pl) + 0.5);
    mover<<<G, THREADS, 0, st[d]>>>((const uint4*)src[d], (uint4*)dst[o], j.pp / 16,
                                (const uint4*)(src[o] + MAXP), (uint4*)(dst[d] + MAXP), j.pl / 16, gp);
}

float run(Job j0, Job j1, int reps = 20) {
    double tot = 0;
    for (int r = 0; r < reps + 3; ++r) {
        for (int d = 0; d < 2; ++d) { CK(cudaSetDevice(d)); CK(cudaDeviceSynchronize()); }
        bool on[2] = {j0.pp + j0.pl > 0, j1.pp + j1.pl > 0};
        Job js[2] = {j0, j1};
        for (int d = 0; d < 2; ++d) {
            if (!on[d]) continue;
            CK(cudaSetDevice(d));
            CK(cudaEventRecord(e0[d], st[d]));
            launch(d, js[d]);
            CK(cudaEventRecord(e1[d], st[d]));
        }
        float mx = 0;
        for (int d = 0; d < 2; ++d) {
            if (!on[d]) continue;
            CK(cudaSetDevice(d)); CK(cudaEventSynchronize(e1[d]));
            float ms; CK(cudaEventElapsedTime(&ms, e0[d], e1[d])); if (ms > mx) mx = ms;
        }
        if (r >= 3) tot += mx;
    }
    return (float)(tot / reps * 1000.0);
}

// Every byte a job moved is at its destination (dst zeroed before the mode's one check run).
int check(Job j0, Job j1) {
    Job js[2] = {j0, j1};
    for (int d = 0; d < 2; ++d) { CK(cudaSetDevice(d)); CK(cudaMemset(dst[d], 0, 2 * MAXP)); CK(cudaDeviceSynchronize()); }
    for (int d = 0; d < 2; ++d) if (js[d].pp + js[d].pl > 0) launch(d, js[d]);
    for (int d = 0; d < 2; ++d) { CK(cudaSetDevice(d)); CK(cudaDeviceSynchronize()); }
    int bad = 0;
    char* a = (char*)malloc(MAXP); char* b = (char*)malloc(MAXP);
    for (int d = 0; d < 2; ++d) {
        const int o = 1 - d;
        if (js[d].pp) {  // my src[0, pp) -> peer's dst[0, pp)
            CK(cudaSetDevice(d)); CK(cudaMemcpy(a, src[d], js[d].pp, cudaMemcpyDeviceToHost));
            CK(cudaSetDevice(o)); CK(cudaMemcpy(b, dst[o], js[d].pp, cudaMemcpyDeviceToHost));
            bad += memcmp(a, b, js[d].pp) != 0;
        }
        if (js[d].pl) {  // peer's src[MAXP, MAXP + pl) -> my dst[MAXP, MAXP + pl)
            CK(cudaSetDevice(o)); CK(cudaMemcpy(a, src[o] + MAXP, js[d].pl, cudaMemcpyDeviceToHost));
            CK(cudaSetDevice(d)); CK(cudaMemcpy(b, dst[d] + MAXP, js[d].pl, cudaMemcpyDeviceToHost));
            bad += memcmp(a, b, js[d].pl) != 0;
        }
    }
    free(a); free(b);
    return bad;
}

int main(int argc, char** argv) {
    if (argc > 2) { GRID = atoi(argv[1]); THREADS = atoi(argv[2]); }
    int n = 0; CK(cudaGetDeviceCount(&n));
    if (n < 2) { printf("needs 2 GPUs\n"); return 1; }
    for (int d = 0; d < 2; ++d) {
        CK(cudaSetDevice(d));
        CK(cudaDeviceEnablePeerAccess(1 - d, 0));
        CK(cudaMalloc(&src[d], 2 * MAXP)); CK(cudaMalloc(&dst[d], 2 * MAXP));
        fill<<<264, 256>>>((uint32_t*)src[d], 2 * MAXP / 4, 0x9e3779b9u * (d + 1));
        CK(cudaStreamCreateWithFlags(&st[d], cudaStreamNonBlocking));
        CK(cudaEventCreate(&e0[d])); CK(cudaEventCreate(&e1[d]));
        CK(cudaDeviceSynchronize());
    }
    cudaDeviceProp p; CK(cudaGetDeviceProperties(&p, 0));
    printf("# %s, %d SMs; GB/s a direction (P / t of the slower GPU), %d x %d threads, 4 in flight\n",
           p.name, p.multiProcessorCount, GRID, THREADS);
    size_t Ps[3] = {16ull << 20, 64ull << 20, 128ull << 20};
    for (int s = 0; s < 3; ++s) {
        const size_t P = Ps[s], H = P / 2;
        struct { const char* nm; Job a, b; } m[] = {
            {"bi-push", {P, 0}, {P, 0}},
            {"bi-pull", {0, P}, {0, P}},
            {"bi-half", {H, H}, {H, H}},
            {"one-side", {P, P}, {0, 0}},
            {"uni-push", {P, 0}, {0, 0}},
            {"uni-pull", {0, 0}, {0, P}},
            {"uni-mix", {H, 0}, {0, H}},
        };
        printf("P = %zu MiB\n", P >> 20);
        for (auto& x : m) {
            const float t = run(x.a, x.b);
            const int bad = check(x.a, x.b);
            printf("  %-9s %9.1f us %6.1f GB/s  %s\n", x.nm, t, (double)P / t / 1e3, bad ? "WRONG" : "ok");
            fflush(stdout);
        }
    }
    return 0;
}
