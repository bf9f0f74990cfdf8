//! NCCL driven directly by the bench (not through inc's fallback): the NCCL columns that
//! inc's [`Comm`](inc_comm::Comm) does not expose.
//!
//! * `nccl-symm`: `ncclAllReduce` on window-registered symmetric buffers
//!   (`ncclMemAlloc` + `ncclCommWindowRegister(.., NCCL_WIN_COLL_SYMMETRIC)`, NCCL >= 2.27),
//!   where NCCL runs its symmetric-memory kernels, its strongest small-message path.
//! * The world-1 floors (`nccl-w1`, `nccl-symm-w1`): NCCL with one rank on GPU 0, the cost
//!   of one NCCL call with no peer, shown when the group has virtual ranks (NCCL refuses
//!   several ranks on one GPU).
//!
//! The unique id travels through the caller's gather (the bench's control store), so a
//! rank that cannot use NCCL makes every rank fail with the same message instead of
//! hanging in `ncclCommInitRank`. Symmetric registration is collective and has no timeout
//! in NCCL: it is only attempted when every rank reported a library that has it.

use std::ffi::{c_void, CStr};
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{result, sys};
use inc_comm::{DType, ReduceOp};

/// First NCCL version (`ncclGetVersion`'s code) with `ncclCommWindowRegister`.
pub(crate) const SYMM_MIN_VERSION: i32 = 22700;
/// `NCCL_WIN_COLL_SYMMETRIC` of nccl.h.
const WIN_COLL_SYMMETRIC: i32 = 1;
/// Bytes of an NCCL unique id.
const ID_BYTES: usize = 128;

/// Why `nccl-symm` cannot run with NCCL version `v`, or `None` when it can.
pub(crate) fn symm_unsupported(v: i32) -> Option<String> {
    (v < SYMM_MIN_VERSION).then(|| {
        format!(
            "needs NCCL >= 2.27 (ncclCommWindowRegister); this libnccl is {}",
            version_text(v)
        )
    })
}

/// `22703` -> `2.27.3`.
pub(crate) fn version_text(v: i32) -> String {
    if v >= 10000 {
        format!("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100)
    } else {
        format!("{}.{}.{}", v / 1000, (v % 1000) / 100, v % 100)
    }
}

fn text(code: sys::ncclResult_t) -> String {
    // SAFETY: only called once libnccl is loaded (after a successful probe);
    // ncclGetErrorString returns a static NUL-terminated string or null.
    let p = unsafe { sys::ncclGetErrorString(code) };
    if p.is_null() {
        return format!("{code:?}");
    }
    // SAFETY: non-null, static, NUL-terminated (owned by libnccl).
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    format!("{code:?} ({s})")
}

fn check(what: &str, code: sys::ncclResult_t) -> Result<(), String> {
    if code == sys::ncclResult_t::ncclSuccess {
        Ok(())
    } else {
        Err(format!("{what}: {}", text(code)))
    }
}

/// Encodes this rank's part of the id exchange: rank 0 `id:`+id, others `ok`, `err:`+why.
fn encode(local: &Result<Option<[u8; ID_BYTES]>, String>, rank: usize) -> Vec<u8> {
    match local {
        Ok(Some(id)) => [b"id:".as_slice(), id.as_slice()].concat(),
        Ok(None) => b"ok".to_vec(),
        Err(e) => format!("err:rank {rank}: {e}").into_bytes(),
    }
}

/// The agreed outcome of the exchange: rank 0's id or the first error.
pub(crate) fn decode(all: &[Vec<u8>]) -> Result<[u8; ID_BYTES], String> {
    if let Some(e) = all.iter().find_map(|m| m.strip_prefix(b"err:")) {
        return Err(String::from_utf8_lossy(e).into_owned());
    }
    let first = all.first().ok_or("empty NCCL group")?;
    let id = first
        .strip_prefix(b"id:")
        .ok_or("rank 0 sent no NCCL unique id")?;
    id.try_into()
        .map_err(|_| format!("rank 0 sent an id of {} bytes", id.len()))
}

/// One rank's own NCCL communicator (aborted on drop).
pub(crate) struct RawNccl {
    comm: sys::ncclComm_t,
    ctx: Arc<CudaContext>,
    /// `ncclGetVersion`.
    pub version: i32,
}

impl RawNccl {
    /// Collective: creates rank `rank` of `world` on `ctx`'s device; `gather` all-gathers
    /// one message per rank (in rank order).
    pub fn create(
        rank: usize,
        world: usize,
        ctx: &Arc<CudaContext>,
        gather: impl FnOnce(&[u8]) -> Result<Vec<Vec<u8>>, String>,
    ) -> Result<RawNccl, String> {
        let version = inc_comm::nccl::probe();
        let local = version.clone().and_then(|_| {
            if rank == 0 {
                result::get_uniqueid()
                    .map(|id| Some(id.internal.map(|c| c as u8)))
                    .map_err(|e| format!("ncclGetUniqueId: {}", text(e.0)))
            } else {
                Ok(None)
            }
        });
        let all = gather(&encode(&local, rank))?;
        let id = decode(&all)?;
        let version = version?;
        let n = i32::try_from(world).map_err(|_| "world too large".to_string())?;
        let me = i32::try_from(rank).map_err(|_| "rank too large".to_string())?;
        ctx.bind_to_thread()
            .map_err(|e| format!("cuCtxSetCurrent: {e}"))?;
        let id = sys::ncclUniqueId {
            internal: id.map(|b| b as std::ffi::c_char),
        };
        let mut comm: sys::ncclComm_t = std::ptr::null_mut();
        // SAFETY: comm is a valid out pointer; every rank got past the gather with rank
        // 0's id, so all of them make this call now.
        unsafe { result::comm_init_rank(&mut comm, n, id, me) }
            .map_err(|e| format!("ncclCommInitRank: {}", text(e.0)))?;
        Ok(RawNccl {
            comm,
            ctx: ctx.clone(),
            version,
        })
    }

    /// Enqueues `ncclAllReduce` of `count` elements on `stream`.
    ///
    /// # Safety
    /// `input`/`output` are device addresses of at least `count` elements of `dtype` on
    /// this communicator's device, valid until the call completes on `stream`.
    pub unsafe fn all_reduce(
        &self,
        input: u64,
        output: u64,
        count: usize,
        dtype: DType,
        op: ReduceOp,
        stream: &CudaStream,
    ) -> Result<(), String> {
        // SAFETY: forwarded from this function's contract; the comm is live.
        let code = unsafe {
            sys::ncclAllReduce(
                input as *const c_void,
                output as *mut c_void,
                count,
                inc_comm::nccl::nccl_dtype(dtype),
                inc_comm::nccl::nccl_op(op),
                self.comm,
                stream.cu_stream() as sys::cudaStream_t,
            )
        };
        check("ncclAllReduce", code)
    }

    /// Collective: allocates `bytes` for input and output with `ncclMemAlloc` and
    /// registers both as symmetric windows. Every rank must call it with the same size.
    pub fn symmetric(&self, bytes: usize) -> Result<SymmBuffers<'_>, String> {
        if let Some(why) = symm_unsupported(self.version) {
            return Err(why);
        }
        self.ctx
            .bind_to_thread()
            .map_err(|e| format!("cuCtxSetCurrent: {e}"))?;
        let mut s = SymmBuffers {
            nccl: self,
            ptrs: [std::ptr::null_mut(); 2],
            wins: [std::ptr::null_mut(); 2],
        };
        for k in 0..2 {
            let mut p: *mut c_void = std::ptr::null_mut();
            // SAFETY: p is a valid out pointer; the version check above guarantees the
            // symbol exists.
            check("ncclMemAlloc", unsafe { sys::ncclMemAlloc(&mut p, bytes) })?;
            if let Some(slot) = s.ptrs.get_mut(k) {
                *slot = p;
            }
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

impl Drop for RawNccl {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        // SAFETY: created by ncclCommInitRank, released once here; abort never waits
        // for peers.
        let _ = unsafe { result::comm_abort(self.comm) };
    }
}

/// Input and output buffers registered as NCCL symmetric windows.
pub(crate) struct SymmBuffers<'a> {
    nccl: &'a RawNccl,
    ptrs: [*mut c_void; 2],
    wins: [sys::ncclWindow_t; 2],
}

impl SymmBuffers<'_> {
    /// Device address of the input buffer.
    pub fn input(&self) -> u64 {
        self.ptrs.first().map_or(0, |p| *p as u64)
    }
    /// Device address of the output buffer.
    pub fn output(&self) -> u64 {
        self.ptrs.get(1).map_or(0, |p| *p as u64)
    }
}

impl Drop for SymmBuffers<'_> {
    fn drop(&mut self) {
        let _ = self.nccl.ctx.bind_to_thread();
        for w in self.wins.iter().filter(|w| !w.is_null()) {
            // SAFETY: registered on this comm by `symmetric`, deregistered once.
            let _ = unsafe { sys::ncclCommWindowDeregister(self.nccl.comm, *w) };
        }
        for p in self.ptrs.iter().filter(|p| !p.is_null()) {
            // SAFETY: allocated by ncclMemAlloc in `symmetric`, freed once; every use
            // was synchronised before the bench drops the buffers.
            let _ = unsafe { sys::ncclMemFree(*p) };
        }
    }
}

#[cfg(test)]
mod tests {
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
        let id = [9u8; ID_BYTES];
        let all = vec![encode(&Ok(Some(id)), 0), encode(&Ok(None), 1)];
        assert_eq!(decode(&all).unwrap(), id);
        let bad = vec![encode(&Ok(Some(id)), 0), encode(&Err("no lib".into()), 1)];
        assert_eq!(decode(&bad).unwrap_err(), "rank 1: no lib");
        assert!(decode(&[b"ok".to_vec()]).is_err());
        assert!(decode(&[b"id:xx".to_vec()]).is_err());
        assert!(decode(&[]).is_err());
    }
}
