//! How `Kernels` comes to be and gets each instance's kernel: the embedded CUBIN of the
//! device's arch when it was built from exactly this program, else the warming thread's
//! image, the disk cache or NVRTC (`compile`), then the module load and occupancy query.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::sys::CUdevice_attribute as Attr;
use cudarc::driver::{CudaContext, CudaFunction};
use cudarc::nvrtc::Ptx;

use super::{
    all_instances, lock, CacheMode, Instance, Kernels, LoadOptions, LoadReport, Loaded, Slot,
};
use crate::compile::{self, Job, Origin};
use crate::embedded::{self, Lookup};
use crate::error::{drv, CudaError, Result};
use crate::launch::MAX_THREADS;
use crate::proto::{Algo, DType, ReduceOp};
use crate::source::{self, Program};
use crate::sys;

impl Kernels {
    /// The kernels of `ctx`'s device with the default cache folder; compiles nothing now
    /// (each instance is taken from the embedded CUBINs, or compiles or loads from the
    /// cache, at its first use) and starts the background warming of `INC_KERNEL_WARM`
    /// (default: [`super::Warm::DEFAULT_LIST`]) for the instances not embedded. Fails early when
    /// the device is too old, or when NVRTC is missing and the binary has no CUBINs for the
    /// device's arch (with embedded CUBINs, a missing NVRTC is an error only at the first
    /// use of an instance they do not hold).
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Self> {
        Self::load_with(ctx, &CacheMode::Default)
    }

    /// [`Kernels::load`] with an explicit cache mode.
    pub fn load_with(ctx: &Arc<CudaContext>, cache: &CacheMode) -> Result<Self> {
        Self::load_opts(
            ctx,
            &LoadOptions {
                cache: cache.clone(),
                ..LoadOptions::default()
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
        let embedded = opts.embedded.enabled() && matches!(embedded::archive(arch), Some(Ok(_)));
        let k = Kernels {
            ctx: ctx.clone(),
            slots: all_instances()
                .into_iter()
                .map(|i| (i, Slot::default()))
                .collect(),
            arch,
            sm_count,
            driver,
            nvrtc: Default::default(),
            dir: opts.cache.dir(),
            embedded,
            embedded_rejected: Default::default(),
            warmed: Arc::default(),
            warm_thread: Default::default(),
            cancel: Arc::default(),
            reports: Default::default(),
            reports_pending: Default::default(),
        };
        if !embedded {
            // NVRTC is the only source of kernels: report its absence now, as before.
            k.nvrtc()?;
        }
        k.warm(&opts.warm.instances());
        Ok(k)
    }

    /// The NVRTC version, probed (libnvrtc loaded) at the first need only: a process whose
    /// instances all come from the embedded CUBINs never loads NVRTC.
    fn nvrtc(&self) -> Result<(i32, i32)> {
        let probe = self.nvrtc.get_or_init(|| match compile::nvrtc_version() {
            Ok(v) => Ok(v),
            Err(CudaError::Nvrtc { code, .. }) => Err(Some(code)),
            Err(_) => Err(None),
        });
        match *probe {
            Ok(v) => Ok(v),
            Err(None) => Err(CudaError::NoNvrtc),
            Err(Some(code)) => Err(CudaError::Nvrtc {
                op: "nvrtcVersion",
                code,
            }),
        }
    }

    /// Start compiling `instances` (in order) on a background thread, unless one is still
    /// running from an earlier call (then this does nothing). Instances already loaded or
    /// served by the embedded CUBINs are left out (no NVRTC time for them); when nothing is
    /// left, no thread starts and NVRTC is not loaded. First use of an instance that the
    /// thread is compiling waits for that compile instead of starting another.
    pub fn warm(&self, instances: &[Instance]) {
        let mut t = lock(&self.warm_thread);
        if t.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let (embedded, compiled): (Vec<_>, Vec<_>) = instances
            .iter()
            .filter(|i| self.slots.get(i).is_some_and(|s| s.loaded.get().is_none()))
            .map(|&i| (i, self.program(i)))
            .partition(|(_, p)| self.embedded_covers(p));
        if !embedded.is_empty() {
            // unpack their frames off the calling thread (milliseconds; the first use waits
            // for an unpack in progress instead of starting another)
            let arch = self.arch;
            let programs: Vec<Program> = embedded.into_iter().map(|(_, p)| p).collect();
            let _ = std::thread::Builder::new()
                .name("inc-cubin-unpack".into())
                .spawn(move || embedded::prefetch(arch, &programs));
        }
        let jobs: Vec<(Instance, Job)> = compiled
            .into_iter()
            // no NVRTC: nothing to warm (first use reports the error)
            .filter_map(|(i, p)| self.job(p).ok().map(|j| (i, j)))
            .collect();
        if jobs.is_empty() {
            return;
        }
        *t = compile::spawn_warm(jobs, self.warmed.clone(), self.cancel.clone());
    }

    /// Whether `p` is served by the embedded CUBINs (in use, not rejected by the driver, and
    /// the archive holds exactly this program); looks at the archive's index only.
    fn embedded_covers(&self, p: &Program) -> bool {
        self.embedded && !self.embedded_rejected.load(Ordering::Relaxed) && embedded::contains(p)
    }

    /// Wait for the background warming thread (if any) to finish.
    pub fn wait_warm(&self) {
        let h = lock(&self.warm_thread).take();
        if let Some(h) = h {
            let _ = h.join();
        }
    }

    /// The program of `inst` for this device (one instance alone, or the whole program if
    /// instances.cu no longer has the macros this relies on).
    fn program(&self, inst: Instance) -> Program {
        Program::new(inst.0, inst.1, inst.2, self.arch)
    }

    /// The embedded image of `p`, when embedded CUBINs are in use.
    fn embedded_image(&self, p: &Program) -> Lookup {
        if !self.embedded || self.embedded_rejected.load(Ordering::Relaxed) {
            return Lookup::Miss;
        }
        embedded::lookup(p)
    }

    /// The NVRTC job and cache key of `p` (needs NVRTC's version for the key).
    fn job(&self, p: Program) -> Result<Job> {
        let key = p.cache_key(self.driver, self.nvrtc()?);
        Ok(Job {
            key,
            source: Arc::new(p.source),
            options: Arc::new(p.options),
            arch: self.arch,
            dir: self.dir.clone(),
        })
    }

    /// The kernel of one instance, taken from the embedded CUBINs or compiled (or loaded
    /// from the disk cache, or taken from the warming thread) on first use; later calls
    /// return it at once.
    pub fn function(&self, algo: Algo, dtype: DType, op: ReduceOp) -> Result<&CudaFunction> {
        Ok(&self.instance(algo, dtype, op)?.func)
    }

    /// Co-resident blocks per SM of one instance at [`MAX_THREADS`] threads (occupancy API);
    /// loads the instance on first use. Launch plans of that instance use it.
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

    /// The cache file of an instance (`None` when the cache is off, or NVRTC is missing:
    /// its version is part of the name).
    pub fn cache_path(&self, algo: Algo, dtype: DType, op: ReduceOp) -> Option<PathBuf> {
        let job = self.job(self.program((algo, dtype, op))).ok()?;
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
        let started = Instant::now();
        let (loaded, note) = self.load_instance((algo, dtype, op))?;
        lock(&self.reports).push(LoadReport {
            instance: (algo, dtype, op),
            origin: loaded.origin,
            elapsed: started.elapsed(),
            note,
        });
        self.reports_pending.store(true, Ordering::Release);
        Ok(slot.loaded.get_or_init(|| loaded))
    }

    /// The embedded image if there is one for exactly this program and the driver takes it;
    /// else the image from the warming thread, the disk cache or NVRTC (a cached image the
    /// driver rejects is compiled afresh). Then the entry and its occupancy. Gives why an
    /// existing embedded image was not used, if so.
    fn load_instance(&self, inst: Instance) -> Result<(Loaded, Option<String>)> {
        let program = self.program(inst);
        let mut note = None;
        match self.embedded_image(&program) {
            Lookup::Image(img) => match self
                .ctx
                .load_module(Ptx::from_binary(img.to_vec()))
                .map_err(drv("cuModuleLoadData"))
                .and_then(|m| self.finish(inst, &m, Origin::Embedded))
            {
                Ok(loaded) => return Ok((loaded, None)),
                Err(e) => {
                    // e.g. a driver older than the CUBIN's compiler: never an error, NVRTC
                    // does it (and the later instances skip the embedded images)
                    self.embedded_rejected.store(true, Ordering::Relaxed);
                    note = Some(format!(
                        "embedded CUBIN rejected by the driver ({e}); using NVRTC"
                    ));
                }
            },
            Lookup::Damaged(why) => note = Some(format!("{why}; using NVRTC")),
            Lookup::Miss => {}
        }
        let job = self.job(program)?;
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
        Ok((self.finish(inst, &module, origin)?, note))
    }

    /// Look up the entry of `inst` in `module` and its occupancy.
    fn finish(
        &self,
        inst: Instance,
        module: &Arc<cudarc::driver::CudaModule>,
        origin: Origin,
    ) -> Result<Loaded> {
        let (algo, dtype, op) = inst;
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
}
