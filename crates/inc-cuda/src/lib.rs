//! inc-cuda: device buffers, CUDA IPC export/import, peer mapping, NVRTC build of
//! `kernels/*.cu` and the allreduce kernel launches (cudarc, loaded at run time).
