// CPU cost per call of the driver calls on inc's eager host path (no GPU work to speak of).
// nvcc -O2 -arch=sm_90 hostfloor.cu -lcuda -o hostfloor
#include <cstdio>
#include <chrono>
#include <cuda.h>
#include <cuda_runtime.h>
struct Args { unsigned long long w[36]; };  // 288 bytes like KernelArgs
__global__ void k(Args a) { if (a.w[0] == 12345) a.w[1] = 0; }
#define CK(x) do { auto e_ = (x); if (e_ != 0) { printf("%s:%d err %d\n", __FILE__, __LINE__, (int)e_); return 1; } } while (0)
using clk = std::chrono::steady_clock;
int main() {
  CK(cudaSetDevice(0)); cudaStream_t s; CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  Args a = {}; cudaEvent_t ev[64]; for (int i = 0; i < 64; ++i) CK(cudaEventCreateWithFlags(&ev[i], cudaEventDisableTiming));
  for (int i = 0; i < 100; ++i) k<<<1, 128, 0, s>>>(a);
  CK(cudaStreamSynchronize(s));
  const int N = 400;
  auto run = [&](const char* name, auto f) {
    double best = 1e9;
    for (int rep = 0; rep < 7; ++rep) {
      cudaStreamSynchronize(s);
      auto t0 = clk::now();
      for (int i = 0; i < N; ++i) f(i);
      double us = std::chrono::duration<double, std::micro>(clk::now() - t0).count() / N;
      if (us < best) best = us;
    }
    cudaStreamSynchronize(s);
    printf("%-48s %.3f us/call (best of 7 x %d)\n", name, best, N);
  };
  run("launch <<<>>> (cudaLaunchKernel)", [&](int) { k<<<1, 128, 0, s>>>(a); });
  cudaLaunchConfig_t cfg = {}; cfg.gridDim = 1; cfg.blockDim = 128; cfg.stream = s;
  cudaLaunchAttribute at[1]; at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization; at[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = at; cfg.numAttrs = 1;
  run("cudaLaunchKernelEx + PDL attr", [&](int) { cudaLaunchKernelEx(&cfg, k, a); });
  CUfunction f; CK(cudaGetFuncBySymbol((cudaFunction_t*)&f, (const void*)k));
  void* params[1] = {&a};
  run("cuLaunchKernel (driver)", [&](int) { cuLaunchKernel(f, 1,1,1, 128,1,1, 0, (CUstream)s, params, nullptr); });
  CUlaunchConfig dc = {}; dc.gridDimX = dc.gridDimY = dc.gridDimZ = 1; dc.blockDimX = 128; dc.blockDimY = dc.blockDimZ = 1; dc.hStream = (CUstream)s;
  CUlaunchAttribute da[1]; da[0].id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION; da[0].value.programmaticStreamSerializationAllowed = 1;
  dc.attrs = da; dc.numAttrs = 1;
  run("cuLaunchKernelEx + PDL (driver, inc's call)", [&](int) { cuLaunchKernelEx(&dc, f, params, nullptr); });
  dc.numAttrs = 0;
  run("cuLaunchKernelEx, no attr (driver)", [&](int) { cuLaunchKernelEx(&dc, f, params, nullptr); });
  run("cuEventRecord", [&](int i) { cuEventRecord((CUevent)ev[i & 63], (CUstream)s); });
  run("cuStreamGetCaptureInfo", [&](int) { CUstreamCaptureStatus st; cuuint64_t id; cuStreamGetCaptureInfo((CUstream)s, &st, &id, nullptr, nullptr, nullptr, nullptr); });
  run("cuCtxGetCurrent", [&](int) { CUcontext c; cuCtxGetCurrent(&c); });
  run("cuEventQuery", [&](int i) { cuEventQuery((CUevent)ev[i & 63]); });
  dc.numAttrs = 1;
  run("cuLaunchKernelEx+PDL + cuEventRecord + captureinfo", [&](int i) { CUstreamCaptureStatus st; cuuint64_t id; cuStreamGetCaptureInfo((CUstream)s, &st, &id, nullptr, nullptr, nullptr, nullptr); cuLaunchKernelEx(&dc, f, params, nullptr); cuEventRecord((CUevent)ev[i & 63], (CUstream)s); });
  return 0;
}
