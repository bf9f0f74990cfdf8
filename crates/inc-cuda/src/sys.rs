//! Raw driver and NVRTC calls that cudarc's safe API does not cover. Each function is a thin
//! `unsafe` wrapper whose contract is stated in its `# Safety` section; safe types live in
//! `buffers.rs` and `kernels.rs`.

use std::ffi::{c_char, c_int, c_uint, c_void, CString};

use cudarc::driver::sys::{self as dsys, CUdevice, CUdeviceptr, CUfunction, CUstream};
use cudarc::driver::DriverError;
use cudarc::nvrtc::sys as nsys;

/// Size of a CUDA IPC memory handle.
pub const IPC_HANDLE_BYTES: usize = 64;

fn check(r: dsys::CUresult) -> Result<(), DriverError> {
    r.result()
}

/// Whether libcuda can be loaded (never panics).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen candidate library names; no CUDA call is made.
    unsafe { dsys::is_culib_present() }
}

/// Whether libnvrtc can be loaded (never panics).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen candidate library names.
    unsafe { nsys::is_culib_present() }
}

/// libcuda is loaded (checked once per process): the safe wrappers below may call it;
/// otherwise `CUDA_ERROR_NOT_INITIALIZED` instead of cudarc's panic on a missing library.
fn loaded() -> Result<(), DriverError> {
    static PRESENT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *PRESENT.get_or_init(driver_present) {
        Ok(())
    } else {
        Err(DriverError(dsys::CUresult::CUDA_ERROR_NOT_INITIALIZED))
    }
}

/// The driver API version (cuDriverGetVersion, e.g. 13000), or `None` when libcuda cannot
/// be loaded or does not answer. Never panics.
pub fn driver_api_version() -> Option<i32> {
    loaded().ok()?;
    // SAFETY: libcuda is loaded (checked just above).
    unsafe { driver_version() }.ok()
}

/// The PCI bus id of device `dev` (cuDeviceGetPCIBusId), lowercased: `0000:3b:00.0`.
/// Errors when libcuda is missing or not initialised, or `dev` is not a device.
pub fn pci_bus_id(dev: CUdevice) -> Result<String, DriverError> {
    loaded()?;
    let mut buf = [0 as c_char; 64];
    let len = c_int::try_from(buf.len()).unwrap_or(c_int::MAX);
    // SAFETY: libcuda is loaded (checked above); buf is writable for `len` bytes and the
    // driver writes at most that many, NUL included; the driver validates `dev`.
    check(unsafe { dsys::cuDeviceGetPCIBusId(buf.as_mut_ptr(), len, dev) })?;
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).to_ascii_lowercase())
}

/// The device with PCI bus id `bus` (cuDeviceGetByPCIBusId), or `None` when the driver
/// knows no such device (or libcuda is missing or not initialised).
pub fn device_by_pci_bus_id(bus: &str) -> Option<CUdevice> {
    loaded().ok()?;
    let c = CString::new(bus).ok()?;
    let mut dev: CUdevice = 0;
    // SAFETY: libcuda is loaded (checked above); c is a NUL-terminated string that
    // outlives the call; dev is a valid out pointer.
    check(unsafe { dsys::cuDeviceGetByPCIBusId(&mut dev, c.as_ptr()) }).ok()?;
    Some(dev)
}

/// Driver version as reported by cuDriverGetVersion (e.g. 13000).
///
/// # Safety
/// libcuda must be present ([`driver_present`]).
pub unsafe fn driver_version() -> Result<i32, DriverError> {
    let mut v: c_int = 0;
    // SAFETY: v is a valid out pointer; caller guarantees the library is loaded.
    check(unsafe { dsys::cuDriverGetVersion(&mut v) })?;
    Ok(v)
}

/// Export an IPC handle for the allocation that starts at `ptr`.
///
/// # Safety
/// `ptr` must be the base of a live cuMemAlloc allocation in the current context.
pub unsafe fn ipc_get_mem_handle(ptr: CUdeviceptr) -> Result<[u8; IPC_HANDLE_BYTES], DriverError> {
    let mut h = dsys::CUipcMemHandle_st {
        reserved: [0; IPC_HANDLE_BYTES],
    };
    // SAFETY: h is a valid out struct; ptr contract from the caller.
    check(unsafe { dsys::cuIpcGetMemHandle(&mut h, ptr) })?;
    Ok(h.reserved.map(|c| c as u8))
}

/// Map a peer process's allocation (lazy peer access).
///
/// # Safety
/// A context must be current on this thread; the handle must come from another process.
pub unsafe fn ipc_open_mem_handle(
    handle: &[u8; IPC_HANDLE_BYTES],
) -> Result<CUdeviceptr, DriverError> {
    let h = dsys::CUipcMemHandle_st {
        reserved: handle.map(|b| b as c_char),
    };
    let mut p: CUdeviceptr = 0;
    let flags = dsys::CUipcMem_flags::CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS as c_uint;
    // SAFETY: p is a valid out pointer; the driver validates the handle bytes.
    check(unsafe { dsys::cuIpcOpenMemHandle_v2(&mut p, h, flags) })?;
    Ok(p)
}

/// Unmap a pointer returned by [`ipc_open_mem_handle`].
///
/// # Safety
/// `ptr` must come from `ipc_open_mem_handle`, be closed once, and no kernel may still use it.
pub unsafe fn ipc_close_mem_handle(ptr: CUdeviceptr) -> Result<(), DriverError> {
    // SAFETY: contract from the caller.
    check(unsafe { dsys::cuIpcCloseMemHandle(ptr) })
}

/// cuDeviceCanAccessPeer.
///
/// # Safety
/// Both device handles must come from cuDeviceGet.
pub unsafe fn can_access_peer(dev: CUdevice, peer: CUdevice) -> Result<bool, DriverError> {
    let mut v: c_int = 0;
    // SAFETY: v is a valid out pointer.
    check(unsafe { dsys::cuDeviceCanAccessPeer(&mut v, dev, peer) })?;
    Ok(v != 0)
}

/// Enable access from the current context to `peer_ctx`'s memory; "already enabled" is OK.
///
/// # Safety
/// A context must be current on this thread and `peer_ctx` must be a live context.
pub unsafe fn enable_peer_access(peer_ctx: dsys::CUcontext) -> Result<(), DriverError> {
    // SAFETY: contract from the caller.
    let r = unsafe { dsys::cuCtxEnablePeerAccess(peer_ctx, 0) };
    if r == dsys::CUresult::CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED {
        return Ok(());
    }
    check(r)
}

/// Allocate `bytes` of device memory with plain cuMemAlloc (IPC-exportable).
///
/// # Safety
/// A context must be current on this thread.
pub unsafe fn mem_alloc(bytes: usize) -> Result<CUdeviceptr, DriverError> {
    // SAFETY: contract from the caller.
    unsafe { cudarc::driver::result::malloc_sync(bytes) }
}

/// The device allocation that contains `ptr`: (base, bytes).
///
/// # Safety
/// A context must be current on this thread.
pub unsafe fn mem_address_range(ptr: CUdeviceptr) -> Result<(CUdeviceptr, usize), DriverError> {
    let mut base: CUdeviceptr = 0;
    let mut size: usize = 0;
    // SAFETY: valid out pointers; the driver validates ptr.
    check(unsafe { dsys::cuMemGetAddressRange_v2(&mut base, &mut size, ptr) })?;
    Ok((base, size))
}

/// Free memory from [`mem_alloc`].
///
/// # Safety
/// `ptr` must come from `mem_alloc`, be freed once, and no kernel may still use it.
pub unsafe fn mem_free(ptr: CUdeviceptr) -> Result<(), DriverError> {
    // SAFETY: contract from the caller.
    unsafe { cudarc::driver::result::free_sync(ptr) }
}

/// Synchronous memset of `bytes` bytes at `ptr`.
///
/// # Safety
/// `[ptr, ptr+bytes)` must be device memory reachable from the current context.
pub unsafe fn memset_d8(ptr: CUdeviceptr, value: u8, bytes: usize) -> Result<(), DriverError> {
    // SAFETY: contract from the caller.
    check(unsafe { dsys::cuMemsetD8_v2(ptr, value, bytes) })
}

/// Asynchronous memset of `bytes` bytes at `ptr` on `stream`.
///
/// # Safety
/// `[ptr, ptr+bytes)` must be device memory reachable from `stream`'s context and stay
/// allocated until the stream reaches the memset; `stream` must be live.
pub unsafe fn memset_d8_async(
    ptr: CUdeviceptr,
    value: u8,
    bytes: usize,
    stream: CUstream,
) -> Result<(), DriverError> {
    // SAFETY: contract from the caller.
    check(unsafe { dsys::cuMemsetD8Async(ptr, value, bytes, stream) })
}

/// Synchronous memset of `words` 32-bit words at `ptr` (4-byte aligned).
///
/// # Safety
/// `[ptr, ptr+4*words)` must be device memory reachable from the current context.
pub unsafe fn memset_d32(ptr: CUdeviceptr, value: u32, words: usize) -> Result<(), DriverError> {
    // SAFETY: contract from the caller.
    check(unsafe { dsys::cuMemsetD32_v2(ptr, value, words) })
}

/// Asynchronous memset of `words` 32-bit words at `ptr` on `stream`.
///
/// # Safety
/// `[ptr, ptr+4*words)` must be device memory reachable from the current context and stay
/// allocated until the stream reaches the memset; `stream` must be live.
pub unsafe fn memset_d32_async(
    ptr: CUdeviceptr,
    value: u32,
    words: usize,
    stream: dsys::CUstream,
) -> Result<(), DriverError> {
    // SAFETY: contract from the caller.
    check(unsafe { dsys::cuMemsetD32Async(ptr, value, words, stream) })
}

/// Synchronous copy device -> host.
///
/// # Safety
/// `[src, src+dst.len())` must be device memory reachable from the current context.
pub unsafe fn copy_dtoh(dst: &mut [u8], src: CUdeviceptr) -> Result<(), DriverError> {
    // SAFETY: dst is a valid host buffer of dst.len() bytes; src contract from the caller.
    check(unsafe { dsys::cuMemcpyDtoH_v2(dst.as_mut_ptr().cast(), src, dst.len()) })
}

/// Synchronous copy host -> device.
///
/// # Safety
/// `[dst, dst+src.len())` must be device memory reachable from the current context.
pub unsafe fn copy_htod(dst: CUdeviceptr, src: &[u8]) -> Result<(), DriverError> {
    // SAFETY: src is a valid host buffer; dst contract from the caller.
    check(unsafe { dsys::cuMemcpyHtoD_v2(dst, src.as_ptr().cast(), src.len()) })
}

/// Pinned host memory mapped into the device address space: (host pointer, device pointer).
///
/// # Safety
/// A context must be current on this thread.
pub unsafe fn host_alloc_mapped(bytes: usize) -> Result<(*mut c_void, CUdeviceptr), DriverError> {
    let mut p: *mut c_void = std::ptr::null_mut();
    let flags = dsys::CU_MEMHOSTALLOC_DEVICEMAP | dsys::CU_MEMHOSTALLOC_PORTABLE;
    // SAFETY: p is a valid out pointer.
    check(unsafe { dsys::cuMemHostAlloc(&mut p, bytes, flags) })?;
    // SAFETY: p was just allocated (zero-fill it before anyone reads it).
    unsafe { std::ptr::write_bytes(p.cast::<u8>(), 0, bytes) };
    let mut d: CUdeviceptr = 0;
    // SAFETY: p is a live DEVICEMAP allocation; d is a valid out pointer.
    if let Err(e) = check(unsafe { dsys::cuMemHostGetDevicePointer_v2(&mut d, p, 0) }) {
        // SAFETY: p came from cuMemHostAlloc above and is not used afterwards.
        let _ = unsafe { dsys::cuMemFreeHost(p) };
        return Err(e);
    }
    Ok((p, d))
}

/// Free memory from [`host_alloc_mapped`].
///
/// # Safety
/// `p` must come from `host_alloc_mapped`, be freed once, and no kernel may still use it.
pub unsafe fn host_free(p: *mut c_void) -> Result<(), DriverError> {
    // SAFETY: contract from the caller.
    check(unsafe { dsys::cuMemFreeHost(p) })
}

/// Launch `f` with one by-value struct parameter.
///
/// # Safety
/// `f` must be a live kernel whose only parameter has exactly the layout of `A`; the stream
/// must belong to the current context; every device address inside `args` must stay valid
/// until the kernel completes.
pub unsafe fn launch<A>(
    f: CUfunction,
    grid: u32,
    block: u32,
    stream: CUstream,
    args: &A,
    pdl: bool,
) -> Result<(), DriverError> {
    let mut params: [*mut c_void; 1] = [(args as *const A).cast_mut().cast()];
    if pdl {
        // Programmatic dependent launch: the kernel may start while the previous kernel of
        // the stream finishes; it waits for it (griddepcontrol.wait) before touching memory.
        // SAFETY: a zeroed attribute value is valid (plain integers/unions of integers).
        let mut value: dsys::CUlaunchAttributeValue = unsafe { std::mem::zeroed() };
        value.programmaticStreamSerializationAllowed = 1;
        let mut attr = dsys::CUlaunchAttribute {
            id: dsys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
            pad: [0; 4],
            value,
        };
        let config = dsys::CUlaunchConfig {
            gridDimX: grid,
            gridDimY: 1,
            gridDimZ: 1,
            blockDimX: block,
            blockDimY: 1,
            blockDimZ: 1,
            sharedMemBytes: 0,
            hStream: stream,
            attrs: &mut attr,
            numAttrs: 1,
        };
        // SAFETY: config and attr live across the call; params as below.
        return check(unsafe {
            dsys::cuLaunchKernelEx(&config, f, params.as_mut_ptr(), std::ptr::null_mut())
        });
    }
    // SAFETY: params points at one argument that the driver copies before returning.
    check(unsafe {
        dsys::cuLaunchKernel(
            f,
            grid,
            1,
            1,
            block,
            1,
            1,
            0,
            stream,
            params.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    })
}

/// Max co-resident blocks of `f` per SM at `block` threads.
///
/// # Safety
/// `f` must be a live kernel.
pub unsafe fn occupancy(f: CUfunction, block: u32) -> Result<u32, DriverError> {
    let mut n: c_int = 0;
    // SAFETY: n is a valid out pointer; f contract from the caller.
    check(unsafe {
        dsys::cuOccupancyMaxActiveBlocksPerMultiprocessor(&mut n, f, block as c_int, 0)
    })?;
    Ok(u32::try_from(n).unwrap_or(0))
}

/// NVRTC version (major, minor).
///
/// # Safety
/// libnvrtc must be present ([`nvrtc_present`]).
pub unsafe fn nvrtc_version() -> Result<(i32, i32), i32> {
    let (mut a, mut b): (c_int, c_int) = (0, 0);
    // SAFETY: valid out pointers.
    let r = unsafe { nsys::nvrtcVersion(&mut a, &mut b) };
    if r == nsys::nvrtcResult::NVRTC_SUCCESS {
        Ok((a, b))
    } else {
        Err(r as i32)
    }
}

/// Outcome of an NVRTC compile.
pub enum NvrtcOutcome {
    /// The CUBIN image.
    Cubin(Vec<u8>),
    /// Compilation failed: status and program log.
    Failed(i32, String),
}

/// Compile `src` to a CUBIN with `options`.
///
/// # Safety
/// libnvrtc must be present ([`nvrtc_present`]).
pub unsafe fn nvrtc_compile_cubin(
    src: &str,
    name: &str,
    options: &[String],
) -> Result<NvrtcOutcome, (&'static str, i32)> {
    let csrc = CString::new(src).map_err(|_| ("source contains NUL", -1))?;
    let cname = CString::new(name).map_err(|_| ("name contains NUL", -1))?;
    let copts: Vec<CString> = options
        .iter()
        .map(|o| CString::new(o.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| ("option contains NUL", -1))?;
    let popts: Vec<*const c_char> = copts.iter().map(|c| c.as_ptr()).collect();
    let ok = nsys::nvrtcResult::NVRTC_SUCCESS;
    let mut prog: nsys::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let r = unsafe {
        nsys::nvrtcCreateProgram(
            &mut prog,
            csrc.as_ptr(),
            cname.as_ptr(),
            0,
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != ok {
        return Err(("nvrtcCreateProgram", r as i32));
    }
    let n = c_int::try_from(popts.len()).unwrap_or(0);
    // SAFETY: prog is live; popts holds n valid C strings.
    let rc = unsafe { nsys::nvrtcCompileProgram(prog, n, popts.as_ptr()) };
    let out = if rc != ok {
        let mut size = 0usize;
        // SAFETY: prog is live; valid out pointer.
        let _ = unsafe { nsys::nvrtcGetProgramLogSize(prog, &mut size) };
        let mut log = vec![0u8; size.max(1)];
        // SAFETY: log has room for `size` bytes as NVRTC asked.
        let _ = unsafe { nsys::nvrtcGetProgramLog(prog, log.as_mut_ptr().cast()) };
        let text = String::from_utf8_lossy(&log)
            .trim_end_matches('\0')
            .to_string();
        Ok(NvrtcOutcome::Failed(rc as i32, text))
    } else {
        let mut size = 0usize;
        // SAFETY: prog is live and compiled; valid out pointer.
        let r = unsafe { nsys::nvrtcGetCUBINSize(prog, &mut size) };
        if r != ok {
            Err(("nvrtcGetCUBINSize", r as i32))
        } else {
            let mut bin = vec![0u8; size];
            // SAFETY: bin has exactly `size` bytes.
            let r = unsafe { nsys::nvrtcGetCUBIN(prog, bin.as_mut_ptr().cast()) };
            if r != ok {
                Err(("nvrtcGetCUBIN", r as i32))
            } else {
                Ok(NvrtcOutcome::Cubin(bin))
            }
        }
    };
    // SAFETY: prog is live and destroyed once.
    let _ = unsafe { nsys::nvrtcDestroyProgram(&mut prog) };
    out
}

type CaptureInfoV3 = unsafe extern "C" fn(
    CUstream,
    *mut dsys::CUstreamCaptureStatus,
    *mut dsys::cuuint64_t,
    *mut dsys::CUgraph,
    *mut *const dsys::CUgraphNode,
    *mut *const c_void,
    *mut usize,
) -> dsys::CUresult;
type CaptureInfoV2 = unsafe extern "C" fn(
    CUstream,
    *mut dsys::CUstreamCaptureStatus,
    *mut dsys::cuuint64_t,
    *mut dsys::CUgraph,
    *mut *const dsys::CUgraphNode,
    *mut usize,
) -> dsys::CUresult;

#[derive(Clone, Copy)]
enum CaptureInfo {
    V3(CaptureInfoV3),
    V2(CaptureInfoV2),
    Missing,
}

fn capture_info_fn() -> CaptureInfo {
    static F: std::sync::OnceLock<CaptureInfo> = std::sync::OnceLock::new();
    *F.get_or_init(|| {
        if !driver_present() {
            return CaptureInfo::Missing;
        }
        // SAFETY: the driver library is present; looking a symbol up calls nothing, and the
        // types match the driver's declarations of cuStreamGetCaptureInfo_v3 (12.3+) and
        // _v2 (11.3+). cudarc's own wrappers panic on a missing symbol, so look up here.
        unsafe {
            let lib = dsys::culib();
            if let Ok(f) = lib.get::<CaptureInfoV3>(b"cuStreamGetCaptureInfo_v3\0") {
                return CaptureInfo::V3(*f);
            }
            if let Ok(f) = lib.get::<CaptureInfoV2>(b"cuStreamGetCaptureInfo_v2\0") {
                return CaptureInfo::V2(*f);
            }
        }
        CaptureInfo::Missing
    })
}

/// The capture of `stream`: `None` when it is not being captured into a graph, `Some(id)`
/// (the driver's unique capture id) while it is; `Some(0)` while capturing on a driver that
/// has no `cuStreamGetCaptureInfo_v2/_v3`.
///
/// # Safety
/// `stream` must be a live stream of the current context.
pub unsafe fn capture_id(stream: CUstream) -> Result<Option<u64>, DriverError> {
    let mut status = dsys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE;
    let mut id: dsys::cuuint64_t = 0;
    use std::ptr::null_mut as null;
    let r = match capture_info_fn() {
        CaptureInfo::V3(f) => {
            // SAFETY: valid out pointers; null optional outputs are allowed by the driver;
            // the caller guarantees the stream.
            unsafe { f(stream, &mut status, &mut id, null(), null(), null(), null()) }
        }
        CaptureInfo::V2(f) => {
            // SAFETY: as above.
            unsafe { f(stream, &mut status, &mut id, null(), null(), null()) }
        }
        CaptureInfo::Missing => {
            // SAFETY: valid out pointer; the caller guarantees the stream.
            unsafe { dsys::cuStreamIsCapturing(stream, &mut status) }
        }
    };
    check(r)?;
    Ok(match status {
        dsys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE => None,
        _ => Some(id),
    })
}
