//! [`IpcHandle`]: a CUDA IPC memory handle as the rendezvous carries it (bytes or hex).

use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::CudaContext;

use crate::error::{drv, CudaError, Result};
use crate::sys;

/// Checks that rank `rank` of `world` may map `peer` (another rank, in range) whose slot is
/// not `mapped` yet. Shared by [`crate::PeerBuffers`] and [`crate::SymmetricMemory`].
pub(crate) fn check_peer(rank: usize, world: usize, peer: usize, mapped: bool) -> Result<()> {
    if peer >= world || peer == rank {
        return Err(CudaError::InvalidArgument(format!(
            "peer {peer} invalid for rank {rank} of {world}"
        )));
    }
    if mapped {
        return Err(CudaError::InvalidArgument(format!(
            "peer {peer} already mapped"
        )));
    }
    Ok(())
}

/// Opens `peer`'s IPC `handle` in `ctx` (bound here); `what` qualifies the error
/// (e.g. `" (symmetric memory)"`). Returns the mapped base address, to close once.
pub(crate) fn open(
    ctx: &CudaContext,
    rank: usize,
    peer: usize,
    handle: &IpcHandle,
    what: &str,
) -> Result<CUdeviceptr> {
    ctx.bind_to_thread().map_err(drv("cuCtxSetCurrent"))?;
    // SAFETY: context current; the driver validates the handle.
    unsafe { sys::ipc_open_mem_handle(&handle.0) }.map_err(|e| CudaError::PeerAccess {
        rank,
        peer,
        reason: format!("cuIpcOpenMemHandle{what}: {e}"),
    })
}

/// A CUDA IPC memory handle (64 opaque bytes) for a peer process.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IpcHandle(pub [u8; sys::IPC_HANDLE_BYTES]);

impl std::fmt::Debug for IpcHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IpcHandle({})", self.to_hex())
    }
}

impl IpcHandle {
    /// The raw bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_vec()
    }

    /// From raw bytes; exactly 64 are required.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let arr: [u8; sys::IPC_HANDLE_BYTES] = b.try_into().map_err(|_| {
            CudaError::InvalidArgument(format!(
                "IPC handle must be {} bytes, got {}",
                sys::IPC_HANDLE_BYTES,
                b.len()
            ))
        })?;
        Ok(IpcHandle(arr))
    }

    /// Lower-case hex (128 characters).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parse [`IpcHandle::to_hex`] output.
    pub fn from_hex(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.len() != 2 * sys::IPC_HANDLE_BYTES || !s.is_ascii() {
            return Err(CudaError::InvalidArgument(format!(
                "IPC handle hex must be {} ASCII characters, got {}",
                2 * sys::IPC_HANDLE_BYTES,
                s.len()
            )));
        }
        let mut out = [0u8; sys::IPC_HANDLE_BYTES];
        for (i, o) in out.iter_mut().enumerate() {
            let pair = s.get(2 * i..2 * i + 2).unwrap_or("");
            *o = u8::from_str_radix(pair, 16).map_err(|_| {
                CudaError::InvalidArgument(format!("bad hex {pair:?} in IPC handle"))
            })?;
        }
        Ok(IpcHandle(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipc_handle_hex_and_bytes_round_trip() {
        let mut raw = [0u8; 64];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = (i * 37 + 5) as u8;
        }
        let h = IpcHandle(raw);
        assert_eq!(IpcHandle::from_hex(&h.to_hex()).unwrap(), h);
        assert_eq!(IpcHandle::from_bytes(&h.to_bytes()).unwrap(), h);
        assert_eq!(h.to_hex().len(), 128);
        assert!(IpcHandle::from_bytes(&raw[..63]).is_err());
        assert!(IpcHandle::from_hex("zz").is_err());
        let mut bad = h.to_hex();
        bad.replace_range(0..2, "g0");
        assert!(IpcHandle::from_hex(&bad).is_err());
        assert!(IpcHandle::from_hex(&format!(" {}\n", h.to_hex())).is_ok());
    }
}
