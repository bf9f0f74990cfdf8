//! `Kernels`: the inc kernels of one device (each (algorithm, dtype, op) instance taken
//! from the CUBINs embedded in the binary, or compiled alone by NVRTC on first use or by a
//! background warming thread and cached on disk per instance: see `load`, `embedded`,
//! `compile` and `cache`) and the allreduce launch with its host-side validation.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr,
};

use crate::buffers::PeerBuffers;
use crate::compile::{Origin, Warmed};
use crate::embedded::Embedded;
use crate::error::{drv, CudaError, Result};
use crate::launch::{
    self, DeviceLimits, KernelArgs, LaunchPlan, ZeroCopyForm, FLAG_DEFER_GATHER, FLAG_IO_ALIGNED,
    FLAG_LINES, FLAG_PREV_GATHER, FLAG_ZC_PUSH, FLAG_ZERO_COPY,
};
use crate::proto::{call_sig, Algo, DType, ReduceOp, MAX_RANKS, ZERO_COPY_SIG};
use crate::symmetric::SymmetricMemory;
use crate::sys;

mod calls;
mod load;
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
    /// Where this call sits in a copy-in two-shot cut in pieces ([`Piece::WHOLE`] for a
    /// call of its own).
    pub piece: Piece,
}

/// A copy-in two-shot piece's link to its neighbours (PROTOCOL.md "Deferred gather"): the
/// pieces of one call are consecutive calls on consecutive parts of the input and output,
/// all of the same size but the last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Piece {
    /// Not the last piece: skip the Gather (the next piece runs it).
    pub defer_gather: bool,
    /// Not the first piece: the previous piece's elements (its output ends where this
    /// piece's begins), whose Gather this piece runs beside its scatter; 0 for the first.
    pub prev_count: u64,
}

impl Piece {
    /// A call of its own (not in pieces).
    pub const WHOLE: Piece = Piece {
        defer_gather: false,
        prev_count: 0,
    };
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
    /// Whether to take images from the CUBINs embedded in the binary (default: on unless
    /// `INC_EMBEDDED_CUBINS=0`).
    pub embedded: Embedded,
}

/// How the first use of one instance got its kernel (see [`Kernels::take_load_reports`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadReport {
    /// The instance.
    pub instance: Instance,
    /// Where its image came from.
    pub origin: Origin,
    /// Time to get the image and load it into the context (waits for a warming compile
    /// included).
    pub elapsed: Duration,
    /// Why the embedded image was not used although there is one (damaged, or rejected by
    /// the driver), if so.
    pub note: Option<String>,
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

/// The NVRTC version, or why NVRTC cannot be used (`None` = libnvrtc missing, `Some(code)`
/// = nvrtcVersion failed); looked up once, at the first need.
type NvrtcProbe = std::result::Result<(i32, i32), Option<i32>>;

/// The kernels of one device. Each (algorithm, dtype, op) instance is loaded when first
/// needed ([`Kernels::function`]; every launch goes through it): from the CUBINs embedded
/// in the binary when the device's arch has them ([`crate::embedded`]), else compiled by
/// NVRTC as its own small program, cached on disk per instance, and shared with other
/// threads and processes compiling the same instance at the same time. A background thread
/// warms [`Warm::DEFAULT_LIST`] (those not embedded) after [`Kernels::load`].
pub struct Kernels {
    ctx: Arc<CudaContext>,
    slots: HashMap<Instance, Slot>,
    arch: (u32, u32),
    sm_count: u32,
    driver: i32,
    nvrtc: OnceLock<NvrtcProbe>,
    dir: Option<PathBuf>,
    /// Take images from the embedded archive of `arch` (on, and one exists).
    embedded: bool,
    /// Set once the driver rejected an embedded image: later instances skip them.
    embedded_rejected: AtomicBool,
    warmed: Warmed<Instance>,
    warm_thread: Mutex<Option<JoinHandle<()>>>,
    cancel: Arc<AtomicBool>,
    reports: Mutex<Vec<LoadReport>>,
    reports_pending: AtomicBool,
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels")
            .field("arch", &self.arch)
            .field("sm_count", &self.sm_count)
            .field("driver", &self.driver)
            .field("nvrtc", &self.nvrtc.get())
            .field("embedded", &self.embedded)
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
    /// Whether instances are taken from the embedded CUBINs (enabled, and this binary has
    /// an archive for the device's arch).
    pub fn uses_embedded(&self) -> bool {
        self.embedded
    }
    /// One line on where this device's kernels come from (embedded archive and its NVRTC
    /// version, or why not), for logs.
    pub fn describe_sources(&self) -> String {
        if self.embedded {
            crate::embedded::describe(self.arch)
        } else if crate::embedded::archive(self.arch).is_some() {
            "embedded CUBINs off (INC_EMBEDDED_CUBINS=0 or LoadOptions): NVRTC and disk cache"
                .to_string()
        } else {
            format!(
                "{}: NVRTC and disk cache",
                crate::embedded::describe(self.arch)
            )
        }
    }
    /// The reports of the instances loaded since the last call (each instance's first use
    /// is reported once, to one caller); cheap when there is none.
    pub fn take_load_reports(&self) -> Vec<LoadReport> {
        // a plain load first: every launch comes here, the swap only after a load
        if !self.reports_pending.load(Ordering::Acquire)
            || !self.reports_pending.swap(false, Ordering::AcqRel)
        {
            return Vec::new();
        }
        std::mem::take(&mut *lock(&self.reports))
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
