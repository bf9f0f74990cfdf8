//! The NCCL fallback: `ncclAllReduce` through cudarc's `nccl` module (libnccl loaded at run
//! time), for calls no intra-node algorithm can take and for `INC_ALGO=nccl`.
//!
//! * **Loading.** cudarc's `dynamic-loading` finds libnccl on first use and *panics* when
//!   it is missing. [`probe`] asks cudarc's fallible loader (`nccl::sys::is_culib_present`)
//!   first, so a machine without libnccl gets [`CommError::Nccl`] ("libnccl not found:
//!   ...") and every other path keeps working. No `catch_unwind` is needed: after a
//!   successful probe the symbols we use (`ncclGetVersion`, `ncclGetUniqueId`,
//!   `ncclCommInitRank`, `ncclAllReduce`, `ncclCommGetAsyncError`, `ncclCommAbort`,
//!   `ncclGetErrorString`) exist in every NCCL 2.x. cudarc looks for `libnccl.so` (and
//!   `.so.12`, `.so.13`...) but not `libnccl.so.2`, the name pip's `nvidia-nccl-*` wheels
//!   install: link `libnccl.so` to it in a folder on `LD_LIBRARY_PATH`.
//! * **Creation** is collective and lazy (first NCCL call, or at init with
//!   `INC_ALGO=nccl`): one all-gather through the store under the communicator's prefix
//!   (`<prefix>/nccl`) carries rank 0's unique id and every rank's readiness, with the
//!   communicator's timeout, so a rank without NCCL makes every rank fail with the same
//!   error instead of hanging in `ncclCommInitRank`. The outcome (communicator or error)
//!   is kept: later NCCL calls reuse it.
//! * **Calls** take the caller's stream; NCCL's own asynchronous errors are read after the
//!   call's event completes (`ncclCommGetAsyncError`), and at the entry of the next call;
//!   every use of the NCCL communicator holds its lock.

use std::ffi::{c_void, CStr};
use std::sync::Arc;
use std::time::Duration;

use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{result, sys};
use inc_store::{store_all_gather, Store};

use crate::error::{CommError, Result};
use crate::{DType, ReduceOp};

/// Bytes of an NCCL unique id.
pub const UNIQUE_ID_BYTES: usize = 128;

fn nccl_err(rank: usize, what: &str, e: result::NcclError) -> CommError {
    CommError::Nccl {
        rank,
        reason: format!("{what}: {}", error_text(e.0)),
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

/// The gather message of NCCL creation: rank 0 sends `id:` + the 128-byte id, the others
/// `ok`; any rank that cannot use NCCL sends `err:` + why.
fn encode_ready(
    rank: usize,
    local: &std::result::Result<Option<[u8; UNIQUE_ID_BYTES]>, String>,
) -> Vec<u8> {
    match local {
        Ok(Some(id)) => {
            let mut v = b"id:".to_vec();
            v.extend_from_slice(id);
            v
        }
        Ok(None) => b"ok".to_vec(),
        Err(e) => {
            let mut v = format!("err:rank {rank}: {e}").into_bytes();
            v.truncate(2048);
            v
        }
    }
}

/// The agreed verdict of the creation gather: rank 0's unique id, or the first error (the
/// same text on every rank).
pub fn decode_ready(rank: usize, all: &[Vec<u8>]) -> Result<[u8; UNIQUE_ID_BYTES]> {
    for m in all {
        if let Some(e) = m.strip_prefix(b"err:") {
            return Err(CommError::Nccl {
                rank,
                reason: String::from_utf8_lossy(e).into_owned(),
            });
        }
    }
    let first = all.first().ok_or_else(|| CommError::Nccl {
        rank,
        reason: "empty group".into(),
    })?;
    let id = first.strip_prefix(b"id:").ok_or_else(|| CommError::Nccl {
        rank,
        reason: "rank 0 sent no NCCL unique id".into(),
    })?;
    id.try_into().map_err(|_| CommError::Nccl {
        rank,
        reason: format!(
            "rank 0 sent a unique id of {} bytes, want {UNIQUE_ID_BYTES}",
            id.len()
        ),
    })
}

/// One rank's NCCL communicator (created by [`Nccl::create`], aborted on drop).
pub(crate) struct Nccl {
    comm: sys::ncclComm_t,
    rank: usize,
    world: usize,
    ctx: Arc<CudaContext>,
}

// SAFETY: an ncclComm_t may be used from any thread as long as calls on it are not
// concurrent. `Nccl` is deliberately not `Sync`: the owning Comm keeps it in a `Mutex`
// (see [`lock`]), so every call on it (all-reduce, async-error query) is made under that
// lock, whichever thread makes it.
unsafe impl Send for Nccl {}

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
        let local: std::result::Result<Option<[u8; UNIQUE_ID_BYTES]>, String> = if shared_device {
            Err("several ranks share one GPU (virtual ranks) and NCCL needs a GPU per rank".into())
        } else {
            probe().and_then(|_| {
                if rank == 0 {
                    let id = result::get_uniqueid()
                        .map_err(|e| format!("ncclGetUniqueId: {}", error_text(e.0)))?;
                    Ok(Some(id.internal.map(|c| c as u8)))
                } else {
                    Ok(None)
                }
            })
        };
        let msg = encode_ready(rank, &local);
        let all = store_all_gather(store, &format!("{prefix}/nccl"), rank, world, &msg, timeout)
            .map_err(|e| crate::rendezvous::store_err(rank, "nccl", e))?;
        let id = decode_ready(rank, &all)?;
        let id = sys::ncclUniqueId {
            internal: id.map(|b| b as std::ffi::c_char),
        };
        let nranks = i32::try_from(world).map_err(|_| CommError::Nccl {
            rank,
            reason: "world too large".into(),
        })?;
        let me = i32::try_from(rank).map_err(|_| CommError::Nccl {
            rank,
            reason: "rank too large".into(),
        })?;
        ctx.bind_to_thread().map_err(|e| CommError::Backend {
            rank,
            reason: format!("cuCtxSetCurrent: {e}"),
        })?;
        let mut comm: sys::ncclComm_t = std::ptr::null_mut();
        // SAFETY: comm is a valid out pointer; the id came from rank 0's ncclGetUniqueId;
        // every rank got past the gather, so all of them call this now.
        unsafe { result::comm_init_rank(&mut comm, nranks, id, me) }
            .map_err(|e| nccl_err(rank, "ncclCommInitRank", e))?;
        tracing::info!("nccl communicator ready");
        Ok(Nccl {
            comm,
            rank,
            world,
            ctx: ctx.clone(),
        })
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
        // SAFETY: the caller guarantees the addresses; the comm is live (owned by self).
        unsafe {
            result::all_reduce(
                input as *const c_void,
                output as *mut c_void,
                count,
                nccl_dtype(dtype),
                nccl_op(op),
                self.comm,
                stream.cu_stream() as sys::cudaStream_t,
            )
        }
        .map(|_| ())
        .map_err(|e| nccl_err(self.rank, "ncclAllReduce", e))
    }

    /// NCCL's asynchronous error of this communicator, if any.
    pub fn async_error(&self) -> Option<CommError> {
        let mut code = sys::ncclResult_t::ncclSuccess;
        // SAFETY: the comm is live; code is a valid out pointer.
        let r = unsafe { sys::ncclCommGetAsyncError(self.comm, &mut code) };
        let code = if r != sys::ncclResult_t::ncclSuccess {
            r
        } else {
            code
        };
        match code {
            sys::ncclResult_t::ncclSuccess | sys::ncclResult_t::ncclInProgress => None,
            c => Some(CommError::Nccl {
                rank: self.rank,
                reason: format!("asynchronous error: {}", error_text(c)),
            }),
        }
    }
}

impl Drop for Nccl {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        // SAFETY: the comm was created by ncclCommInitRank and is released once, here.
        // Abort (not destroy) never blocks on peers that may be gone.
        let _ = unsafe { result::comm_abort(self.comm) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        fn is_send<T: Send>() {}
        is_send::<Nccl>();
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
