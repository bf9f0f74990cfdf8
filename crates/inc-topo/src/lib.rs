//! inc-topo: NVLink topology of the GPUs of one machine (from NVML or `nvidia-smi topo -m`
//! text), its classification, and the hybrid-cube-mesh solver. Knows nothing of CUDA.
