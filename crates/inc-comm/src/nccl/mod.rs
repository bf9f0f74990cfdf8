//! NCCL, through cudarc's `nccl` module (libnccl loaded at run time): the one wrapper of
//! inc's raw NCCL calls ([`NcclComm`], [`SymmetricWindows`]), used by the library's
//! fallback (calls no intra-node algorithm can take, and `INC_ALGO=nccl`) and by `inc
//! bench`'s NCCL columns (`nccl`, `nccl-symm` on window-registered buffers, the world-1
//! floors).
//!
//! * **Loading.** cudarc's `dynamic-loading` finds libnccl on first use and *panics* when
//!   it is missing. [`probe`] asks cudarc's fallible loader (`nccl::sys::is_culib_present`)
//!   first, so a machine without libnccl gets [`CommError::Nccl`] ("libnccl not found:
//!   ...") and every other path keeps working. No `catch_unwind` is needed: after a
//!   successful probe the symbols we use (`ncclGetVersion`, `ncclGetUniqueId`,
//!   `ncclCommInitRank`, `ncclAllReduce`, `ncclCommGetAsyncError`, `ncclCommAbort`,
//!   `ncclGetErrorString`) exist in every NCCL 2.x; the window calls (`ncclMemAlloc`,
//!   `ncclCommWindowRegister`, ...) are only made on NCCL >= 2.27 ([`symm_unsupported`]).
//!   cudarc looks for `libnccl.so` (and `.so.12`, `.so.13`...) but not `libnccl.so.2`, the
//!   name pip's `nvidia-nccl-*` wheels install: link `libnccl.so` to it in a folder on
//!   `LD_LIBRARY_PATH`.
//! * **Creation** ([`NcclComm::create`]) is collective: one all-gather through the
//!   caller's channel carries rank 0's unique id and every rank's readiness, so a rank
//!   without NCCL makes every rank fail with the same error instead of hanging in
//!   `ncclCommInitRank`. The library's fallback creates it lazily (first NCCL call, or at
//!   init with `INC_ALGO=nccl`) through the store under the communicator's prefix
//!   (`<prefix>/nccl`) with the communicator's timeout, and keeps the outcome
//!   (communicator or error): later NCCL calls reuse it.
//! * **Calls** take the caller's stream; NCCL's own asynchronous errors are read after the
//!   call's event completes (`ncclCommGetAsyncError`), and at the entry of the next call;
//!   every use of the library's NCCL communicator holds its lock.

mod comm;

pub use self::comm::{NcclComm, SymmetricWindows};

use std::ffi::CStr;
use std::sync::Arc;
use std::time::Duration;

use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{result, sys};
use inc_store::{store_all_gather, Store};

use crate::error::{CommError, Result};
use crate::{DType, ReduceOp};

/// Bytes of an NCCL unique id.
pub const UNIQUE_ID_BYTES: usize = 128;

/// First NCCL version (`ncclGetVersion`'s code) with `ncclCommWindowRegister`.
pub const SYMM_MIN_VERSION: i32 = 22700;

/// Why an NCCL operation failed; its text is the one inc reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NcclError {
    /// NCCL cannot be used here or by this group (no libnccl, too old, a rank that cannot
    /// take part, a bad unique-id exchange): why, the same text on every rank.
    #[error("{0}")]
    Refused(String),
    /// An NCCL call failed.
    #[error("{call}: {text}")]
    Call {
        /// The call.
        call: &'static str,
        /// NCCL's result code and text.
        text: String,
    },
    /// The CUDA driver call that an NCCL call needs first (binding the context) failed.
    #[error("{call}: {text}")]
    Cuda {
        /// The driver call.
        call: &'static str,
        /// The driver's error.
        text: String,
    },
}

impl NcclError {
    fn call(call: &'static str, code: sys::ncclResult_t) -> Self {
        NcclError::Call {
            call,
            text: error_text(code),
        }
    }

    /// As a [`CommError`] of `rank`: [`CommError::Backend`] for the CUDA call,
    /// [`CommError::Nccl`] otherwise.
    fn comm(self, rank: usize) -> CommError {
        match self {
            NcclError::Cuda { .. } => CommError::Backend {
                rank,
                reason: self.to_string(),
            },
            _ => CommError::Nccl {
                rank,
                reason: self.to_string(),
            },
        }
    }
}

/// NCCL's text for a result code.
fn error_text(code: sys::ncclResult_t) -> String {
    // SAFETY: only called after a successful probe (the library is loaded);
    // ncclGetErrorString returns a static NUL-terminated string.
    let p = unsafe { sys::ncclGetErrorString(code) };
    if p.is_null() {
        return format!("{code:?}");
    }
    // SAFETY: p is non-null and points to a static C string owned by libnccl.
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    format!("{code:?} ({s})")
}

/// Whether libnccl can be loaded; its version (e.g. 22703) or why not. Never panics.
pub fn probe() -> std::result::Result<i32, String> {
    // SAFETY: only tries to dlopen the candidate library names; no NCCL call is made.
    let present = unsafe { sys::is_culib_present() };
    if !present {
        return Err(
            "libnccl not found: cudarc searched libnccl.so, libnccl.so.13, libnccl.so.12 and older names on the library path; install NCCL, or link libnccl.so to libnccl.so.2 in a folder on LD_LIBRARY_PATH (the other paths work without it)".into(),
        );
    }
    result::get_nccl_version().map_err(|e| format!("ncclGetVersion failed: {:?}", e.0))
}

/// Whether NCCL is usable on this machine (see [`probe`]).
pub fn available() -> bool {
    probe().is_ok()
}

/// `22703` -> `2.27.3` (an NCCL version code as text).
pub fn version_text(v: i32) -> String {
    if v >= 10000 {
        format!("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100)
    } else {
        format!("{}.{}.{}", v / 1000, (v % 1000) / 100, v % 100)
    }
}

/// Why symmetric windows ([`NcclComm::symmetric`]) cannot be used with NCCL version `v`,
/// or `None` when they can.
pub fn symm_unsupported(v: i32) -> Option<String> {
    (v < SYMM_MIN_VERSION).then(|| {
        format!(
            "needs NCCL >= 2.27 (ncclCommWindowRegister); this libnccl is {}",
            version_text(v)
        )
    })
}

/// The NCCL data type of a protocol dtype.
pub fn nccl_dtype(d: DType) -> sys::ncclDataType_t {
    match d {
        DType::F32 => sys::ncclDataType_t::ncclFloat32,
        DType::F16 => sys::ncclDataType_t::ncclFloat16,
        DType::Bf16 => sys::ncclDataType_t::ncclBfloat16,
    }
}

/// The NCCL reduction of a protocol op.
pub fn nccl_op(op: ReduceOp) -> sys::ncclRedOp_t {
    match op {
        ReduceOp::Sum => sys::ncclRedOp_t::ncclSum,
        ReduceOp::Avg => sys::ncclRedOp_t::ncclAvg,
        ReduceOp::Min => sys::ncclRedOp_t::ncclMin,
        ReduceOp::Max => sys::ncclRedOp_t::ncclMax,
    }
}

/// The agreed verdict of the creation gather: rank 0's unique id, or the first error (the
/// same text on every rank).
pub fn decode_ready(rank: usize, all: &[Vec<u8>]) -> Result<[u8; UNIQUE_ID_BYTES]> {
    comm::agreed_id(all).map_err(|reason| CommError::Nccl { rank, reason })
}

/// The library's NCCL communicator of one rank (created by [`Nccl::create`]): an
/// [`NcclComm`] whose errors are [`CommError`]s naming the rank.
pub(crate) struct Nccl {
    inner: NcclComm,
    rank: usize,
    world: usize,
}

/// Locks a shared NCCL communicator (every use of one holds this lock).
pub(crate) fn lock(
    n: &std::sync::Mutex<Nccl>,
    rank: usize,
) -> Result<std::sync::MutexGuard<'_, Nccl>> {
    n.lock().map_err(|_| CommError::Nccl {
        rank,
        reason: "the NCCL communicator's lock is poisoned".into(),
    })
}

impl std::fmt::Debug for Nccl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nccl")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .finish()
    }
}

impl Nccl {
    /// Collective: creates the NCCL communicator of `rank` of `world` on `ctx`'s device,
    /// meeting the others through `store` under `prefix` within `timeout`. Every rank
    /// returns a communicator or the same error. `shared_device`: ranks share a GPU, which
    /// NCCL refuses; reported as an error on every rank before NCCL is touched.
    pub(crate) fn create(
        store: &dyn Store,
        prefix: &str,
        rank: usize,
        world: usize,
        ctx: &Arc<CudaContext>,
        shared_device: bool,
        timeout: Duration,
    ) -> Result<Nccl> {
        let span = tracing::info_span!("inc.nccl.init", rank, world);
        let _g = span.enter();
        let refusal = shared_device.then(|| {
            "several ranks share one GPU (virtual ranks) and NCCL needs a GPU per rank".into()
        });
        let inner = NcclComm::create(
            rank,
            world,
            ctx,
            refusal,
            |msg| {
                store_all_gather(store, &format!("{prefix}/nccl"), rank, world, msg, timeout)
                    .map_err(|e| crate::rendezvous::store_err(rank, "nccl", e))
            },
            |e| e.comm(rank),
        )?;
        tracing::info!("nccl communicator ready");
        Ok(Nccl { inner, rank, world })
    }

    /// Enqueues `ncclAllReduce` of `count` elements from `input` to `output` (may be equal)
    /// on `stream`.
    ///
    /// # Safety
    /// `input` and `output` must be device addresses of at least `count` elements of
    /// `dtype` on this communicator's device, valid until the call completes on `stream`.
    pub unsafe fn all_reduce_raw(
        &self,
        input: u64,
        output: u64,
        count: usize,
        dtype: DType,
        op: ReduceOp,
        stream: &CudaStream,
    ) -> Result<()> {
        // SAFETY: forwarded from this function's contract.
        unsafe {
            self.inner
                .all_reduce(input, output, count, dtype, op, stream)
        }
        .map_err(|e| e.comm(self.rank))
    }

    /// NCCL's asynchronous error of this communicator, if any.
    pub fn async_error(&self) -> Option<CommError> {
        self.inner.async_error().map(|e| e.comm(self.rank))
    }
}

#[cfg(test)]
mod tests {
    use super::comm::{agreed_id, encode_ready};
    use super::*;

    #[test]
    fn versions_and_symm_gate() {
        assert_eq!(version_text(22703), "2.27.3");
        assert_eq!(version_text(21805), "2.18.5");
        assert_eq!(version_text(2708), "2.7.8");
        assert!(symm_unsupported(22605).is_some_and(|s| s.contains("2.26.5")));
        assert!(symm_unsupported(22700).is_none());
        assert!(symm_unsupported(22803).is_none());
    }

    #[test]
    fn id_exchange_agrees() {
        let id = [9u8; UNIQUE_ID_BYTES];
        let all = vec![encode_ready(0, &Ok(Some(id))), encode_ready(1, &Ok(None))];
        assert_eq!(agreed_id(&all).unwrap(), id);
        let bad = vec![
            encode_ready(0, &Ok(Some(id))),
            encode_ready(1, &Err("no lib".into())),
        ];
        assert_eq!(agreed_id(&bad).unwrap_err(), "rank 1: no lib");
        assert!(agreed_id(&[b"ok".to_vec()]).is_err());
        assert!(agreed_id(&[b"id:xx".to_vec()]).is_err());
        assert!(agreed_id(&[]).is_err());
    }

    #[test]
    fn errors_keep_their_text_and_variant() {
        let e = NcclError::Call {
            call: "ncclAllReduce",
            text: "ncclSystemError (x)".into(),
        };
        assert_eq!(e.to_string(), "ncclAllReduce: ncclSystemError (x)");
        assert!(matches!(e.comm(2), CommError::Nccl { rank: 2, .. }));
        let c = NcclError::Cuda {
            call: "cuCtxSetCurrent",
            text: "boom".into(),
        };
        assert!(matches!(c.comm(1), CommError::Backend { rank: 1, .. }));
        assert_eq!(NcclError::Refused("why".into()).to_string(), "why");
    }

    #[test]
    fn ready_messages_agree() {
        let id = [7u8; UNIQUE_ID_BYTES];
        let all = vec![encode_ready(0, &Ok(Some(id))), encode_ready(1, &Ok(None))];
        assert_eq!(decode_ready(1, &all).unwrap(), id);
        let bad = vec![
            encode_ready(0, &Ok(Some(id))),
            encode_ready(1, &Err("libnccl not found: x".into())),
        ];
        let e0 = decode_ready(0, &bad).unwrap_err().to_string();
        let e1 = decode_ready(1, &bad).unwrap_err().to_string();
        assert!(e0.contains("rank 1: libnccl not found"), "{e0}");
        assert_eq!(
            e0.replace("rank 0", "rank 1"),
            e1.replace("rank 0", "rank 1")
        );
        assert!(decode_ready(0, &[b"ok".to_vec()]).is_err());
        assert!(decode_ready(0, &[b"id:short".to_vec()]).is_err());
        assert!(decode_ready(0, &[]).is_err());
    }

    /// `Nccl` must not be `Sync` (its calls are only safe one at a time, under the owning
    /// communicator's lock): this does not compile when it is, since the `Sync` impl makes
    /// the trait's parameter ambiguous (the static_assertions trick).
    #[test]
    fn nccl_is_send_but_not_sync() {
        trait AmbiguousIfSync<A> {
            fn some_item() {}
        }
        impl<T: ?Sized> AmbiguousIfSync<()> for T {}
        #[allow(dead_code)]
        struct Invalid;
        impl<T: ?Sized + Sync> AmbiguousIfSync<Invalid> for T {}
        let _ = <Nccl as AmbiguousIfSync<_>>::some_item;
        let _ = <NcclComm as AmbiguousIfSync<_>>::some_item;
        fn is_send<T: Send>() {}
        is_send::<Nccl>();
        is_send::<NcclComm>();
        fn is_sync<T: Sync>() {}
        is_sync::<std::sync::Mutex<Nccl>>();
    }

    #[test]
    fn probe_never_panics() {
        match probe() {
            Ok(v) => assert!(v > 0),
            Err(e) => assert!(e.contains("libnccl not found"), "{e}"),
        }
    }

    #[test]
    fn dtype_and_op_mapping() {
        assert_eq!(nccl_dtype(DType::Bf16), sys::ncclDataType_t::ncclBfloat16);
        assert_eq!(nccl_op(ReduceOp::Avg), sys::ncclRedOp_t::ncclAvg);
    }

    #[test]
    fn shared_device_is_refused_on_every_rank_without_touching_nccl() {
        let store = inc_store::MemStore::new();
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|r| {
                    let store = &store;
                    s.spawn(move || {
                        let local: std::result::Result<Option<[u8; UNIQUE_ID_BYTES]>, String> =
                            Err("several ranks share one GPU".into());
                        let msg = encode_ready(r, &local);
                        let all =
                            store_all_gather(store, "t/nccl", r, 2, &msg, Duration::from_secs(5))
                                .unwrap();
                        decode_ready(r, &all).unwrap_err()
                    })
                })
                .collect();
            for h in hs {
                let e = h.join().unwrap();
                assert!(e.to_string().contains("share one GPU"), "{e}");
            }
        });
    }
}
