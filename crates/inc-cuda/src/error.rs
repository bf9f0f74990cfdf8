//! The crate's one error type.

use cudarc::driver::DriverError;

use crate::proto::{Algo, ErrorRecord};

/// Everything that can go wrong in inc-cuda.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// libcuda could not be loaded (no NVIDIA driver on this machine).
    #[error(
        "no CUDA driver: libcuda.so could not be loaded (no NVIDIA GPU driver on this machine)"
    )]
    NoDriver,
    /// libnvrtc could not be loaded.
    #[error("no NVRTC: libnvrtc.so (.13 or .12) could not be loaded; install the CUDA runtime compiler or add its folder to LD_LIBRARY_PATH")]
    NoNvrtc,
    /// A CUDA driver call failed.
    #[error("CUDA driver call {op} failed: {source}")]
    Driver {
        /// The driver function or step.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: DriverError,
    },
    /// An NVRTC call (other than the compile itself) failed.
    #[error("NVRTC call {op} failed with status {code}")]
    Nvrtc {
        /// The NVRTC function.
        op: &'static str,
        /// nvrtcResult value.
        code: i32,
    },
    /// NVRTC rejected the kernel sources.
    #[error("NVRTC failed to compile the inc kernels for {arch}:\n{log}")]
    Compile {
        /// Target architecture, e.g. `sm_90`.
        arch: String,
        /// The NVRTC program log.
        log: String,
    },
    /// The device cannot run the kernels.
    #[error("unsupported device: {0}")]
    Unsupported(String),
    /// Peer memory cannot be reached.
    #[error("peer access from rank {rank} to rank {peer} failed: {reason}")]
    PeerAccess {
        /// This rank.
        rank: usize,
        /// The peer.
        peer: usize,
        /// What went wrong.
        reason: String,
    },
    /// The tensor does not fit the symmetric buffer.
    #[error("{algo} allreduce of {bytes} bytes needs {needed} bytes per buffer half, but the symmetric buffer half holds {capacity}")]
    TooLarge {
        /// Algorithm asked for.
        algo: Algo,
        /// Tensor bytes.
        bytes: u64,
        /// Bytes of one parity half this call needs.
        needed: u64,
        /// Bytes of one parity half available.
        capacity: u64,
    },
    /// Bad argument from the caller.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No valid launch configuration.
    #[error("launch configuration: {0}")]
    Launch(String),
    /// A kernel reported a failure (timeout, mismatch, abort).
    #[error("allreduce failed: {0}")]
    Kernel(ErrorRecord),
    /// An earlier failure poisoned these buffers; every later call fails fast.
    #[error("communicator poisoned by an earlier failure: {0}")]
    Poisoned(ErrorRecord),
}

/// Result alias.
pub type Result<T, E = CudaError> = std::result::Result<T, E>;

/// Attach the driver function name to a driver error.
pub(crate) fn drv(op: &'static str) -> impl FnOnce(DriverError) -> CudaError {
    move |source| CudaError::Driver { op, source }
}
