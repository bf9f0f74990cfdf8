//! inc-cuda: the GPU half of `inc`. Device buffers, CUDA IPC export/import and peer
//! mapping ([`PeerBuffers`]), the kernels of `kernels/*.cu` (precompiled CUBINs embedded in
//! the binary for sm_90 and sm_80, [`embedded`]; else the NVRTC build with an on-disk
//! cache), and
//! the allreduce kernel launches ([`Kernels`]): one-shot, two-shot, hybrid cube mesh and the
//! barrier-free push one-shot ([`Kernels::push_allreduce`], `Algo::PushOneShot`; calls up to
//! [`PeerBuffers::push_slot_bytes`], 256 KiB by default) for bf16/f16/f32 and
//! sum/avg/min/max.
//!
//! Memory of one rank: signal pad, two parity halves of data, then the push region
//! (signature words, `used[3]`, three rotating receive buffers x 8 slots; every slot word is
//! set to the sentinel f32 -0.0 before the IPC handle is exported).
//!
//! CUDA is loaded at run time (cudarc `dynamic-loading`, bindings of CUDA 13.0 which also
//! load `libnvrtc.so.12`), so the crate builds and its CPU tests run without a GPU.
//!
//! The kernels follow the `inc` signal protocol of docs/PROTOCOL.md (the one inc-sim
//! checks): `(epoch << 32) | call_sig` flags written with `st.release.sys` and awaited with
//! `ld.acquire.sys`, each cleared by the thread that took it (so no slot ages past the
//! 32-bit epoch's window; PROTOCOL.md "Wrap"); two parity halves of data instead of an end barrier
//! (the zero-copy variant runs the end barrier); the epoch lives on the device, so CUDA-graph
//! replays advance it. Every spin is bounded by a `%globaltimer` deadline and watches an
//! abort word that peers and the host can raise; a failure is recorded (rank, block, peer,
//! step, flag values) in pinned host memory and surfaces as [`CudaError::Kernel`]; the
//! buffers are then poisoned. All ranks fold in rank order 0..W-1 in f32 (hcm: the two quad
//! partials in a fixed order), so results are bit-identical across ranks. bf16/f16
//! conversions are done in software, so sm_70 (no native bf16) runs every kernel.
//!
//! ```no_run
//! use inc_cuda::{open_device, Algo, CallOptions, Kernels, PeerBuffers, ReduceOp};
//! # fn main() -> Result<(), inc_cuda::CudaError> {
//! // One process per GPU, rank 0 of 2: allocate, export, map the peer's handle.
//! let ctx = open_device(0)?;
//! let mut bufs = PeerBuffers::new(&ctx, 0, 2, inc_cuda::DEFAULT_HALF_BYTES)?;
//! let mine = bufs.export_handle()?; // send mine.to_bytes() to the peer via the store
//! # let peer_handle = mine;
//! bufs.open_ipc(1, &peer_handle)?;   // the peer's 64-byte handle
//! bufs.verify_peers()?;              // real read/write through every mapping
//! let kernels = Kernels::load(&ctx)?; // each kernel compiled at first use, cached in ~/.cache/inc
//! let stream = ctx.new_stream().map_err(|e| inc_cuda::CudaError::Driver { op: "stream", source: e })?;
//! let mut x = stream.clone_htod(&[1.0f32; 1000]).map_err(|e| inc_cuda::CudaError::Driver { op: "htod", source: e })?;
//! kernels.allreduce_in_place(&bufs, &stream, Algo::OneShot, ReduceOp::Sum, &mut x, None, CallOptions::default())?;
//! stream.synchronize().map_err(|e| inc_cuda::CudaError::Driver { op: "sync", source: e })?;
//! bufs.check()?; // timeout / mismatch / abort recorded by the kernel -> typed error
//! # Ok(()) }
//! ```
//!
//! Virtual ranks (tests): W [`PeerBuffers`] on one GPU, mapped to each other with
//! [`PeerBuffers::map_local`] and [`PeerBuffers::set_ranks_on_device`] so that the launch
//! plan keeps all W x G blocks co-resident.

pub mod archive;
pub mod buffers;
pub mod cache;
pub mod compile;
pub mod embedded;
pub mod error;
pub mod ipc;
pub mod kernels;
pub mod launch;
pub mod proto;
pub mod source;
pub mod symmetric;
pub mod sys;

pub use buffers::{IpcHandle, PeerBuffers, DEFAULT_HALF_BYTES, DEFAULT_PUSH_SLOT_BYTES};
pub use compile::Origin;
pub use embedded::Embedded;
pub use error::{CudaError, Result};
pub use kernels::{
    all_instances, default_cache_dir, open_device, CacheMode, CallOptions, Element, Instance,
    Kernels, LoadOptions, LoadReport, Piece, RawCall, Warm, DEFAULT_TIMEOUT,
};
pub use launch::{zero_copy_form, LaunchPlan, ZeroCopyForm, MAX_THREADS};
pub use proto::{Algo, DType, ErrorRecord, ReduceOp};
pub use symmetric::SymmetricMemory;
