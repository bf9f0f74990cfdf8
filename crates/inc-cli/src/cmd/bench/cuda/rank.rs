//! One rank's run over every size and column: the control communicator, inc's NCCL
//! path, the bench's own NCCL communicator and windows, the zero-copy symmetric tensors,
//! and rank 0's report.

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{DeviceRepr, ValidAsZeroBits};
use inc_comm::nccl::{NcclComm, SymmetricWindows};
use inc_comm::{AlgoPath as Path, Comm, DType, Element, ReduceOp, SymmetricTensor};

use super::super::measure::expected_table;
use super::super::report::{median, Report, Sample, Series};
use super::super::{Launch, Plan, Which};
use super::columns::{columns, Col, ColKind, FLOOR, FLOOR_SYMM};
use super::device::{Bufs, Ctrl, Target};
use super::floors::floors;
use super::points::{combine_points, encode_point, expected_buffer, pattern_buffer};
use super::timing::RankState;
use super::{driver_version, SYNC_ELEMS};

/// Whether an inc column runs at `bytes`, with the path it takes; else why not.
pub(super) fn inc_fit(comm: &Comm, which: Which, bytes: u64, dtype: DType) -> Result<Path, String> {
    let path = match which {
        Which::Path(p) | Which::Symmetric(Some(p)) => p,
        Which::Auto | Which::Symmetric(None) | Which::Registered => {
            comm.select_algo(bytes, dtype).path
        }
    };
    comm.check_path(path, bytes, dtype)
        .map(|()| path)
        .map_err(|e| {
            // The selector's reason is the more telling one (e.g. hcm needs 8 GPUs).
            let why = comm
                .select_algo(bytes, dtype)
                .fallback
                .map_or_else(|| e.to_string(), |f| f.to_string());
            match which {
                Which::Auto | Which::Symmetric(None) | Which::Registered => {
                    format!("auto takes {path}: {why}")
                }
                Which::Path(_) | Which::Symmetric(Some(_)) => why,
            }
        })
}

pub(super) fn rank_inner<T: Element + DeviceRepr + ValidAsZeroBits>(
    plan: &Plan,
    ctrl: &Ctrl,
    sync: &Comm,
    comms: &[Comm],
    gpus: usize,
) -> Result<Option<Report>, String> {
    let rank = sync.rank();
    let world = sync.world();
    let ctx = sync
        .cuda_context()
        .ok_or("the cuda backend has no CUDA context")?
        .clone();
    for c in std::iter::once(sync).chain(comms) {
        if let Some(cx) = c.cuda_context() {
            // SAFETY: every use of the bench's buffers is ordered on one stream with
            // explicit synchronisation (graph capture needs tracking off, as with any
            // cudarc capture).
            unsafe { cx.disable_event_tracking() };
        }
    }
    let stream = ctx
        .new_stream()
        .map_err(|e| format!("cuStreamCreate: {e}"))?;
    let ev = || {
        ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| format!("cuEventCreate: {e}"))
    };
    let elem = plan.dtype.size() as u64;
    let max_bytes = plan.sizes.iter().copied().max().unwrap_or(elem);
    let max_elems = usize::try_from(max_bytes / elem)
        .map_err(|_| format!("{max_bytes} bytes do not fit this machine's memory"))?;
    let table = expected_table::<T>(world, plan.op)?;
    let sync_in = stream
        .clone_htod(&vec![T::from_f32(1.0); SYNC_ELEMS])
        .map_err(|e| format!("alloc: {e}"))?;
    let sync_out = stream
        .alloc_zeros::<T>(SYNC_ELEMS)
        .map_err(|e| format!("alloc: {e}"))?;
    let mut st = RankState {
        plan,
        stream: stream.clone(),
        start: ev()?,
        end: ev()?,
        sync: Some(sync),
        sync_in,
        sync_out,
        host_in: pattern_buffer::<T>(rank, max_elems),
        expected: expected_buffer(&table, max_elems),
        host_out: vec![T::from_f32(0.0); max_elems],
    };
    let virtual_ranks = sync.ranks_on_device() > 1;
    let nccl_version = if plan.compare_nccl {
        inc_comm::nccl::probe()
    } else {
        Err("not asked".into())
    };
    let mut cols = columns(plan, virtual_ranks, &nccl_version);

    // inc's NCCL communicator is created on first use: do it now, eagerly (never inside
    // a graph capture). Its creation is collective and agreed.
    if cols.iter().any(|c| c.kind == ColKind::Nccl) {
        let mut o = stream
            .alloc_zeros::<T>(SYNC_ELEMS)
            .map_err(|e| format!("alloc: {e}"))?;
        let r = sync
            .allreduce_using(
                Path::Nccl,
                Some(&st.sync_in),
                &mut o,
                ReduceOp::Sum,
                &stream,
            )
            .and_then(|w| w.wait())
            .map_err(|e| e.to_string());
        if let Err(e) = r {
            na(&mut cols, &ColKind::Nccl, &e);
        }
    }
    // nccl-symm: the bench's own NCCL communicator and registered windows (collective).
    let raw = if cols.iter().any(|c| c.kind == ColKind::NcclSymm) {
        let gather = |m: &[u8]| ctrl.gather("nccl-id", m);
        match NcclComm::create(rank, world, &ctx, None, gather, |e| e.to_string()) {
            Ok(r) => Some(r),
            Err(e) => {
                na(&mut cols, &ColKind::NcclSymm, &e);
                None
            }
        }
    } else {
        None
    };
    let max_usize = usize::try_from(max_bytes).map_err(|_| "size too large".to_string())?;
    let symm: Option<SymmetricWindows<'_>> = match &raw {
        Some(r) => {
            let s = r.symmetric(max_usize).map_err(|e| e.to_string());
            let verdict = ctrl.agree("nccl-symm", s.as_ref().map(|_| ()).map_err(Clone::clone));
            match (s, verdict) {
                (Ok(s), Ok(())) => Some(s),
                (_, Err(e)) | (Err(e), _) => {
                    na(&mut cols, &ColKind::NcclSymm, &e);
                    None
                }
            }
        }
        None => None,
    };

    // One symmetric tensor of the largest size per zero-copy column (collective, in the
    // same order on every rank).
    let mut sym: Vec<Option<SymmetricTensor<T>>> = Vec::new();
    for (spec, comm) in plan.specs.iter().zip(comms) {
        sym.push(match spec.which {
            Which::Symmetric(_) => Some(
                comm.alloc_symmetric::<T>(max_elems.max(1))
                    .map_err(|e| format!("symmetric tensor of {max_bytes} B: {e}"))?,
            ),
            Which::Registered => Some(registered::<T>(comm, max_elems.max(1))?),
            _ => None,
        });
    }
    let mut series: Vec<Series> = cols
        .iter()
        .map(|c| Series::new(&c.name, c.source, c.mode))
        .collect();
    for (si, &bytes) in plan.sizes.iter().enumerate() {
        let n = usize::try_from(bytes / elem)
            .unwrap_or(usize::MAX)
            .min(max_elems);
        let input = stream
            .alloc_zeros::<T>(n.max(1))
            .map_err(|e| format!("alloc of {bytes} B: {e}"))?;
        let mut output = stream
            .alloc_zeros::<T>(n.max(1))
            .map_err(|e| format!("alloc of {bytes} B: {e}"))?;
        for (ci, col) in cols.iter().enumerate() {
            let sample = match &col.kind {
                ColKind::Na(why) => na_sample(why),
                ColKind::Floor { .. } => Sample::default(), // rank 0 measures it below
                ColKind::Inc(k) => {
                    let (spec, comm) = plan
                        .specs
                        .get(*k)
                        .zip(comms.get(*k))
                        .ok_or("column without a communicator")?;
                    match inc_fit(comm, spec.which, bytes, plan.dtype) {
                        Err(why) => na_sample(&why),
                        Ok(path) => {
                            let r = match (spec.which, sym.get_mut(*k)) {
                                (Which::Symmetric(p), Some(Some(t))) => st.point(
                                    Target::IncSym { comm, path: p },
                                    &mut Bufs::Sym(t, n),
                                    col.mode,
                                ),
                                (Which::Registered, Some(Some(t))) => st.point(
                                    Target::IncSym { comm, path: None },
                                    &mut Bufs::Sym(t, n),
                                    col.mode,
                                ),
                                (Which::Symmetric(_) | Which::Registered, _) => {
                                    Err("no symmetric tensor for this column".to_string())
                                }
                                (which, _) => st.point(
                                    Target::Inc {
                                        comm,
                                        path: match which {
                                            Which::Path(p) => Some(p),
                                            _ => None,
                                        },
                                    },
                                    &mut Bufs::Slices(&input, &mut output),
                                    col.mode,
                                ),
                            };
                            let mut s = gathered(ctrl, &format!("p{si}/{ci}"), r, col, bytes)?;
                            if matches!(
                                spec.which,
                                Which::Auto | Which::Symmetric(None) | Which::Registered
                            ) {
                                s.path = Some(path.name().to_string());
                            }
                            s
                        }
                    }
                }
                ColKind::Nccl => match sync.check_path(Path::Nccl, bytes, plan.dtype) {
                    Err(e) => na_sample(&e.to_string()),
                    Ok(()) => {
                        let target = Target::Inc {
                            comm: sync,
                            path: Some(Path::Nccl),
                        };
                        let r = st.point(target, &mut Bufs::Slices(&input, &mut output), col.mode);
                        gathered(ctrl, &format!("p{si}/{ci}"), r, col, bytes)?
                    }
                },
                ColKind::NcclSymm => match (&raw, &symm) {
                    (Some(r), Some(b)) => {
                        let mut bufs = Bufs::Raw {
                            input: b.input(),
                            output: b.output(),
                            count: n,
                        };
                        let res = st.point(Target::Nccl(r), &mut bufs, col.mode);
                        gathered(ctrl, &format!("p{si}/{ci}"), res, col, bytes)?
                    }
                    _ => na_sample("NCCL symmetric buffers are unavailable"),
                },
            };
            if let Some(s) = series.get_mut(ci) {
                s.samples.push(sample);
            }
        }
        stream
            .synchronize()
            .map_err(|e| format!("cuStreamSynchronize: {e}"))?;
    }
    drop(symm);
    drop(raw);
    if rank != 0 {
        return Ok(None);
    }
    if cols.iter().any(|c| matches!(c.kind, ColKind::Floor { .. })) {
        floors::<T>(plan, &ctx, &mut st, &cols, &mut series, max_elems)?;
    }
    let mut notes = vec![format!(
        "{world} rank(s) as {} on {} GPU(s); each rank times its calls with CUDA events \
         on its own stream, a repetition counts the slowest rank",
        match plan.launch {
            Launch::Threads(_) => "threads of one process",
            Launch::Env => "processes (inc launch)",
        },
        gpus.min(world)
    )];
    if virtual_ranks {
        notes.push(format!(
            "virtual ranks on one GPU: not an NVLink number ({world} ranks share {} GPU(s): \
             their kernels run side by side on one device and 'peer' traffic is local memory)",
            gpus.min(world)
        ));
        if plan.launch == Launch::Env {
            notes.push(
                "processes sharing a GPU are time-sliced by the driver (no MPS): a call that \
                 waits for a peer in another process waits for the next time slice (ms), so \
                 these times measure the scheduler, not inc; use --threads for virtual ranks"
                    .into(),
            );
        }
    }
    notes.push(
        "before each timed region an untimed 16-element inc allreduce lines the ranks up on \
         the GPU; the output is reset to NaN and checked element by element every repetition"
            .into(),
    );
    if let Ok(v) = &nccl_version {
        notes.push(format!("NCCL {}", inc_comm::nccl::version_text(*v)));
    }
    notes.push(format!(
        "inc device memory per rank and communicator: {:.1} MiB (signal pad, two symmetric \
         halves, push and lines regions; INC_BUFFER_BYTES sets a half)",
        // the measured communicator's (the line-up communicator has a small buffer)
        comms
            .first()
            .map_or(sync.device_bytes(), Comm::device_bytes) as f64
            / (1 << 20) as f64
    ));
    if series.iter().any(|s| s.name == FLOOR) {
        notes.push(format!(
            "{FLOOR} / {FLOOR_SYMM}: NCCL with ONE rank on GPU 0 (no peer, no link): a floor \
             for NCCL's cost per call, measured because NCCL refuses virtual ranks; ratio = \
             that floor / best inc time"
        ));
    }
    notes.extend(plan.notes.iter().cloned());
    let device = ctx.name().map_err(|e| format!("cuDeviceGetName: {e}"))?;
    Ok(Some(Report {
        backend: "cuda".into(),
        device,
        driver: driver_version(),
        topology: sync.topology().name().to_string(),
        world,
        dtype: plan.dtype,
        op: plan.op,
        iters: plan.iters,
        warmup: plan.warmup,
        graph_calls: plan.graph_calls,
        sizes: plan.sizes.clone(),
        series,
        notes,
    }))
}

/// A `cuMemAlloc` buffer of `len` elements (64 bytes into its allocation) registered as a
/// symmetric tensor. The allocation is never freed: peers map it until the communicator's
/// shutdown, which comes after this bench run (the process exits soon after).
fn registered<T: Element + DeviceRepr>(
    comm: &Comm,
    len: usize,
) -> Result<SymmetricTensor<T>, String> {
    let ctx = comm.cuda_context().ok_or("no CUDA context")?;
    ctx.bind_to_thread()
        .map_err(|e| format!("cuCtxSetCurrent: {e}"))?;
    let bytes = len * std::mem::size_of::<T>() + 64;
    // SAFETY: the context is current (bound above).
    let raw = unsafe { cudarc::driver::result::malloc_sync(bytes) }
        .map_err(|e| format!("cuMemAlloc of {bytes} B: {e}"))?;
    // SAFETY: [raw + 64, raw + bytes) is a live cuMemAlloc allocation of this device, never
    // freed (see above), written only through the tensor.
    unsafe { comm.register_symmetric::<T>(raw + 64, len) }
        .map_err(|e| format!("registering {bytes} B: {e}"))
}

pub(super) fn na_sample(why: &str) -> Sample {
    Sample {
        note: Some(why.to_string()),
        ..Sample::default()
    }
}

/// Turns every column of `kind` into n/a with `why`.
pub(super) fn na(cols: &mut [Col], kind: &ColKind, why: &str) {
    for c in cols.iter_mut().filter(|c| &c.kind == kind) {
        c.kind = ColKind::Na(why.to_string());
    }
}

/// Gathers one point from every rank into a sample (the same verdict everywhere).
pub(super) fn gathered(
    ctrl: &Ctrl,
    key: &str,
    local: Result<(Vec<f32>, u64), String>,
    col: &Col,
    bytes: u64,
) -> Result<Sample, String> {
    let all = ctrl.gather(key, &encode_point(&local))?;
    let (times, wrong) = combine_points(&all)
        .map_err(|e| format!("{} at {bytes} B ({}): {e}", col.name, col.mode.name()))?;
    Ok(Sample {
        time_us: median(&times),
        wrong,
        path: None,
        note: None,
    })
}
