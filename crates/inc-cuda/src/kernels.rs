//! `Kernels`: the NVRTC-compiled inc kernels of one device (each (algorithm, dtype, op)
//! instance compiled alone on first use or by a background warming thread, cached on disk
//! per instance: see `compile` and `cache`) and the allreduce launch with its host-side
//! validation.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use cudarc::driver::sys::CUdevice_attribute as Attr;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr,
};
use cudarc::nvrtc::Ptx;

use crate::buffers::PeerBuffers;
use crate::compile::{self, Job, Origin, Warmed};
use crate::error::{drv, CudaError, Result};
use crate::launch::{
    self, DeviceLimits, KernelArgs, LaunchPlan, ZeroCopyForm, FLAG_IO_ALIGNED, FLAG_ZC_PUSH,
    FLAG_ZERO_COPY, MAX_THREADS,
};
use crate::proto::{call_sig, Algo, DType, ReduceOp, MAX_RANKS, ZERO_COPY_SIG};
use crate::symmetric::SymmetricMemory;
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

/// One kernel instance: (algorithm, element type, reduction).
pub type Instance = (Algo, DType, ReduceOp);

/// Which instances to compile in the background right after [`Kernels::load`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Warm {
    /// From `INC_KERNEL_WARM`: `off` (or `none`, `0`), `all`, or unset / `default` for
    /// [`Warm::DEFAULT_LIST`].
    #[default]
    FromEnv,
    /// Nothing in the background: every instance compiles at its first use.
    Off,
    /// [`Warm::DEFAULT_LIST`].
    Default,
    /// Every instance.
    All,
    /// These instances, in this order.
    List(Vec<Instance>),
}

impl Warm {
    /// What a job surely uses: bf16 and f32 sum of the paths `auto` picks on a single host
    /// (push one-shot, one-shot, two-shot), smallest messages first.
    pub const DEFAULT_LIST: [Instance; 6] = [
        (Algo::PushOneShot, DType::Bf16, ReduceOp::Sum),
        (Algo::OneShot, DType::Bf16, ReduceOp::Sum),
        (Algo::TwoShot, DType::Bf16, ReduceOp::Sum),
        (Algo::PushOneShot, DType::F32, ReduceOp::Sum),
        (Algo::OneShot, DType::F32, ReduceOp::Sum),
        (Algo::TwoShot, DType::F32, ReduceOp::Sum),
    ];

    /// The instances to warm, in order.
    pub fn instances(&self) -> Vec<Instance> {
        match self {
            Warm::FromEnv => {
                let v = std::env::var("INC_KERNEL_WARM").unwrap_or_default();
                match v.trim() {
                    "off" | "none" | "0" => Vec::new(),
                    "all" => Warm::All.instances(),
                    _ => Warm::Default.instances(),
                }
            }
            Warm::Off => Vec::new(),
            Warm::Default => Warm::DEFAULT_LIST.to_vec(),
            Warm::All => {
                let mut v = Warm::DEFAULT_LIST.to_vec();
                for i in all_instances() {
                    if !v.contains(&i) {
                        v.push(i);
                    }
                }
                v
            }
            Warm::List(l) => l.clone(),
        }
    }
}

/// Every (algorithm, dtype, op) instance.
pub fn all_instances() -> Vec<Instance> {
    let mut v = Vec::new();
    for algo in Algo::ALL {
        for dtype in DType::ALL {
            for op in ReduceOp::ALL {
                v.push((algo, dtype, op));
            }
        }
    }
    v
}

/// How [`Kernels::load_opts`] builds and caches the kernels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Disk cache folder.
    pub cache: CacheMode,
    /// Background warming.
    pub warm: Warm,
}

/// One loaded instance.
struct Loaded {
    func: CudaFunction,
    blocks_per_sm: u32,
    origin: Origin,
}

/// The lazily loaded state of one instance.
#[derive(Default)]
struct Slot {
    init: Mutex<()>,
    loaded: OnceLock<Loaded>,
}

/// The kernels of one device. Each (algorithm, dtype, op) instance is compiled by NVRTC as
/// its own small program when first needed ([`Kernels::function`]; every launch goes
/// through it), cached on disk per instance, and shared with other threads and processes
/// compiling the same instance at the same time. A background thread warms
/// [`Warm::DEFAULT_LIST`] after [`Kernels::load`].
pub struct Kernels {
    ctx: Arc<CudaContext>,
    slots: HashMap<Instance, Slot>,
    arch: (u32, u32),
    sm_count: u32,
    driver: i32,
    nvrtc: (i32, i32),
    dir: Option<PathBuf>,
    options: Arc<Vec<String>>,
    warmed: Warmed<Instance>,
    warm_thread: Mutex<Option<JoinHandle<()>>>,
    cancel: Arc<AtomicBool>,
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels")
            .field("arch", &self.arch)
            .field("sm_count", &self.sm_count)
            .field("driver", &self.driver)
            .field("nvrtc", &self.nvrtc)
            .field("loaded", &self.loaded_instances())
            .finish()
    }
}

impl Drop for Kernels {
    fn drop(&mut self) {
        // The warming thread finishes its current compile (which still lands in the disk
        // cache) and stops; it is not joined, so dropping never waits for NVRTC.
        self.cancel.store(true, Ordering::Relaxed);
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Kernels {
    /// The kernels of `ctx`'s device with the default cache folder; compiles nothing now
    /// (each instance compiles or loads from the cache at its first use) and starts the
    /// background warming of `INC_KERNEL_WARM` (default: [`Warm::DEFAULT_LIST`]). Fails
    /// early when the device is too old or NVRTC is missing.
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Self> {
        Self::load_with(ctx, &CacheMode::Default)
    }

    /// [`Kernels::load`] with an explicit cache mode.
    pub fn load_with(ctx: &Arc<CudaContext>, cache: &CacheMode) -> Result<Self> {
        Self::load_opts(
            ctx,
            &LoadOptions {
                cache: cache.clone(),
                warm: Warm::FromEnv,
            },
        )
    }

    /// [`Kernels::load`] with explicit options.
    pub fn load_opts(ctx: &Arc<CudaContext>, opts: &LoadOptions) -> Result<Self> {
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
        let k = Kernels {
            ctx: ctx.clone(),
            slots: all_instances()
                .into_iter()
                .map(|i| (i, Slot::default()))
                .collect(),
            arch,
            sm_count,
            driver,
            nvrtc,
            dir: opts.cache.dir(),
            options: Arc::new(source::compile_options(&format!("sm_{major}{minor}"))),
            warmed: Arc::default(),
            warm_thread: Mutex::new(None),
            cancel: Arc::default(),
        };
        k.warm(&opts.warm.instances());
        Ok(k)
    }

    /// Start compiling `instances` (in order) on a background thread, unless one is still
    /// running from an earlier call (then this does nothing). First use of an instance that
    /// the thread is compiling waits for that compile instead of starting another.
    pub fn warm(&self, instances: &[Instance]) {
        let mut t = lock(&self.warm_thread);
        if t.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let jobs: Vec<(Instance, Job)> = instances
            .iter()
            .filter(|i| self.slots.get(i).is_some_and(|s| s.loaded.get().is_none()))
            .map(|&i| (i, self.job(i)))
            .collect();
        if jobs.is_empty() {
            return;
        }
        *t = compile::spawn_warm(jobs, self.warmed.clone(), self.cancel.clone());
    }

    /// Wait for the background warming thread (if any) to finish.
    pub fn wait_warm(&self) {
        let h = lock(&self.warm_thread).take();
        if let Some(h) = h {
            let _ = h.join();
        }
    }

    /// The NVRTC program and cache key of `inst`: one instance alone, or the whole program
    /// if instances.cu no longer has the macros this relies on.
    fn job(&self, inst: Instance) -> Job {
        let (algo, dtype, op) = inst;
        let (label, src) = match source::instance_source(algo, dtype, op) {
            Ok(s) => (source::entry_name(algo, dtype, op), s),
            Err(_) => ("all".to_string(), source::assemble()),
        };
        let key = source::instance_cache_key(
            &label,
            &src,
            &self.options,
            self.arch,
            self.driver,
            self.nvrtc,
        );
        Job {
            key,
            source: Arc::new(src),
            options: self.options.clone(),
            arch: self.arch,
            dir: self.dir.clone(),
        }
    }

    /// The kernel of one instance, compiled (or loaded from the disk cache, or taken from
    /// the warming thread) on first use; later calls return it at once.
    pub fn function(&self, algo: Algo, dtype: DType, op: ReduceOp) -> Result<&CudaFunction> {
        Ok(&self.instance(algo, dtype, op)?.func)
    }

    /// Co-resident blocks per SM of one instance at [`MAX_THREADS`] threads (occupancy API);
    /// compiles the instance on first use. Launch plans of that instance use it.
    pub fn occupancy(&self, algo: Algo, dtype: DType, op: ReduceOp) -> Result<u32> {
        Ok(self.instance(algo, dtype, op)?.blocks_per_sm)
    }

    /// Where the loaded image of an instance came from (`None`: not loaded yet).
    pub fn origin(&self, algo: Algo, dtype: DType, op: ReduceOp) -> Option<Origin> {
        self.slots
            .get(&(algo, dtype, op))
            .and_then(|s| s.loaded.get())
            .map(|l| l.origin)
    }

    /// The instances loaded so far.
    pub fn loaded_instances(&self) -> Vec<Instance> {
        let mut v: Vec<Instance> = self
            .slots
            .iter()
            .filter(|(_, s)| s.loaded.get().is_some())
            .map(|(i, _)| *i)
            .collect();
        v.sort_by_key(|(a, d, o)| (a.code(), d.code(), o.code()));
        v
    }

    /// The cache file of an instance (`None` when the cache is off).
    pub fn cache_path(&self, algo: Algo, dtype: DType, op: ReduceOp) -> Option<PathBuf> {
        let job = self.job((algo, dtype, op));
        job.dir.map(|d| d.join(job.key))
    }

    fn instance(&self, algo: Algo, dtype: DType, op: ReduceOp) -> Result<&Loaded> {
        let slot = self
            .slots
            .get(&(algo, dtype, op))
            .ok_or_else(|| CudaError::Launch(format!("no kernel instance {algo} {dtype} {op}")))?;
        if let Some(l) = slot.loaded.get() {
            return Ok(l);
        }
        let _init = lock(&slot.init);
        if let Some(l) = slot.loaded.get() {
            return Ok(l);
        }
        let loaded = self.load_instance((algo, dtype, op))?;
        Ok(slot.loaded.get_or_init(|| loaded))
    }

    /// Get the image (warmed, shared, cached or compiled), load it into the context, look up
    /// the entry and its occupancy. A cached image the driver rejects is compiled afresh.
    fn load_instance(&self, inst: Instance) -> Result<Loaded> {
        let (algo, dtype, op) = inst;
        let job = self.job(inst);
        let warmed = lock(&self.warmed).remove(&inst);
        let (bin, mut origin) = match warmed {
            Some(img) => img,
            None => compile::obtain(&job, false)?,
        };
        let module = match self.ctx.load_module(Ptx::from_binary(bin.to_vec())) {
            Ok(m) => m,
            Err(e) if origin == Origin::Compiled => return Err(drv("cuModuleLoadData")(e)),
            Err(_) => {
                // a checksum-valid file the driver rejects: compile afresh, overwrite it
                let (bin, o) = compile::obtain(&job, true)?;
                origin = o;
                self.ctx
                    .load_module(Ptx::from_binary(bin.to_vec()))
                    .map_err(drv("cuModuleLoadData"))?
            }
        };
        let func = module
            .load_function(&source::entry_name(algo, dtype, op))
            .map_err(drv("cuModuleGetFunction"))?;
        // SAFETY: func is a live kernel of the module loaded above (its context is bound
        // to this thread by load_module).
        let blocks_per_sm = unsafe { sys::occupancy(func.cu_function(), MAX_THREADS) }
            .map_err(drv("cuOccupancyMaxActiveBlocksPerMultiprocessor"))?;
        Ok(Loaded {
            func,
            blocks_per_sm,
            origin,
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
    /// The smallest [`Kernels::occupancy`] of the instances loaded so far (0 if none);
    /// informational: each launch plans with its own instance's value.
    pub fn blocks_per_sm(&self) -> u32 {
        self.slots
            .values()
            .filter_map(|s| s.loaded.get().map(|l| l.blocks_per_sm))
            .min()
            .unwrap_or(0)
    }
    /// Whether every instance loaded so far came from the disk cache (false if none).
    pub fn loaded_from_cache(&self) -> bool {
        let origins: Vec<Origin> = self
            .slots
            .values()
            .filter_map(|s| s.loaded.get().map(|l| l.origin))
            .collect();
        !origins.is_empty() && origins.iter().all(|o| *o == Origin::DiskCache)
    }

    /// The launch configuration a call would use (same inputs give the same plan on every
    /// rank of identical GPUs: it depends on the instance's own occupancy, never on which
    /// other instances happen to be loaded). Compiles the instance on first use.
    pub fn plan(
        &self,
        bufs: &PeerBuffers,
        algo: Algo,
        dtype: DType,
        op: ReduceOp,
        count: u64,
        blocks: Option<u32>,
    ) -> Result<LaunchPlan> {
        let limits = DeviceLimits {
            sm_count: self.sm_count,
            blocks_per_sm: self.occupancy(algo, dtype, op)?,
            ranks_on_device: bufs.ranks_on_device(),
        };
        let mut plan = launch::plan(algo, dtype, count, &limits, blocks)?;
        if algo == Algo::PushOneShot && blocks.is_none() && plan.blocks == 1 {
            // A block just large enough for the LL lines of a small call (measured on 2
            // and 4 H200s: 0.05-0.1 us faster at 1-2 KiB, equal above).
            let lines = launch::chunks(dtype, count).unwrap_or(0).saturating_mul(2);
            plan.threads = u32::try_from((lines.div_ceil(32) * 32).clamp(64, 512)).unwrap_or(512);
        }
        Ok(plan)
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
        let plan = self.plan(
            bufs,
            call.algo,
            call.dtype,
            call.op,
            call.count,
            call.options.blocks,
        )?;
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
            sym: [0; MAX_RANKS],
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
        let plan = self.plan(bufs, Algo::PushOneShot, dtype, op, count, options.blocks)?;
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
            sig: inc_proto::push::push_call_sig(dtype, op, count),
            flags,
            hcm: [0; 4],
            scale: if op == ReduceOp::Avg {
                1.0 / world as f32
            } else {
                1.0
            },
            push_slot_bytes: u32::try_from(slot).unwrap_or(u32::MAX),
            sym: [0; MAX_RANKS],
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
        pdl: bool,
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
                pdl,
            )
        }
        .map_err(drv("cuLaunchKernel"))
    }

    /// Whether launches on `bufs` use programmatic dependent launch: sm_90 and newer, one
    /// rank per device (virtual ranks need every rank's blocks co-resident, and a waiting
    /// dependent grid would hold SM slots), unless `INC_PDL=0`.
    pub fn pdl(&self, bufs: &PeerBuffers) -> bool {
        static ENV: OnceLock<bool> = OnceLock::new();
        let on = *ENV.get_or_init(|| std::env::var("INC_PDL").map_or(true, |v| v.trim() != "0"));
        on && self.arch.0 >= 9 && bufs.ranks_on_device() == 1
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
        let f = self.function(Algo::PushOneShot, dtype, op)?;
        // SAFETY: f's parameter is IncArgs; the addresses in args are live per this
        // function's contract and PeerBuffers.
        unsafe { self.launch(f, &plan, stream, &args, self.pdl(bufs)) }
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
        let f = self.function(call.algo, call.dtype, call.op)?;
        // SAFETY: f's parameter is IncArgs; the addresses in args are live per this
        // function's contract and PeerBuffers.
        unsafe { self.launch(f, &plan, stream, &args, self.pdl(bufs)) }
    }

    /// Validate a zero-copy two-shot call of `form` on symmetric memory and build its
    /// arguments (no device access): `count` elements of `dtype` at byte `offset` of every
    /// rank's allocation, reduced in place.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_symmetric(
        &self,
        bufs: &PeerBuffers,
        sym: &SymmetricMemory,
        form: ZeroCopyForm,
        dtype: DType,
        op: ReduceOp,
        offset: u64,
        count: u64,
        options: CallOptions,
    ) -> Result<(KernelArgs, LaunchPlan)> {
        if sym.rank() != bufs.rank() || !Arc::ptr_eq(sym.context(), bufs.context()) {
            return Err(CudaError::InvalidArgument(
                "symmetric memory and buffers belong to different ranks or devices".into(),
            ));
        }
        let input = sym.base().saturating_add(offset);
        let ((pads, _), bytes) = self.check_io(bufs, dtype, input, input, count)?;
        let end = offset.checked_add(bytes.div_ceil(16) * 16);
        if offset % 16 != 0 || end.is_none_or(|e| e > sym.bytes()) {
            return Err(CudaError::InvalidArgument(format!(
                "zero-copy two-shot of {bytes} bytes at offset {offset}: the offset must be 16-byte aligned and the call inside the {}-byte symmetric allocation",
                sym.bytes()
            )));
        }
        let tensors = sym.peer_bases()?;
        let (data, flags) = if form == ZeroCopyForm::Push {
            launch::check_capacity(Algo::TwoShot, dtype, count, bufs.half_bytes())?;
            let (_, data) = bufs.addresses()?;
            (data, FLAG_ZERO_COPY | FLAG_IO_ALIGNED | FLAG_ZC_PUSH)
        } else {
            (tensors, FLAG_ZERO_COPY | FLAG_IO_ALIGNED)
        };
        let timeout_ns = timeout_ns(options.timeout)?;
        let plan = self.plan(bufs, Algo::TwoShot, dtype, op, count, options.blocks)?;
        let world = bufs.world() as u32;
        let args = KernelArgs {
            pad: pads,
            data,
            input,
            output: input,
            count,
            half_bytes: bufs.half_bytes(),
            zc_offset: offset,
            timeout_ns,
            host: bufs.host_block(),
            rank: bufs.rank() as u32,
            world,
            sig: call_sig(Algo::TwoShot, dtype, op, count) ^ ZERO_COPY_SIG,
            flags,
            hcm: [0; 4],
            scale: if op == ReduceOp::Avg {
                1.0 / world as f32
            } else {
                1.0
            },
            push_slot_bytes: 0,
            sym: tensors,
        };
        Ok((args, plan))
    }

    /// Enqueue one zero-copy two-shot allreduce (PROTOCOL.md "two-shot, zero-copy"): in
    /// place on `count` elements at byte `offset` of every rank's symmetric allocation; no
    /// copy-in, no copy-out, no size limit but the allocation's. The form follows
    /// [`launch::zero_copy_form`]; the push form runs in pieces of the parity halves. Asynchronous and
    /// graph-capturable like [`Kernels::allreduce_raw`]; a count of 0 is a no-op.
    ///
    /// # Safety
    /// Every rank makes the same call (dtype, op, offset, count) in the same order on a
    /// stream that orders its calls, and `sym` (and the peers' allocations it maps) stay
    /// alive until the kernel completes.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn allreduce_symmetric_raw(
        &self,
        bufs: &PeerBuffers,
        sym: &SymmetricMemory,
        stream: &CudaStream,
        dtype: DType,
        op: ReduceOp,
        offset: u64,
        count: u64,
        options: CallOptions,
    ) -> Result<()> {
        if count == 0 {
            return empty_call(bufs);
        }
        // The push form needs the receive areas of the parity halves: larger calls run in
        // pieces of whole chunks (every rank cuts the same ones).
        let bytes = launch::tensor_bytes(dtype, count).unwrap_or(u64::MAX);
        let form = launch::zero_copy_form(bufs.world(), bytes);
        let piece = if form == ZeroCopyForm::Push {
            let lanes = launch::lanes(dtype);
            (launch::max_count(Algo::TwoShot, dtype, bufs.half_bytes()) / lanes * lanes).max(lanes)
        } else {
            count
        };
        let es = dtype.size() as u64;
        let mut done = 0u64;
        while done < count {
            let n = (count - done).min(piece);
            let (args, plan) =
                self.prepare_symmetric(bufs, sym, form, dtype, op, offset + done * es, n, options)?;
            let f = self.function(Algo::TwoShot, dtype, op)?;
            // SAFETY: f's parameter is IncArgs; the addresses in args are live per this
            // function's contract.
            unsafe { self.launch(f, &plan, stream, &args, self.pdl(bufs)) }?;
            done += n;
        }
        Ok(())
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
