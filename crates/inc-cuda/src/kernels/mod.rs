//! `Kernels`: the NVRTC-compiled inc kernels of one device (each (algorithm, dtype, op)
//! instance compiled alone on first use or by a background warming thread, cached on disk
//! per instance: see `compile` and `cache`) and the allreduce launch with its host-side
//! validation.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

mod calls;
mod prepare;

/// Every rank's (pad, data) base addresses, indexed by rank.
type PeerAddresses = ([u64; MAX_RANKS], [u64; MAX_RANKS]);

/// Default per-wait timeout of a kernel spin: 30 s, also inc-comm's default timeout of
/// every wait (`INC_TIMEOUT_MS`, `inc_comm::DEFAULT_TIMEOUT_MS`), long enough for a peer
/// that compiles its kernel at first use.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// Per-wait timeout (default [`DEFAULT_TIMEOUT`], 30 s).
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

/// Longest wait of a dropped [`Kernels`] for its warming thread's compile in flight.
pub const WARM_STOP_WAIT: Duration = Duration::from_secs(10);

impl Drop for Kernels {
    fn drop(&mut self) {
        // The warming thread finishes its current compile (which still lands in the disk
        // cache) and stops. Wait for it (bounded): a process that exits while that thread is
        // inside NVRTC runs NVRTC's static destructors under it and aborts ("free(): invalid
        // size" at the exit of a bench rank, GPU run 15b).
        self.cancel.store(true, Ordering::Relaxed);
        let h = lock(&self.warm_thread).take();
        if let Some(h) = h {
            let deadline = Instant::now() + WARM_STOP_WAIT;
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
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
