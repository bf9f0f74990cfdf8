//! `Kernels`: the NVRTC-compiled inc kernels of one device (compiled once per arch, cached
//! on disk) and the allreduce launch with its host-side validation.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cudarc::driver::sys::CUdevice_attribute as Attr;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DevicePtrMut,
    DeviceRepr,
};
use cudarc::nvrtc::Ptx;

use crate::buffers::PeerBuffers;
use crate::error::{drv, CudaError, Result};
use crate::launch::{
    self, DeviceLimits, KernelArgs, LaunchPlan, FLAG_IO_ALIGNED, FLAG_ZERO_COPY, MAX_THREADS,
};
use crate::proto::{call_sig, Algo, DType, ReduceOp, MAX_RANKS};
use crate::{source, sys};

/// Every rank's (pad, data) base addresses, indexed by rank.
type PeerAddresses = ([u64; MAX_RANKS], [u64; MAX_RANKS]);

/// Default per-wait timeout of a kernel spin.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where compiled kernels are cached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CacheMode {
    /// `$INC_CACHE_DIR`, else `$XDG_CACHE_HOME/inc`, else `$HOME/.cache/inc`.
    #[default]
    Default,
    /// This folder.
    Dir(PathBuf),
    /// Always compile, never read or write a cache.
    Off,
}

impl CacheMode {
    fn dir(&self) -> Option<PathBuf> {
        match self {
            CacheMode::Off => None,
            CacheMode::Dir(d) => Some(d.clone()),
            CacheMode::Default => default_cache_dir(),
        }
    }
}

/// The default cache folder (see [`CacheMode::Default`]).
pub fn default_cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("INC_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("inc")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("inc")))
}

/// Element types the typed API accepts.
pub trait Element: DeviceRepr {
    /// The protocol data type.
    const DTYPE: DType;
}
impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
impl Element for half::f16 {
    const DTYPE: DType = DType::F16;
}
impl Element for half::bf16 {
    const DTYPE: DType = DType::Bf16;
}

/// Per-call options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallOptions {
    /// Force a block count (must be equal on every rank); `None` = from size and device.
    pub blocks: Option<u32>,
    /// Per-wait timeout (default 10 s).
    pub timeout: Duration,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            blocks: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// One allreduce in raw device addresses (see [`Kernels::allreduce_raw`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawCall {
    /// Algorithm.
    pub algo: Algo,
    /// Element type.
    pub dtype: DType,
    /// Reduction.
    pub op: ReduceOp,
    /// Input device address (inside this rank's data area = zero-copy).
    pub input: u64,
    /// Output device address (may equal `input`).
    pub output: u64,
    /// Elements.
    pub count: u64,
    /// Options.
    pub options: CallOptions,
}

/// The compiled kernels of one device.
pub struct Kernels {
    ctx: Arc<CudaContext>,
    _module: Arc<CudaModule>,
    funcs: HashMap<(Algo, DType, ReduceOp), CudaFunction>,
    arch: (u32, u32),
    sm_count: u32,
    blocks_per_sm: u32,
    from_cache: bool,
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels")
            .field("arch", &self.arch)
            .field("sm_count", &self.sm_count)
            .field("blocks_per_sm", &self.blocks_per_sm)
            .field("from_cache", &self.from_cache)
            .finish()
    }
}

/// Open device `ordinal`'s primary context, with a clear error (not a panic) when there is
/// no CUDA driver.
pub fn open_device(ordinal: usize) -> Result<Arc<CudaContext>> {
    if !sys::driver_present() {
        return Err(CudaError::NoDriver);
    }
    CudaContext::new(ordinal).map_err(drv("cuDevicePrimaryCtxRetain"))
}

impl Kernels {
    /// Compile (or load from the default cache) the kernels for `ctx`'s device.
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Self> {
        Self::load_with(ctx, &CacheMode::Default)
    }

    /// [`Kernels::load`] with an explicit cache mode.
    pub fn load_with(ctx: &Arc<CudaContext>, cache: &CacheMode) -> Result<Self> {
        let attr = |a: Attr, name: &'static str| -> Result<u32> {
            let v = ctx.attribute(a).map_err(drv(name))?;
            Ok(u32::try_from(v).unwrap_or(0))
        };
        let major = attr(
            Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
            "cuDeviceGetAttribute(cc major)",
        )?;
        let minor = attr(
            Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
            "cuDeviceGetAttribute(cc minor)",
        )?;
        let sm_count = attr(
            Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            "cuDeviceGetAttribute(SM count)",
        )?;
        if major < 7 {
            return Err(CudaError::Unsupported(format!(
                "compute capability {major}.{minor}: the inc kernels need sm_70 or newer (system-scope acquire/release)"
            )));
        }
        let arch = (major, minor);
        let src = source::assemble();
        // SAFETY: libcuda is loaded (a context exists).
        let driver = unsafe { sys::driver_version() }.map_err(drv("cuDriverGetVersion"))?;
        if !sys::nvrtc_present() {
            return Err(CudaError::NoNvrtc);
        }
        // SAFETY: libnvrtc is present (checked above).
        let nvrtc = unsafe { sys::nvrtc_version() }.map_err(|code| CudaError::Nvrtc {
            op: "nvrtcVersion",
            code,
        })?;
        let file = source::cache_file_name(&src, arch, driver, nvrtc);
        let cache_path = cache.dir().map(|d| d.join(&file));

        let mut from_cache = false;
        let mut module = None;
        if let Some(p) = &cache_path {
            if let Ok(bin) = std::fs::read(p) {
                if let Ok(m) = ctx.load_module(Ptx::from_binary(bin)) {
                    module = Some(m);
                    from_cache = true;
                }
            }
        }
        let module = match module {
            Some(m) => m,
            None => {
                let bin = compile(&src, arch)?;
                if let Some(p) = &cache_path {
                    write_cache(p, &bin);
                }
                ctx.load_module(Ptx::from_binary(bin))
                    .map_err(drv("cuModuleLoadData"))?
            }
        };

        let mut funcs = HashMap::new();
        let mut blocks_per_sm = u32::MAX;
        for algo in Algo::ALL {
            for dtype in DType::ALL {
                for op in ReduceOp::ALL {
                    let name = source::entry_name(algo, dtype, op);
                    let f = module
                        .load_function(&name)
                        .map_err(drv("cuModuleGetFunction"))?;
                    // SAFETY: f is a live kernel of the module loaded above.
                    let occ = unsafe { sys::occupancy(f.cu_function(), MAX_THREADS) }
                        .map_err(drv("cuOccupancyMaxActiveBlocksPerMultiprocessor"))?;
                    blocks_per_sm = blocks_per_sm.min(occ);
                    funcs.insert((algo, dtype, op), f);
                }
            }
        }
        Ok(Kernels {
            ctx: ctx.clone(),
            _module: module,
            funcs,
            arch,
            sm_count,
            blocks_per_sm,
            from_cache,
        })
    }

    /// Compute capability (major, minor).
    pub fn arch(&self) -> (u32, u32) {
        self.arch
    }
    /// Streaming multiprocessors of the device.
    pub fn sm_count(&self) -> u32 {
        self.sm_count
    }
    /// Co-resident blocks per SM of the heaviest kernel at 512 threads.
    pub fn blocks_per_sm(&self) -> u32 {
        self.blocks_per_sm
    }
    /// Whether the module came from the disk cache.
    pub fn loaded_from_cache(&self) -> bool {
        self.from_cache
    }

    /// The launch configuration a call would use (same inputs give the same plan on every
    /// rank of identical GPUs).
    pub fn plan(
        &self,
        bufs: &PeerBuffers,
        algo: Algo,
        dtype: DType,
        count: u64,
        blocks: Option<u32>,
    ) -> Result<LaunchPlan> {
        let limits = DeviceLimits {
            sm_count: self.sm_count,
            blocks_per_sm: self.blocks_per_sm,
            ranks_on_device: bufs.ranks_on_device(),
        };
        launch::plan(algo, dtype, count, bufs.world() as u32, &limits, blocks)
    }

    /// Validate a call and build its kernel arguments (no device access).
    pub fn prepare(&self, bufs: &PeerBuffers, call: &RawCall) -> Result<(KernelArgs, LaunchPlan)> {
        if call.algo == Algo::PushOneShot {
            return self.prepare_push(
                bufs,
                call.dtype,
                call.op,
                call.input,
                call.output,
                call.count,
                call.options,
            );
        }
        let ((pads, data), bytes) =
            self.check_io(bufs, call.dtype, call.input, call.output, call.count)?;
        let timeout_ns = timeout_ns(call.options.timeout)?;
        let own_data = bufs.data_ptr();
        let data_len = 2 * bufs.half_bytes();
        let zero_copy = call.input >= own_data && call.input < own_data + data_len;
        let mut flags = 0;
        let mut zc_offset = 0;
        if zero_copy {
            zc_offset = call.input - own_data;
            let need = launch::chunks(call.dtype, call.count)
                .unwrap_or(u64::MAX)
                .saturating_mul(16);
            if matches!(call.algo, Algo::Hcm | Algo::TwoShot) {
                return Err(CudaError::InvalidArgument(format!(
                    "{} has no zero-copy variant (peers store into the symmetric buffer during the call): pass an input outside it, or use one-shot",
                    call.algo
                )));
            }
            if zc_offset % 16 != 0 || zc_offset.saturating_add(need) > data_len {
                return Err(CudaError::InvalidArgument(format!(
                    "zero-copy input at offset {zc_offset} (+{need} bytes) must be 16-byte aligned and inside the {data_len}-byte symmetric data area"
                )));
            }
            let overlap = call.output < call.input + bytes && call.input < call.output + bytes;
            if call.algo == Algo::OneShot && overlap {
                return Err(CudaError::InvalidArgument(
                    "zero-copy one-shot cannot write its output over its input (peers still read it); use two-shot or a separate output".into(),
                ));
            }
            flags |= FLAG_ZERO_COPY;
        } else {
            launch::check_capacity(call.algo, call.dtype, call.count, bufs.half_bytes())?;
        }
        if call.input % 16 == 0 && call.output % 16 == 0 {
            flags |= FLAG_IO_ALIGNED;
        }
        let mut hcm = [0u32; 4];
        if call.algo == Algo::Hcm {
            hcm = bufs.hcm().ok_or_else(|| {
                CudaError::InvalidArgument(
                    "hcm needs the hybrid-cube-mesh row: PeerBuffers::set_hcm".into(),
                )
            })?;
        }
        let plan = self.plan(bufs, call.algo, call.dtype, call.count, call.options.blocks)?;
        let world = bufs.world() as u32;
        let args = KernelArgs {
            pad: pads,
            data,
            input: call.input,
            output: call.output,
            count: call.count,
            half_bytes: bufs.half_bytes(),
            zc_offset,
            timeout_ns,
            host: bufs.host_block(),
            rank: bufs.rank() as u32,
            world,
            sig: call_sig(call.algo, call.dtype, call.op, call.count),
            flags,
            hcm,
            scale: if call.op == ReduceOp::Avg {
                1.0 / world as f32
            } else {
                1.0
            },
            push_slot_bytes: 0,
        };
        Ok((args, plan))
    }

    /// The checks every call starts with, in order: a live communicator, buffers of this
    /// device, a byte size that fits u64, element-aligned non-null input and output.
    /// Gives the ranks' (pad, data) addresses and the call's byte size.
    fn check_io(
        &self,
        bufs: &PeerBuffers,
        dtype: DType,
        input: u64,
        output: u64,
        count: u64,
    ) -> Result<(PeerAddresses, u64)> {
        if let Some(r) = bufs.poisoned() {
            return Err(CudaError::Poisoned(r));
        }
        if !Arc::ptr_eq(bufs.context(), &self.ctx)
            && bufs.context().cu_device() != self.ctx.cu_device()
        {
            return Err(CudaError::InvalidArgument(
                "buffers and kernels belong to different devices".into(),
            ));
        }
        let addresses = bufs.addresses()?;
        let es = dtype.size() as u64;
        let bytes = launch::tensor_bytes(dtype, count).ok_or_else(|| {
            CudaError::InvalidArgument(format!("{count} elements overflow u64 bytes"))
        })?;
        if input % es != 0 || output % es != 0 {
            return Err(CudaError::InvalidArgument(format!(
                "input {input:#x} / output {output:#x} not aligned to the {es}-byte {dtype}"
            )));
        }
        if input == 0 || output == 0 {
            return Err(CudaError::InvalidArgument("null input or output".into()));
        }
        Ok((addresses, bytes))
    }

    /// Validate a push one-shot call and build its kernel arguments (no device access).
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_push(
        &self,
        bufs: &PeerBuffers,
        dtype: DType,
        op: ReduceOp,
        input: u64,
        output: u64,
        count: u64,
        options: CallOptions,
    ) -> Result<(KernelArgs, LaunchPlan)> {
        let ((pads, data), bytes) = self.check_io(bufs, dtype, input, output, count)?;
        let slot = bufs.push_slot_bytes();
        let cap = launch::push_capacity(slot);
        if bytes > cap {
            return Err(CudaError::InvalidArgument(format!(
                "push-one-shot carries at most {cap} bytes per rank (half the {slot}-byte LL slot); {bytes} bytes requested: use one-shot or two-shot"
            )));
        }
        let timeout_ns = timeout_ns(options.timeout)?;
        let mut flags = 0;
        if input % 16 == 0 && output % 16 == 0 {
            flags |= FLAG_IO_ALIGNED;
        }
        let plan = self.plan(bufs, Algo::PushOneShot, dtype, count, options.blocks)?;
        let world = bufs.world() as u32;
        let args = KernelArgs {
            pad: pads,
            data,
            input,
            output,
            count,
            half_bytes: bufs.half_bytes(),
            zc_offset: 0,
            timeout_ns,
            host: bufs.host_block(),
            rank: bufs.rank() as u32,
            world,
            sig: inc_sim::push::push_call_sig(dtype, op, count),
            flags,
            hcm: [0; 4],
            scale: if op == ReduceOp::Avg {
                1.0 / world as f32
            } else {
                1.0
            },
            push_slot_bytes: u32::try_from(slot).unwrap_or(u32::MAX),
        };
        Ok((args, plan))
    }

    /// Binds the context to this thread and enqueues `f` on `stream` per `plan`.
    ///
    /// # Safety
    /// `f` takes one IncArgs parameter (KernelArgs mirrors it, layout tested) and the
    /// addresses in `args` stay valid until the kernel completes.
    unsafe fn launch(
        &self,
        f: &CudaFunction,
        plan: &LaunchPlan,
        stream: &CudaStream,
        args: &KernelArgs,
    ) -> Result<()> {
        self.ctx.bind_to_thread().map_err(drv("cuCtxSetCurrent"))?;
        // SAFETY: per this function's contract.
        unsafe {
            sys::launch(
                f.cu_function(),
                plan.blocks,
                plan.threads,
                stream.cu_stream(),
                args,
            )
        }
        .map_err(drv("cuLaunchKernel"))
    }

    /// Enqueue one push one-shot allreduce (PROTOCOL.md "push one-shot": LL lines, no
    /// barrier, the data carries its own readiness) of at most half
    /// [`PeerBuffers::push_slot_bytes`] bytes per rank. Asynchronous and graph-capturable
    /// like [`Kernels::allreduce_raw`]; a count of 0 is a no-op.
    ///
    /// # Safety
    /// As [`Kernels::allreduce_raw`]: live device addresses of `count` elements, the same
    /// call on every rank in the same order on a stream that orders its calls.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn push_allreduce_raw(
        &self,
        bufs: &PeerBuffers,
        stream: &CudaStream,
        dtype: DType,
        op: ReduceOp,
        input: u64,
        output: u64,
        count: u64,
        options: CallOptions,
    ) -> Result<()> {
        if count == 0 {
            return empty_call(bufs);
        }
        let (args, plan) = self.prepare_push(bufs, dtype, op, input, output, count, options)?;
        let f = self
            .funcs
            .get(&(Algo::PushOneShot, dtype, op))
            .ok_or_else(|| {
                CudaError::Launch(format!("push-one-shot kernel for {dtype} {op} missing"))
            })?;
        // SAFETY: f's parameter is IncArgs; the addresses in args are live per this
        // function's contract and PeerBuffers.
        unsafe { self.launch(f, &plan, stream, &args) }
    }

    /// Typed push one-shot from `input` into `output` (may alias only through
    /// [`Kernels::push_allreduce_in_place`]); `count` elements (`None` = input length).
    #[allow(clippy::too_many_arguments)]
    pub fn push_allreduce<T: Element>(
        &self,
        bufs: &PeerBuffers,
        stream: &CudaStream,
        op: ReduceOp,
        input: &CudaSlice<T>,
        output: &mut CudaSlice<T>,
        count: Option<u64>,
        options: CallOptions,
    ) -> Result<()> {
        let n = checked_count(count, input.len(), output.len())?;
        let (ip, _ri) = input.device_ptr(stream);
        let (op_, _ro) = output.device_ptr_mut(stream);
        // SAFETY: both slices hold at least n elements and are borrowed for this call.
        unsafe { self.push_allreduce_raw(bufs, stream, T::DTYPE, op, ip, op_, n, options) }
    }

    /// Typed in-place push one-shot of the first `count` elements of `data` (`None` = all).
    pub fn push_allreduce_in_place<T: Element>(
        &self,
        bufs: &PeerBuffers,
        stream: &CudaStream,
        op: ReduceOp,
        data: &mut CudaSlice<T>,
        count: Option<u64>,
        options: CallOptions,
    ) -> Result<()> {
        let n = checked_count_in_place(count, data.len())?;
        let (p, _r) = data.device_ptr_mut(stream);
        // SAFETY: the slice holds at least n elements and is borrowed for this call.
        unsafe { self.push_allreduce_raw(bufs, stream, T::DTYPE, op, p, p, n, options) }
    }

    /// Enqueue one allreduce on `stream` (asynchronous; graph-capturable: no sync, no
    /// allocation, no flag reset). A count of 0 is a no-op on every rank.
    ///
    /// # Safety
    /// `input` and `output` must be device addresses of at least `count` elements that stay
    /// valid until the kernel completes; every rank must make the same call (same algo,
    /// dtype, op, count, blocks) in the same order on a stream that orders its calls.
    pub unsafe fn allreduce_raw(
        &self,
        bufs: &PeerBuffers,
        stream: &CudaStream,
        call: &RawCall,
    ) -> Result<()> {
        if call.count == 0 {
            return empty_call(bufs);
        }
        if call.algo == Algo::PushOneShot {
            // SAFETY: forwarded contract (same as this function's).
            return unsafe {
                self.push_allreduce_raw(
                    bufs,
                    stream,
                    call.dtype,
                    call.op,
                    call.input,
                    call.output,
                    call.count,
                    call.options,
                )
            };
        }
        let (args, plan) = self.prepare(bufs, call)?;
        let f = self
            .funcs
            .get(&(call.algo, call.dtype, call.op))
            .ok_or_else(|| {
                CudaError::Launch(format!(
                    "kernel for {} {} {} missing",
                    call.algo, call.dtype, call.op
                ))
            })?;
        // SAFETY: f's parameter is IncArgs; the addresses in args are live per this
        // function's contract and PeerBuffers.
        unsafe { self.launch(f, &plan, stream, &args) }
    }

    /// Typed allreduce from `input` into `output` (may not alias; see
    /// [`Kernels::allreduce_in_place`]). Reduces `count` elements (`None` = input length).
    #[allow(clippy::too_many_arguments)]
    pub fn allreduce<T: Element>(
        &self,
        bufs: &PeerBuffers,
        stream: &CudaStream,
        algo: Algo,
        op: ReduceOp,
        input: &CudaSlice<T>,
        output: &mut CudaSlice<T>,
        count: Option<u64>,
        options: CallOptions,
    ) -> Result<()> {
        let n = checked_count(count, input.len(), output.len())?;
        let (ip, _ri) = input.device_ptr(stream);
        let (op_, _ro) = output.device_ptr_mut(stream);
        let call = RawCall {
            algo,
            dtype: T::DTYPE,
            op,
            input: ip,
            output: op_,
            count: n,
            options,
        };
        // SAFETY: both slices hold at least n elements and are borrowed for this call; the
        // SyncOnDrop guards order later frees after the kernel on this stream.
        unsafe { self.allreduce_raw(bufs, stream, &call) }
    }

    /// Typed in-place allreduce of the first `count` elements of `data` (`None` = all).
    #[allow(clippy::too_many_arguments)]
    pub fn allreduce_in_place<T: Element>(
        &self,
        bufs: &PeerBuffers,
        stream: &CudaStream,
        algo: Algo,
        op: ReduceOp,
        data: &mut CudaSlice<T>,
        count: Option<u64>,
        options: CallOptions,
    ) -> Result<()> {
        let n = checked_count_in_place(count, data.len())?;
        let (p, _r) = data.device_ptr_mut(stream);
        let call = RawCall {
            algo,
            dtype: T::DTYPE,
            op,
            input: p,
            output: p,
            count: n,
            options,
        };
        // SAFETY: the slice holds at least n elements and is borrowed for this call.
        unsafe { self.allreduce_raw(bufs, stream, &call) }
    }
}

/// The kernel's timeout in nanoseconds (saturating); zero is an error.
fn timeout_ns(timeout: Duration) -> Result<u64> {
    let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    if ns == 0 {
        return Err(CudaError::InvalidArgument("timeout must be > 0".into()));
    }
    Ok(ns)
}

/// A call of 0 elements: a no-op, unless the communicator is poisoned.
fn empty_call(bufs: &PeerBuffers) -> Result<()> {
    match bufs.poisoned() {
        Some(r) => Err(CudaError::Poisoned(r)),
        None => Ok(()),
    }
}

/// The element count of an out-of-place typed call (`None` = input length), checked
/// against both slices.
fn checked_count(count: Option<u64>, input_len: usize, output_len: usize) -> Result<u64> {
    let n = count.unwrap_or(input_len as u64);
    if n > input_len as u64 || n > output_len as u64 {
        return Err(CudaError::InvalidArgument(format!(
            "count {n} exceeds input ({input_len}) or output ({output_len}) length"
        )));
    }
    Ok(n)
}

/// The element count of an in-place typed call (`None` = the whole slice), checked.
fn checked_count_in_place(count: Option<u64>, len: usize) -> Result<u64> {
    let n = count.unwrap_or(len as u64);
    if n > len as u64 {
        return Err(CudaError::InvalidArgument(format!(
            "count {n} exceeds length {len}"
        )));
    }
    Ok(n)
}

/// NVRTC-compile the program to a CUBIN for `arch`; errors carry the NVRTC log.
fn compile(src: &str, arch: (u32, u32)) -> Result<Vec<u8>> {
    let arch_s = format!("sm_{}{}", arch.0, arch.1);
    let opts = vec![
        format!("--gpu-architecture={arch_s}"),
        "--std=c++17".to_string(),
        "--fmad=false".to_string(),
        "-lineinfo".to_string(),
    ];
    // SAFETY: the caller checked nvrtc_present().
    match unsafe { sys::nvrtc_compile_cubin(src, "inc_kernels.cu", &opts) } {
        Ok(sys::NvrtcOutcome::Cubin(b)) => Ok(b),
        Ok(sys::NvrtcOutcome::Failed(code, log)) => Err(CudaError::Compile {
            arch: arch_s,
            log: format!("(nvrtc status {code})\n{log}"),
        }),
        Err((op, code)) => Err(CudaError::Nvrtc { op, code }),
    }
}

/// Best-effort atomic cache write (temp file + rename); a failure only costs a recompile.
fn write_cache(path: &std::path::Path, bin: &[u8]) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    if std::fs::write(&tmp, bin).is_ok() && std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_prefers_inc_cache_dir() {
        // Only reads the environment; does not touch CUDA.
        let d = CacheMode::Dir(PathBuf::from("/x/y")).dir();
        assert_eq!(d, Some(PathBuf::from("/x/y")));
        assert_eq!(CacheMode::Off.dir(), None);
    }

    #[test]
    fn open_device_without_driver_is_an_error_not_a_panic() {
        if sys::driver_present() {
            eprintln!("skip: a CUDA driver is present here; this test covers machines without one");
            return;
        }
        assert!(matches!(open_device(0), Err(CudaError::NoDriver)));
    }
}
