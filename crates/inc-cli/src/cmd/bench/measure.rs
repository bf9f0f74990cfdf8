//! The measuring loop over host buffers (`Comm::allreduce_host_out`): the sim backend's
//! data path, run the same way by every rank (a thread with `--threads N`, a process
//! under `inc launch`).
//!
//! Per size and series: `warmup + iters` repetitions; each one refills the input with a
//! pattern that depends on (rank, repetition, index), lines the ranks up through a small
//! control communicator, times the call (eager) or a batch of back-to-back calls (graph),
//! and checks EVERY output element against the reference of that repetition. The time of
//! a repetition is the slowest rank's; the reported time is the median over repetitions.

use std::sync::Arc;
use std::time::Instant;

use half::{bf16, f16};
use inc_comm::{
    AlgoChoice, AlgoPath as Path, Comm, CommOptions, DType, Element, ReduceOp, TorchrunEnv,
};

use super::report::{median, Mode, Report, Sample, Series, Source};
use super::{Launch, Plan, SeriesSpec, Which};

/// Period of the input pattern: a prime, so a misplaced 16-byte chunk (8 or 4 elements)
/// or a misplaced block is caught unless it moves by a multiple of 31 elements.
pub(crate) const PERIOD: usize = 31;
/// Pattern step between ranks and between repetitions (coprime with [`PERIOD`]).
const RANK_STEP: usize = 7;
pub(crate) const REP_STEP: usize = 3;

/// Input element `i` of `rank` at repetition `rep`: a small integer (< 31), so every
/// sum over at most 8 ranks is exact in bf16, f16 and f32 and the reference is exact.
pub(crate) fn pattern(i: usize, rank: usize, rep: usize) -> usize {
    (i % PERIOD + (rank * RANK_STEP) % PERIOD + (rep * REP_STEP) % PERIOD) % PERIOD
}

/// Fills `buf` with [`pattern`] without a division per element.
pub(crate) fn fill<T: Element>(buf: &mut [T], rank: usize, rep: usize) {
    let mut k = pattern(0, rank, rep);
    let vals: Vec<T> = (0..PERIOD).map(|v| T::from_f32(v as f32)).collect();
    for x in buf.iter_mut() {
        if let Some(v) = vals.get(k) {
            *x = *v;
        }
        k += 1;
        if k == PERIOD {
            k = 0;
        }
    }
}

/// The reduction of every rank's pattern for each phase `k` (element `i` of repetition
/// `rep` has phase `(i + 3 rep) mod 31`), computed by inc-sim's reference.
pub(crate) fn expected_table<T: Element>(world: usize, op: ReduceOp) -> Result<Vec<T>, String> {
    let inputs: Vec<Vec<T>> = (0..world)
        .map(|r| {
            (0..PERIOD)
                .map(|k| T::from_f32(pattern(k, r, 0) as f32))
                .collect()
        })
        .collect();
    let bytes: Vec<&[u8]> = inputs
        .iter()
        .map(|v| bytemuck::cast_slice(v.as_slice()))
        .collect();
    let out = inc_sim::cpu::reference_allreduce(inc_sim::Algo::OneShot, T::DTYPE, op, &bytes, None)
        .map_err(|e| format!("reference: {e}"))?;
    let table: Vec<T> = bytemuck::try_cast_slice::<u8, T>(&out)
        .map(|s| s.to_vec())
        .or_else(|_| {
            // The reference's Vec<u8> may be unaligned for T: copy element by element.
            out.chunks_exact(std::mem::size_of::<T>())
                .map(|c| {
                    bytemuck::try_pod_read_unaligned::<T>(c).map_err(|e| format!("reference: {e}"))
                })
                .collect::<Result<Vec<T>, String>>()
        })?;
    if table.len() != PERIOD {
        return Err(format!(
            "reference returned {} elements, expected {PERIOD}",
            table.len()
        ));
    }
    Ok(table)
}

/// Number of elements of `out` that differ from the expected result of repetition `rep`.
pub(crate) fn count_wrong<T: Element>(out: &[T], table: &[T], rep: usize) -> u64 {
    let mut k = (rep * REP_STEP) % PERIOD;
    let mut wrong = 0u64;
    for x in out {
        match table.get(k) {
            Some(e) if e.to_f32().to_bits() == x.to_f32().to_bits() => {}
            _ => wrong += 1,
        }
        k += 1;
        if k == PERIOD {
            k = 0;
        }
    }
    wrong
}

/// Options of the communicator that measures `spec`.
pub(crate) fn series_opts(plan: &Plan, spec: &SeriesSpec) -> CommOptions {
    let mut o = plan.opts.clone();
    o.algo = match spec.which {
        Which::Auto | Which::Symmetric(_) | Which::Registered => AlgoChoice::Auto,
        Which::Path(p) => AlgoChoice::Force(p),
    };
    o
}

/// One communicator per series for each of the `n` thread ranks on `devices`:
/// `result[rank][series]`.
pub(crate) fn thread_series_comms(
    plan: &Plan,
    devices: &[usize],
    n: usize,
) -> Result<Vec<Vec<Comm>>, String> {
    let mut ranks: Vec<Vec<Comm>> = (0..n).map(|_| Vec::new()).collect();
    for spec in &plan.specs {
        let comms = Comm::init_threads(devices, series_opts(plan, spec))
            .map_err(|e| format!("{}: {e}", spec.name))?;
        for (mine, c) in ranks.iter_mut().zip(comms) {
            mine.push(c);
        }
    }
    Ok(ranks)
}

/// Joins every rank thread, then gives the first error in rank order, else the
/// report (only rank 0 returns one).
pub(crate) fn join_ranks(
    handles: Vec<std::thread::ScopedJoinHandle<'_, Result<Option<Report>, String>>>,
) -> Result<Option<Report>, String> {
    let results: Vec<Result<Option<Report>, String>> = handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| Err("a bench thread panicked".into()))
        })
        .collect();
    let mut report = None;
    for r in results {
        if let Some(rep) = r? {
            report = Some(rep);
        }
    }
    Ok(report)
}

/// Connects this `inc launch` rank to the store at the torchrun master address.
pub(crate) fn connect_env_store(
    plan: &Plan,
    env: &TorchrunEnv,
) -> Result<Arc<dyn inc_store::Store>, String> {
    let addr = format!("{}:{}", env.master_addr, env.master_port);
    let copts = inc_store::ClientOptions {
        connect_timeout: plan.opts.timeout,
        ..inc_store::ClientOptions::from_env()
    };
    Ok(Arc::new(
        inc_store::TcpStore::connect(&addr, copts)
            .map_err(|e| format!("rank {}: connecting to the store at {addr}: {e}", env.rank))?,
    ))
}

/// Options of the control communicator (barriers, gathering times).
fn ctrl_opts(plan: &Plan) -> CommOptions {
    CommOptions::default()
        .with_backend(plan.opts.backend)
        .with_timeout(plan.opts.timeout)
        .with_sim_shm(plan.opts.sim_shm)
}

/// Runs the plan on host buffers; rank 0 returns the report, other ranks `None`.
pub(crate) fn run_host(plan: &Plan) -> Result<Option<Report>, String> {
    match plan.dtype {
        DType::Bf16 => run_typed::<bf16>(plan),
        DType::F16 => run_typed::<f16>(plan),
        DType::F32 => run_typed::<f32>(plan),
    }
}

fn run_typed<T: Element>(plan: &Plan) -> Result<Option<Report>, String> {
    match plan.launch {
        Launch::Threads(n) => {
            let devices: Vec<usize> = (0..n).collect();
            let ctrl = Comm::init_threads(&devices, ctrl_opts(plan)).map_err(|e| e.to_string())?;
            let ranks = thread_series_comms(plan, &devices, n)?;
            std::thread::scope(|s| {
                let handles: Vec<_> = ctrl
                    .iter()
                    .zip(&ranks)
                    .map(|(c, mine)| s.spawn(move || rank_loop::<T>(plan, c, mine)))
                    .collect();
                join_ranks(handles)
            })
        }
        Launch::Env => {
            let env =
                TorchrunEnv::from_lookup(|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
            let store = connect_env_store(plan, &env)?;
            let ctrl = Comm::init(store.clone(), env.rank, env.world, ctrl_opts(plan))
                .map_err(|e| e.to_string())?;
            let mut comms = Vec::with_capacity(plan.specs.len());
            for spec in &plan.specs {
                comms.push(
                    Comm::init(store.clone(), env.rank, env.world, series_opts(plan, spec))
                        .map_err(|e| format!("{}: {e}", spec.name))?,
                );
            }
            rank_loop::<T>(plan, &ctrl, &comms)
        }
    }
}

/// Whether `comm` takes the path `spec` asks for at `bytes`; else why not (the same
/// verdict on every rank: the selector is a pure function of agreed data).
fn fits(comm: &Comm, spec: &SeriesSpec, bytes: u64, dtype: DType) -> Result<Path, String> {
    let sel = comm.select_algo(bytes, dtype);
    let why = || {
        sel.fallback
            .as_ref()
            .map(|f| f.to_string())
            .unwrap_or_else(|| format!("takes {}", sel.path))
    };
    match spec.which {
        Which::Auto if sel.path != Path::Nccl || comm.backend() != inc_comm::BackendKind::Sim => {
            Ok(sel.path)
        }
        Which::Path(p) if sel.path == p => Ok(p),
        Which::Symmetric(_) | Which::Registered => {
            Err("symmetric tensors need the cuda backend".into())
        }
        _ => Err(why()),
    }
}

fn barrier(ctrl: &Comm) -> Result<(), String> {
    let mut z = [0f32];
    ctrl.allreduce_host(&mut z, ReduceOp::Sum)
        .and_then(|w| w.wait())
        .map_err(|e| format!("control barrier: {e}"))
}

fn one_call<T: Element>(
    comm: &Comm,
    input: &[T],
    output: &mut [T],
    op: ReduceOp,
) -> Result<(), String> {
    comm.allreduce_host_out(input, output, op)
        .and_then(|w| w.wait())
        .map_err(|e| e.to_string())
}

/// One rank's whole run. Every rank makes the same calls in the same order.
fn rank_loop<T: Element>(
    plan: &Plan,
    ctrl: &Comm,
    comms: &[Comm],
) -> Result<Option<Report>, String> {
    let res = rank_loop_inner::<T>(plan, ctrl, comms);
    if let Err(e) = &res {
        // Make the peers fail fast instead of waiting for their timeout.
        ctrl.abort(e);
        for c in comms {
            c.abort(e);
        }
    }
    res
}

fn rank_loop_inner<T: Element>(
    plan: &Plan,
    ctrl: &Comm,
    comms: &[Comm],
) -> Result<Option<Report>, String> {
    let rank = ctrl.rank();
    let world = ctrl.world();
    let elem = plan.dtype.size() as u64;
    let max_bytes = plan.sizes.iter().copied().max().unwrap_or(elem);
    let max_elems = usize::try_from(max_bytes / elem)
        .map_err(|_| format!("{max_bytes} bytes do not fit this machine's memory"))?;
    let mut input = vec![T::from_f32(0.0); max_elems];
    let mut output = vec![T::from_f32(0.0); max_elems];
    let table = expected_table::<T>(world, plan.op)?;
    let mut series: Vec<Series> = Vec::new();
    for mode in &plan.modes {
        for spec in &plan.specs {
            series.push(Series::new(&spec.name, Source::Inc, *mode));
        }
    }
    let total = plan.warmup + plan.iters;
    for &bytes in &plan.sizes {
        let n = usize::try_from(bytes / elem)
            .unwrap_or(usize::MAX)
            .min(max_elems);
        let inp = input.get_mut(..n).ok_or("size out of range")?;
        let out = output.get_mut(..n).ok_or("size out of range")?;
        for (k, (spec, comm)) in plan.specs.iter().zip(comms).enumerate() {
            let fit = fits(comm, spec, bytes, plan.dtype);
            for (m, mode) in plan.modes.iter().enumerate() {
                let idx = m * plan.specs.len() + k;
                let sample = match &fit {
                    Err(why) => Sample {
                        note: Some(why.clone()),
                        ..Sample::default()
                    },
                    Ok(path) => {
                        let mut times = Vec::with_capacity(plan.iters);
                        let mut wrong = 0u64;
                        for rep in 0..total {
                            fill(inp, rank, rep);
                            out.fill(T::from_f32(-1.0));
                            barrier(ctrl)?;
                            let calls = match mode {
                                Mode::Eager => 1,
                                Mode::Graph => plan.graph_calls.max(1),
                            };
                            let t0 = Instant::now();
                            for _ in 0..calls {
                                one_call(comm, inp, out, plan.op).map_err(|e| {
                                    format!("{} at {bytes} B ({}): {e}", spec.name, mode.name())
                                })?;
                            }
                            let us = t0.elapsed().as_secs_f64() * 1e6 / calls as f64;
                            wrong = wrong.saturating_add(count_wrong(out, &table, rep));
                            if rep >= plan.warmup {
                                times.push(us as f32);
                            }
                        }
                        // Slowest rank per repetition, and #wrong summed over the ranks.
                        ctrl.allreduce_host(&mut times, ReduceOp::Max)
                            .and_then(|w| w.wait())
                            .map_err(|e| format!("gathering times: {e}"))?;
                        let mut w = [wrong as f32];
                        ctrl.allreduce_host(&mut w, ReduceOp::Sum)
                            .and_then(|w| w.wait())
                            .map_err(|e| format!("gathering #wrong: {e}"))?;
                        let t: Vec<f64> = times.iter().map(|x| f64::from(*x)).collect();
                        Sample {
                            time_us: median(&t),
                            wrong: w.first().map_or(0, |x| *x as u64),
                            path: matches!(spec.which, Which::Auto)
                                .then(|| path.name().to_string()),
                            note: None,
                        }
                    }
                };
                if let Some(s) = series.get_mut(idx) {
                    s.samples.push(sample);
                }
            }
        }
    }
    if rank != 0 {
        return Ok(None);
    }
    let first = comms.first().unwrap_or(ctrl);
    let mut notes = vec![format!(
        "{} rank(s) as {}",
        world,
        match plan.launch {
            Launch::Threads(_) => "threads of one process",
            Launch::Env => "processes (inc launch)",
        }
    )];
    notes.extend(plan.notes.iter().cloned());
    Ok(Some(Report {
        backend: first.backend().name().to_string(),
        device: "CPU simulator".into(),
        driver: "sim".into(),
        topology: first.topology().name().to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_periodic_and_small() {
        for r in 0..8 {
            for rep in 0..5 {
                for i in 0..100 {
                    let v = pattern(i, r, rep);
                    assert!(v < PERIOD);
                    assert_eq!(v, pattern(i + PERIOD, r, rep));
                }
            }
        }
        // Ranks differ from one another.
        let firsts: Vec<usize> = (0..8).map(|r| pattern(0, r, 0)).collect();
        let mut d = firsts.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), 8);
    }

    #[test]
    fn fill_matches_pattern() {
        let mut v = vec![0f32; 100];
        fill(&mut v, 3, 4);
        for (i, x) in v.iter().enumerate() {
            assert_eq!(*x as usize, pattern(i, 3, 4));
        }
    }

    fn simulate<T: Element>(world: usize, op: ReduceOp, n: usize, rep: usize) -> Vec<T> {
        let ins: Vec<Vec<T>> = (0..world)
            .map(|r| {
                let mut v = vec![T::from_f32(0.0); n];
                fill(&mut v, r, rep);
                v
            })
            .collect();
        (0..n)
            .map(|i| {
                let vals = ins.iter().map(|v| v[i].to_f32());
                let x = match op {
                    ReduceOp::Sum => vals.sum::<f32>(),
                    ReduceOp::Avg => vals.sum::<f32>() * (1.0 / world as f32),
                    ReduceOp::Min => vals.fold(f32::INFINITY, f32::min),
                    ReduceOp::Max => vals.fold(f32::NEG_INFINITY, f32::max),
                };
                T::from_f32(x)
            })
            .collect()
    }

    #[test]
    fn checker_accepts_right_and_counts_wrong() {
        for world in [1, 2, 3, 8] {
            for op in ReduceOp::ALL {
                let table = expected_table::<bf16>(world, op).unwrap();
                for rep in [0, 1, 7] {
                    let mut out = simulate::<bf16>(world, op, 200, rep);
                    assert_eq!(
                        count_wrong(&out, &table, rep),
                        0,
                        "world {world} {op} rep {rep}"
                    );
                    out[17] = bf16::from_f32(1000.0);
                    out[150] = bf16::from_f32(-3.0);
                    assert_eq!(count_wrong(&out, &table, rep), 2);
                    // Last repetition's output is wrong for this repetition (stale data).
                    if world > 1 || op == ReduceOp::Sum {
                        let stale = simulate::<bf16>(world, op, 200, rep + 1);
                        assert!(count_wrong(&stale, &table, rep) > 0);
                    }
                }
            }
        }
        let t = expected_table::<f32>(4, ReduceOp::Sum).unwrap();
        let out = simulate::<f32>(4, ReduceOp::Sum, 64, 2);
        assert_eq!(count_wrong(&out, &t, 2), 0);
        let t = expected_table::<f16>(8, ReduceOp::Avg).unwrap();
        let out = simulate::<f16>(8, ReduceOp::Avg, 64, 5);
        assert_eq!(count_wrong(&out, &t, 5), 0);
    }
}
