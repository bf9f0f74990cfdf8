//! [`NcclComm`]: the one wrapper of inc's raw NCCL calls, behind a safe API. The
//! library's fallback ([`super::Nccl`]) and `inc bench`'s NCCL columns both drive NCCL
//! through it: `ncclGetUniqueId`, `ncclCommInitRank`, `ncclAllReduce`,
//! `ncclCommGetAsyncError`, `ncclCommAbort`, and for the symmetric windows `ncclMemAlloc`,
//! `ncclCommWindowRegister`, `ncclCommWindowDeregister`, `ncclMemFree`.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{result, sys};

use super::{error_text, nccl_dtype, nccl_op, probe, symm_unsupported, NcclError, UNIQUE_ID_BYTES};
use crate::{DType, ReduceOp};

/// `NCCL_WIN_COLL_SYMMETRIC` of nccl.h.
const WIN_COLL_SYMMETRIC: i32 = 1;

/// One rank's NCCL communicator, created collectively by [`NcclComm::create`] and aborted
/// on drop (abort, not destroy: it never waits for peers that may be gone).
///
/// `Send` but not `Sync`: NCCL allows a communicator to be used from any thread as long as
/// calls on it are not concurrent; share it between threads behind a lock.
pub struct NcclComm {
    comm: sys::ncclComm_t,
    ctx: Arc<CudaContext>,
    version: i32,
}

// SAFETY: an ncclComm_t may be used from any thread as long as calls on it are not
// concurrent. `NcclComm` is deliberately not `Sync` (the raw pointer field keeps it so):
// every call goes through `&self` of a single thread at a time, or under a lock.
unsafe impl Send for NcclComm {}

impl std::fmt::Debug for NcclComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclComm")
            .field("version", &self.version)
            .finish()
    }
}

/// The gather message of NCCL creation: rank 0 sends `id:` + the 128-byte id, the others
/// `ok`; any rank that cannot use NCCL sends `err:` + why.
pub(super) fn encode_ready(
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

/// The agreed outcome of the creation gather: rank 0's unique id, or the first error (the
/// same text on every rank).
pub(super) fn agreed_id(all: &[Vec<u8>]) -> Result<[u8; UNIQUE_ID_BYTES], String> {
    if let Some(e) = all.iter().find_map(|m| m.strip_prefix(b"err:")) {
        return Err(String::from_utf8_lossy(e).into_owned());
    }
    let first = all.first().ok_or("empty group")?;
    let id = first
        .strip_prefix(b"id:")
        .ok_or("rank 0 sent no NCCL unique id")?;
    id.try_into().map_err(|_| {
        format!(
            "rank 0 sent a unique id of {} bytes, want {UNIQUE_ID_BYTES}",
            id.len()
        )
    })
}

impl NcclComm {
    /// Collective: creates rank `rank` of `world` on `ctx`'s device. `gather` all-gathers
    /// one message per rank (in rank order) through the caller's channel; it carries rank
    /// 0's unique id and every rank's readiness, so a rank that cannot use NCCL (no
    /// libnccl, or `refusal`: why this rank must not try) makes every rank fail with the
    /// same message instead of hanging in `ncclCommInitRank`. `err` turns this module's
    /// errors into the caller's.
    pub fn create<E>(
        rank: usize,
        world: usize,
        ctx: &Arc<CudaContext>,
        refusal: Option<String>,
        gather: impl FnOnce(&[u8]) -> Result<Vec<Vec<u8>>, E>,
        err: impl Fn(NcclError) -> E,
    ) -> Result<NcclComm, E> {
        let local = match refusal {
            Some(why) => Err(why),
            None => probe().and_then(|v| {
                if rank == 0 {
                    let id = result::get_uniqueid()
                        .map_err(|e| format!("ncclGetUniqueId: {}", error_text(e.0)))?;
                    Ok((v, Some(id.internal.map(|c| c as u8))))
                } else {
                    Ok((v, None))
                }
            }),
        };
        let mine = local.as_ref().map(|(_, id)| *id).map_err(Clone::clone);
        let all = gather(&encode_ready(rank, &mine))?;
        let id = agreed_id(&all).map_err(|r| err(NcclError::Refused(r)))?;
        let (version, _) = local.map_err(|r| err(NcclError::Refused(r)))?;
        let nranks =
            i32::try_from(world).map_err(|_| err(NcclError::Refused("world too large".into())))?;
        let me =
            i32::try_from(rank).map_err(|_| err(NcclError::Refused("rank too large".into())))?;
        ctx.bind_to_thread().map_err(|e| {
            err(NcclError::Cuda {
                call: "cuCtxSetCurrent",
                text: e.to_string(),
            })
        })?;
        let id = sys::ncclUniqueId {
            internal: id.map(|b| b as std::ffi::c_char),
        };
        let mut comm: sys::ncclComm_t = std::ptr::null_mut();
        // SAFETY: comm is a valid out pointer; the id came from rank 0's ncclGetUniqueId;
        // every rank got past the gather with it, so all of them make this call now.
        unsafe { result::comm_init_rank(&mut comm, nranks, id, me) }
            .map_err(|e| err(NcclError::call("ncclCommInitRank", e.0)))?;
        Ok(NcclComm {
            comm,
            ctx: ctx.clone(),
            version,
        })
    }

    /// `ncclGetVersion` of the library this communicator runs on (e.g. 22703).
    pub fn version(&self) -> i32 {
        self.version
    }

    /// Enqueues `ncclAllReduce` of `count` elements from `input` to `output` (may be equal)
    /// on `stream`.
    ///
    /// # Safety
    /// `input` and `output` must be device addresses of at least `count` elements of
    /// `dtype` on this communicator's device, valid until the call completes on `stream`.
    pub unsafe fn all_reduce(
        &self,
        input: u64,
        output: u64,
        count: usize,
        dtype: DType,
        op: ReduceOp,
        stream: &CudaStream,
    ) -> Result<(), NcclError> {
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
        .map_err(|e| NcclError::call("ncclAllReduce", e.0))
    }

    /// NCCL's asynchronous error of this communicator, if any (`ncclInProgress` is none).
    pub fn async_error(&self) -> Option<NcclError> {
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
            c => Some(NcclError::call("asynchronous error", c)),
        }
    }

    /// Collective: allocates `bytes` for an input and an output with `ncclMemAlloc` and
    /// registers both as symmetric windows (`ncclCommWindowRegister(..,
    /// NCCL_WIN_COLL_SYMMETRIC)`, NCCL >= 2.27), where NCCL runs its symmetric-memory
    /// kernels. Every rank must call it with the same size; NCCL's registration has no
    /// timeout, so check first that every rank's library has it ([`symm_unsupported`]).
    pub fn symmetric(&self, bytes: usize) -> Result<SymmetricWindows<'_>, NcclError> {
        if let Some(why) = symm_unsupported(self.version) {
            return Err(NcclError::Refused(why));
        }
        self.ctx.bind_to_thread().map_err(|e| NcclError::Cuda {
            call: "cuCtxSetCurrent",
            text: e.to_string(),
        })?;
        let mut s = SymmetricWindows {
            nccl: self,
            ptrs: [std::ptr::null_mut(); 2],
            wins: [std::ptr::null_mut(); 2],
        };
        for slot in s.ptrs.iter_mut() {
            let mut p: *mut c_void = std::ptr::null_mut();
            // SAFETY: p is a valid out pointer; the version check above guarantees the
            // symbol exists.
            check("ncclMemAlloc", unsafe { sys::ncclMemAlloc(&mut p, bytes) })?;
            *slot = p;
        }
        for k in 0..2 {
            let p = s.ptrs.get(k).copied().unwrap_or(std::ptr::null_mut());
            let mut w: sys::ncclWindow_t = std::ptr::null_mut();
            // SAFETY: p is a live ncclMemAlloc buffer of `bytes`; w is a valid out
            // pointer; NCCL >= 2.27 has the symbol (checked above).
            let code = unsafe {
                sys::ncclCommWindowRegister(self.comm, p, bytes, &mut w, WIN_COLL_SYMMETRIC)
            };
            check("ncclCommWindowRegister", code)?;
            if let Some(slot) = s.wins.get_mut(k) {
                *slot = w;
            }
        }
        Ok(s)
    }
}

fn check(call: &'static str, code: sys::ncclResult_t) -> Result<(), NcclError> {
    if code == sys::ncclResult_t::ncclSuccess {
        Ok(())
    } else {
        Err(NcclError::call(call, code))
    }
}

impl Drop for NcclComm {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        // SAFETY: the comm was created by ncclCommInitRank and is released once, here.
        // Abort (not destroy) never blocks on peers that may be gone.
        let _ = unsafe { result::comm_abort(self.comm) };
    }
}

/// An input and an output buffer registered as NCCL symmetric windows
/// ([`NcclComm::symmetric`]); deregistered and freed on drop.
pub struct SymmetricWindows<'a> {
    nccl: &'a NcclComm,
    ptrs: [*mut c_void; 2],
    wins: [sys::ncclWindow_t; 2],
}

impl std::fmt::Debug for SymmetricWindows<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SymmetricWindows")
            .field("input", &self.input())
            .field("output", &self.output())
            .finish()
    }
}

impl SymmetricWindows<'_> {
    /// Device address of the input buffer.
    pub fn input(&self) -> u64 {
        self.ptrs.first().map_or(0, |p| *p as u64)
    }

    /// Device address of the output buffer.
    pub fn output(&self) -> u64 {
        self.ptrs.get(1).map_or(0, |p| *p as u64)
    }
}

impl Drop for SymmetricWindows<'_> {
    fn drop(&mut self) {
        let _ = self.nccl.ctx.bind_to_thread();
        for w in self.wins.iter().filter(|w| !w.is_null()) {
            // SAFETY: registered on this comm by `symmetric`, deregistered once.
            let _ = unsafe { sys::ncclCommWindowDeregister(self.nccl.comm, *w) };
        }
        for p in self.ptrs.iter().filter(|p| !p.is_null()) {
            // SAFETY: allocated by ncclMemAlloc in `symmetric`, freed once; device work
            // on it only comes from the unsafe `all_reduce`, whose caller keeps it valid
            // until that work completed.
            let _ = unsafe { sys::ncclMemFree(*p) };
        }
    }
}
