//! The cuda path of `inc bench` / `inc tune`: device buffers, CUDA-event timing, CUDA
//! graphs, and NCCL beside inc on the same buffers.
//!
//! Per rank (a thread with `--threads N`, a process under `inc launch`):
//!
//! * **Buffers.** Per size one input/output `CudaSlice` pair (inc's device API takes
//!   whole slices), shared by every column. Before each repetition the input is uploaded
//!   from a host pattern that changes every repetition (small integers: the reference is
//!   exact) and the output is set to NaN bytes, so a call that writes nothing is wrong.
//! * **Lining up.** Right before each timed region an untimed 16-element inc allreduce on
//!   a small control communicator runs on the same stream: it returns on every rank at
//!   nearly the same moment, so the timed call does not also measure a late peer's host.
//! * **eager**: CUDA events around one call launched from the host. **graph**:
//!   `--graph-calls` back-to-back calls captured into a CUDA graph (once per size and
//!   column), events around one replay, divided by the calls.
//! * **#wrong**: after every repetition the output comes back to the host and every
//!   element is compared with the reference (outside the timed region).
//! * The time of a repetition is the slowest rank's (gathered through a store: in-memory
//!   for threads, the launch's TCP store for processes); the reported time is the median.
//! * **NCCL** (`--compare nccl`): `nccl` = inc's NCCL path (`Path::Nccl`) on the same
//!   buffers; `nccl-symm` = NCCL on window-registered symmetric buffers (NCCL >= 2.27,
//!   [`inc_comm::nccl::NcclComm`]). With virtual ranks (more ranks than GPUs: they share a GPU,
//!   `allow_shared_device`) NCCL cannot run: both are n/a, and NCCL with ONE rank on GPU 0
//!   is measured instead as a floor (`nccl-w1`, `nccl-symm-w1`).
//!
//! Modules: [`columns`] (the report's columns), [`points`] (per-point arithmetic, the
//! checker, the exchanged results), [`device`] (control channel, buffers, enqueue,
//! capture), [`timing`] (one point on one rank), [`rank`] (one rank's whole run),
//! [`floors`] (the world-1 NCCL floors).

mod columns;
mod device;
mod floors;
mod points;
mod rank;
mod timing;

use std::sync::Arc;

use cudarc::driver::{DeviceRepr, ValidAsZeroBits};
use half::{bf16, f16};
use inc_comm::{AlgoChoice, Comm, CommOptions, DType, Element, TorchrunEnv};
use inc_store::{MemStore, Store};

use super::measure::{connect_env_store, join_ranks, series_opts, thread_series_comms};
use super::report::Report;
use super::{Launch, Plan};
use device::Ctrl;
use rank::rank_inner;

/// Elements of the lining-up call.
const SYNC_ELEMS: usize = 16;
/// Symmetric buffer bytes of the control communicator (it only reduces 16 elements).
const SYNC_BUFFER_BYTES: u64 = 64 << 10;

/// The error when no GPU is visible.
pub(crate) fn no_gpu() -> String {
    "the cuda backend found no CUDA device (needs an NVIDIA GPU, its driver and libnvrtc; \
     check CUDA_VISIBLE_DEVICES), use --backend sim"
        .into()
}

/// Where the ranks of a `--threads N` run sit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Device of each rank.
    pub devices: Vec<usize>,
    /// More ranks than GPUs: they share GPUs ("virtual ranks").
    pub virtual_ranks: bool,
}

/// A GPU per rank when there are enough, else rank `i` on GPU `i mod gpus`.
pub(crate) fn thread_layout(n: usize, gpus: usize) -> Result<Layout, String> {
    if gpus == 0 {
        return Err(no_gpu());
    }
    if n <= gpus {
        Ok(Layout {
            devices: (0..n).collect(),
            virtual_ranks: false,
        })
    } else {
        Ok(Layout {
            devices: (0..n).map(|i| i % gpus).collect(),
            virtual_ranks: true,
        })
    }
}

/// The kernel module version from `/proc/driver/nvidia/version`'s text (`570.86.15`).
pub(crate) fn parse_nvrm(text: &str) -> Option<String> {
    let line = text.lines().next()?;
    line.split_whitespace()
        .find(|t| {
            let parts: Vec<&str> = t.split('.').collect();
            parts.len() >= 2
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
}

/// `570.86.15 (CUDA 12.8)`: the kernel driver and the CUDA driver API versions.
fn driver_version() -> String {
    let kmod = std::fs::read_to_string("/proc/driver/nvidia/version")
        .ok()
        .and_then(|t| parse_nvrm(&t));
    let api = inc_cuda::sys::driver_api_version()
        .map(|v| format!("CUDA {}.{}", v / 1000, (v % 1000) / 10));
    match (kmod, api) {
        (Some(k), Some(a)) => format!("{k} ({a})"),
        (Some(k), None) => k,
        (None, Some(a)) => a,
        (None, None) => "unknown".into(),
    }
}

/// Runs the plan on GPUs; rank 0 gets the report.
pub(crate) fn run(plan: &Plan) -> Result<Option<Report>, String> {
    if inc_comm::cuda_device_count() == 0 {
        return Err(no_gpu());
    }
    match plan.dtype {
        DType::Bf16 => run_typed::<bf16>(plan),
        DType::F16 => run_typed::<f16>(plan),
        DType::F32 => run_typed::<f32>(plan),
    }
}

/// Options of the control (lining-up) communicator.
fn sync_opts(plan: &Plan) -> CommOptions {
    plan.opts
        .clone()
        .with_algo(AlgoChoice::Auto)
        .with_buffer_bytes(Some(SYNC_BUFFER_BYTES))
        .with_tune_file(None)
}

fn run_typed<T: Element + DeviceRepr + ValidAsZeroBits>(
    plan: &Plan,
) -> Result<Option<Report>, String> {
    let gpus = inc_comm::cuda_device_count();
    match plan.launch {
        Launch::Threads(n) => {
            let layout = thread_layout(n, gpus)?;
            let mut plan = plan.clone();
            plan.opts.allow_shared_device |= layout.virtual_ranks;
            let plan = &plan;
            let sync =
                Comm::init_threads(&layout.devices, sync_opts(plan)).map_err(|e| e.to_string())?;
            let ranks = thread_series_comms(plan, &layout.devices, n)?;
            let store: Arc<dyn Store> = Arc::new(MemStore::new());
            std::thread::scope(|s| {
                let handles: Vec<_> = sync
                    .iter()
                    .zip(&ranks)
                    .enumerate()
                    .map(|(rank, (c, mine))| {
                        let ctrl = Ctrl {
                            store: store.clone(),
                            rank,
                            world: n,
                            timeout: plan.opts.timeout,
                        };
                        s.spawn(move || rank_main::<T>(plan, &ctrl, c, mine, gpus))
                    })
                    .collect();
                join_ranks(handles)
            })
        }
        Launch::Env => {
            let env =
                TorchrunEnv::from_lookup(|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
            let mut plan = plan.clone();
            plan.opts.allow_shared_device |= env.world > gpus;
            let plan = &plan;
            let store = connect_env_store(plan, &env)?;
            let sync = Comm::from_env_with(sync_opts(plan)).map_err(|e| e.to_string())?;
            let mut comms = Vec::with_capacity(plan.specs.len());
            for spec in &plan.specs {
                comms.push(
                    Comm::from_env_with(series_opts(plan, spec))
                        .map_err(|e| format!("{}: {e}", spec.name))?,
                );
            }
            let ctrl = Ctrl {
                store,
                rank: env.rank,
                world: env.world,
                timeout: plan.opts.timeout,
            };
            rank_main::<T>(plan, &ctrl, &sync, &comms, gpus)
        }
    }
}

/// One rank's whole run; on error every communicator is aborted so peers fail fast.
fn rank_main<T: Element + DeviceRepr + ValidAsZeroBits>(
    plan: &Plan,
    ctrl: &Ctrl,
    sync: &Comm,
    comms: &[Comm],
    gpus: usize,
) -> Result<Option<Report>, String> {
    let res = rank_inner::<T>(plan, ctrl, sync, comms, gpus);
    if let Err(e) = &res {
        sync.abort(e);
        for c in comms {
            c.abort(e);
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_uses_a_gpu_per_rank_else_virtual_ranks() {
        assert!(thread_layout(2, 0).is_err());
        assert_eq!(
            thread_layout(2, 8).unwrap(),
            Layout {
                devices: vec![0, 1],
                virtual_ranks: false
            }
        );
        assert_eq!(
            thread_layout(3, 2).unwrap(),
            Layout {
                devices: vec![0, 1, 0],
                virtual_ranks: true
            }
        );
        assert!(thread_layout(2, 1).unwrap().virtual_ranks);
    }
    #[test]
    fn driver_version_from_proc() {
        let prop = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.86.15  Thu Jan  2 2025\nGCC version: gcc 12.2\n";
        assert_eq!(parse_nvrm(prop).as_deref(), Some("570.86.15"));
        let open = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  575.51.03  Release Build  (dvs-builder@U16)  Wed";
        assert_eq!(parse_nvrm(open).as_deref(), Some("575.51.03"));
        assert_eq!(parse_nvrm("garbage"), None);
        assert_eq!(parse_nvrm(""), None);
    }
}
