//! `inc bench`: allreduce latency and bandwidth per size, in nccl-tests' columns, for each
//! inc algorithm and (with `--compare nccl`) NCCL measured in the same run.
//!
//! ```text
//! inc bench [--backend auto|cuda|sim] [--algo auto|push-one-shot|one-shot|two-shot|hcm|nccl|all[,..]]
//!           [--compare nccl] [--dtype bf16|f16|f32] [--op sum|avg|min|max]
//!           [--sizes 1K:64M[:x2|:+4K]] [--iters N --warmup N] [--graph|--eager|--both]
//!           [--csv F] [--json F] [--plot F.svg] [--threads N] [--tune-file F]
//! ```
//!
//! Under `inc launch -n N` (RANK set) every process is one rank (`Comm` over the TCP
//! store); otherwise `--threads N` ranks run in this process. Rank 0 prints the table and
//! writes the files. Times are the median over `--iters` repetitions of the slowest
//! rank's time; `#wrong` counts output elements that differ from the reference, checked
//! on every rank at every repetition. The exit code is 1 when anything is wrong.
//!
//! On the sim backend the numbers are CPU simulator numbers (the header says so): the
//! point is that the whole bench path runs in CI.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use inc_comm::{AlgoPath as Path, BackendKind, CommOptions, DType, ReduceOp};

pub(crate) mod cuda;
pub(crate) mod measure;
pub(crate) mod plot;
pub(crate) mod report;
pub(crate) mod sizes;

pub(crate) use report::{Mode, Report, Sample, Series, Source};

/// Arguments of `inc bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Data backend: `auto` (GPUs when present, else the CPU simulator), `cuda` or `sim`.
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Paths to measure, comma separated: auto, push-one-shot, one-shot, two-shot, hcm,
    /// nccl (inc's NCCL fallback path), zero-copy (auto in place on a symmetric tensor:
    /// `Comm::allreduce_symmetric`, cuda only), zc-two-shot (the zero-copy two-shot
    /// forced), zc-registered (zero-copy on the bench's own cuMemAlloc buffer registered
    /// with `Comm::register_symmetric`), or all (auto + every intra-node algorithm).
    #[arg(long, default_value = "auto")]
    pub algo: String,
    /// Also measure NCCL directly on the same buffers (ordinary and, with NCCL >= 2.27,
    /// window-registered symmetric buffers). Only `nccl` is accepted.
    #[arg(long, value_name = "nccl")]
    pub compare: Option<String>,
    /// Element type: bf16, f16 or f32.
    #[arg(long, default_value = "bf16")]
    pub dtype: String,
    /// Reduction: sum, avg, min or max.
    #[arg(long, default_value = "sum")]
    pub op: String,
    /// Sizes in bytes: MIN:MAX[:xN|:+STEP] (K/M/G binary units), one size, or a comma
    /// list. Default 1K:64M on cuda, 1K:1M on sim.
    #[arg(long)]
    pub sizes: Option<String>,
    /// Timed repetitions per size (the median is reported).
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Untimed repetitions before them.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Time many back-to-back calls captured in a CUDA graph (on sim: a batch of calls).
    #[arg(long, conflicts_with_all = ["eager", "both"])]
    pub graph: bool,
    /// Time one host-launched call at a time (the default).
    #[arg(long, conflicts_with_all = ["graph", "both"])]
    pub eager: bool,
    /// Both: one table per mode.
    #[arg(long, conflicts_with_all = ["graph", "eager"])]
    pub both: bool,
    /// Calls per graph (per timing) in graph mode. Default 50 on cuda, 10 on sim.
    #[arg(long)]
    pub graph_calls: Option<usize>,
    /// Ranks as threads of this process (default 2; not under `inc launch`).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Write the results as CSV (one line per mode, algorithm and size).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Write the results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write an SVG plot of latency and bus bandwidth against size (log-log).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Autotune table for `auto` (default: $INC_TUNE_FILE); see `inc tune`.
    #[arg(long, value_name = "FILE")]
    pub tune_file: Option<PathBuf>,
    /// Sim backend only: the topology to pretend (full, hcm, none); hcm needs 8 ranks.
    #[arg(long)]
    pub sim_topology: Option<String>,
    /// Seconds every wait may take before the run fails (default: $INC_TIMEOUT_MS or 30 s).
    #[arg(long)]
    pub timeout: Option<f64>,
}

/// What one series measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    /// Whatever the selector picks (the tune table when loaded).
    Auto,
    /// One pinned path (`INC_ALGO=<path>`).
    Path(Path),
    /// In place on a symmetric tensor (`Comm::allreduce_symmetric`): the selector's path
    /// (`None`: sizes it gives to two-shot run the zero-copy two-shot), or a pinned one.
    Symmetric(Option<Path>),
    /// As `Symmetric(None)` on the bench's own `cuMemAlloc` buffer registered with
    /// `Comm::register_symmetric` (at a 64-byte offset in its allocation).
    Registered,
}

/// One inc column group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeriesSpec {
    /// Column title.
    pub name: String,
    /// What it measures.
    pub which: Which,
}

/// How the ranks are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Launch {
    /// N threads of this process.
    Threads(usize),
    /// One rank per process, from torchrun's variables (`inc launch`).
    Env,
}

/// A checked, resolved `inc bench` (or `inc tune`) run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub specs: Vec<SeriesSpec>,
    pub compare_nccl: bool,
    pub modes: Vec<Mode>,
    pub dtype: DType,
    pub op: ReduceOp,
    pub sizes: Vec<u64>,
    pub iters: usize,
    pub warmup: usize,
    pub graph_calls: usize,
    pub opts: CommOptions,
    pub launch: Launch,
    pub notes: Vec<String>,
}

/// Largest `--iters`, `--warmup` and `--graph-calls`.
const MAX_REPS: usize = 100_000;

/// Parses `--algo` into column groups (in the given order, without repeats).
pub(crate) fn parse_algos(s: &str) -> Result<Vec<SeriesSpec>, String> {
    let mut out: Vec<SeriesSpec> = Vec::new();
    let mut push = |name: &str, which| {
        if !out.iter().any(|x| x.which == which) {
            out.push(SeriesSpec {
                name: name.to_string(),
                which,
            });
        }
    };
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.to_ascii_lowercase().as_str() {
            "auto" => push("auto", Which::Auto),
            "zero-copy" | "zc" => push("zero-copy", Which::Symmetric(None)),
            "zero-copy-two-shot" | "zc-two-shot" => {
                push("zc-two-shot", Which::Symmetric(Some(Path::TwoShot)))
            }
            "registered" | "zc-registered" => push("zc-registered", Which::Registered),
            "all" => {
                push("auto", Which::Auto);
                for p in [Path::PushOneShot, Path::OneShot, Path::TwoShot, Path::Hcm] {
                    push(p.name(), Which::Path(p));
                }
            }
            other => {
                let p: Path = other.parse().map_err(|_| {
                    format!(
                        "bad --algo {part:?}: expected auto, push-one-shot, one-shot, two-shot, hcm, nccl, zero-copy, zc-two-shot, zc-registered or all"
                    )
                })?;
                push(p.name(), Which::Path(p));
            }
        }
    }
    if out.is_empty() {
        return Err("--algo is empty".into());
    }
    Ok(out)
}

fn parse_backend(s: &str) -> Result<BackendKind, String> {
    let b: BackendKind = s
        .parse()
        .map_err(|_| format!("bad --backend {s:?}: expected auto, cuda or sim"))?;
    Ok(match b {
        BackendKind::Auto if inc_comm::cuda_available() => BackendKind::Cuda,
        BackendKind::Auto => BackendKind::Sim,
        other => other,
    })
}

fn env_launch() -> bool {
    std::env::var_os("RANK").is_some() && std::env::var_os("WORLD_SIZE").is_some()
}

/// Checks the arguments and resolves defaults into a [`Plan`].
pub(crate) fn plan(args: &Args) -> Result<Plan, String> {
    let backend = parse_backend(&args.backend)?;
    let specs = parse_algos(&args.algo)?;
    let compare_nccl = match args.compare.as_deref() {
        None => false,
        Some(c) if c.eq_ignore_ascii_case("nccl") => true,
        Some(c) => return Err(format!("bad --compare {c:?}: only `nccl` is supported")),
    };
    let dtype: DType = args
        .dtype
        .parse()
        .map_err(|_| format!("bad --dtype {:?}: expected bf16, f16 or f32", args.dtype))?;
    let op: ReduceOp = args
        .op
        .parse()
        .map_err(|_| format!("bad --op {:?}: expected sum, avg, min or max", args.op))?;
    let sim = backend == BackendKind::Sim;
    let spec = args
        .sizes
        .clone()
        .unwrap_or_else(|| if sim { "1K:1M" } else { "1K:64M" }.into());
    let sizes = sizes::parse_sizes(&spec, dtype.size() as u64)?;
    if args.iters == 0 || args.iters > MAX_REPS {
        return Err(format!(
            "bad --iters {}: must be between 1 and {MAX_REPS}",
            args.iters
        ));
    }
    if args.warmup > MAX_REPS {
        return Err(format!(
            "bad --warmup {}: must be at most {MAX_REPS}",
            args.warmup
        ));
    }
    let graph_calls = args.graph_calls.unwrap_or(if sim { 10 } else { 50 });
    if graph_calls == 0 || graph_calls > MAX_REPS {
        return Err(format!(
            "bad --graph-calls {graph_calls}: must be between 1 and {MAX_REPS}"
        ));
    }
    let modes = if args.both {
        vec![Mode::Graph, Mode::Eager]
    } else if args.graph {
        vec![Mode::Graph]
    } else {
        vec![Mode::Eager]
    };
    let launch = if env_launch() {
        if args.threads.is_some() {
            return Err(
                "--threads cannot be used under inc launch (RANK is set): each process is one rank"
                    .into(),
            );
        }
        Launch::Env
    } else {
        let n = args.threads.unwrap_or(2);
        if n == 0 || n > inc_sim::MAX_RANKS {
            return Err(format!(
                "bad --threads {n}: must be between 1 and {}",
                inc_sim::MAX_RANKS
            ));
        }
        Launch::Threads(n)
    };
    let mut opts = CommOptions::from_env().map_err(|e| e.to_string())?;
    opts.backend = backend;
    if let Some(t) = args.timeout {
        if !(t > 0.0 && t <= 4_000_000.0) {
            return Err(format!(
                "bad --timeout {t}: must be between 0 and 4000000 seconds"
            ));
        }
        opts.timeout = Duration::from_secs_f64(t);
    }
    if let Some(f) = &args.tune_file {
        opts.tune_file = Some(f.clone());
    }
    if let Some(t) = &args.sim_topology {
        if !sim {
            return Err("--sim-topology only applies to the sim backend".into());
        }
        opts.sim_topology = Some(t.parse().map_err(|e: inc_comm::CommError| e.to_string())?);
    }
    if launch == Launch::Env && sim {
        // Across processes the sim backend's buffers live in shared memory.
        opts.sim_shm = true;
    }
    let max = sizes.iter().copied().max().unwrap_or(0);
    if opts.buffer_bytes.is_none() {
        let def = if sim {
            inc_comm::DEFAULT_SIM_BUFFER_BYTES
        } else {
            inc_comm::DEFAULT_CUDA_BUFFER_BYTES
        };
        if max > def {
            opts.buffer_bytes = Some(max.div_ceil(16) * 16);
        }
    }
    let mut notes = Vec::new();
    let has_auto = specs.iter().any(|s| s.which == Which::Auto);
    if has_auto {
        notes.push(match &opts.tune_file {
            Some(f) => format!("auto uses the tune table {}", f.display()),
            None => {
                "auto uses the default thresholds (no tune table: see inc tune / INC_TUNE_FILE)"
                    .into()
            }
        });
    }
    Ok(Plan {
        specs,
        compare_nccl,
        modes,
        dtype,
        op,
        sizes,
        iters: args.iters,
        warmup: args.warmup,
        graph_calls,
        opts,
        launch,
        notes,
    })
}

/// Runs a plan on its backend; rank 0 gets the report.
pub(crate) fn execute(plan: &Plan) -> Result<Option<Report>, String> {
    match plan.opts.backend {
        BackendKind::Cuda => cuda::run(plan),
        _ => {
            let mut rep = measure::run_host(plan)?;
            if let (Some(r), true) = (rep.as_mut(), plan.compare_nccl) {
                add_na_nccl(r, plan, "NCCL needs the cuda backend (this is a sim run)");
            }
            Ok(rep)
        }
    }
}

/// Adds the two NCCL column groups with every sample n/a and `why` as the note.
pub(crate) fn add_na_nccl(r: &mut Report, plan: &Plan, why: &str) {
    for mode in &plan.modes {
        for name in ["nccl", "nccl-symm"] {
            let mut s = Series::new(name, Source::Nccl, *mode);
            s.samples = r
                .sizes
                .iter()
                .map(|_| Sample {
                    note: Some(why.to_string()),
                    ..Sample::default()
                })
                .collect();
            r.series.push(s);
        }
    }
}

fn write_file(path: &std::path::Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Prints the table and writes the requested files.
pub(crate) fn emit(r: &Report, args: &Args) -> Result<(), String> {
    print!("{}", r.table());
    if let Some(p) = &args.csv {
        write_file(p, &r.csv())?;
    }
    if let Some(p) = &args.json {
        write_file(p, &(r.json()? + "\n"))?;
    }
    if let Some(p) = &args.plot {
        write_file(p, &plot::svg(r)?)?;
    }
    Ok(())
}

/// Runs `inc bench`.
pub fn run(args: Args) -> ExitCode {
    let res = plan(&args).and_then(|p| execute(&p)).and_then(|r| match r {
        Some(r) => emit(&r, &args).map(|_| r.total_wrong()),
        None => Ok(0),
    });
    match res {
        Ok(0) => ExitCode::SUCCESS,
        Ok(w) => {
            eprintln!("inc bench: {w} wrong element(s)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("inc bench: {}", e.replace('\n', " "));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: Args,
    }

    fn args(v: &[&str]) -> Args {
        let mut all = vec!["bench"];
        all.extend_from_slice(v);
        Cli::try_parse_from(all).unwrap().a
    }

    #[test]
    fn algos_parse() {
        let v = parse_algos("all").unwrap();
        let names: Vec<&str> = v.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["auto", "push-one-shot", "one-shot", "two-shot", "hcm"]
        );
        let v = parse_algos("two-shot, one_shot,two-shot,nccl").unwrap();
        let names: Vec<&str> = v.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["two-shot", "one-shot", "nccl"]);
        let v = parse_algos("auto,zero-copy,zc-two-shot,zc").unwrap();
        let w: Vec<Which> = v.iter().map(|s| s.which).collect();
        assert_eq!(
            w,
            [
                Which::Auto,
                Which::Symmetric(None),
                Which::Symmetric(Some(Path::TwoShot))
            ]
        );
        assert!(parse_algos("three-shot").is_err());
        assert!(parse_algos(",").is_err());
    }

    #[test]
    fn plan_defaults_on_sim() {
        let p = plan(&args(&["--backend", "sim"])).unwrap();
        assert_eq!(p.opts.backend, BackendKind::Sim);
        assert_eq!(p.modes, vec![Mode::Eager]);
        assert_eq!(p.sizes.first(), Some(&1024));
        assert_eq!(p.sizes.last(), Some(&(1 << 20)));
        assert_eq!(p.graph_calls, 10);
        assert_eq!(p.dtype, DType::Bf16);
        assert!(p.notes.iter().any(|n| n.contains("auto uses")));
        let p = plan(&args(&["--backend", "sim", "--both", "--sizes", "8M"])).unwrap();
        assert_eq!(p.modes, vec![Mode::Graph, Mode::Eager]);
        assert_eq!(p.opts.buffer_bytes, Some(8 << 20));
    }

    #[test]
    fn bad_arguments_are_errors() {
        for bad in [
            &["--backend", "tpu"][..],
            &["--backend", "sim", "--dtype", "f64"],
            &["--backend", "sim", "--op", "prod"],
            &["--backend", "sim", "--iters", "0"],
            &["--backend", "sim", "--threads", "9"],
            &["--backend", "sim", "--threads", "0"],
            &["--backend", "sim", "--compare", "mpi"],
            &["--backend", "sim", "--sizes", "4K:1K"],
            &["--backend", "sim", "--graph-calls", "0"],
            &["--backend", "sim", "--timeout=-1"],
            &["--backend", "sim", "--timeout", "0"],
            &["--backend", "sim", "--sim-topology", "ring"],
        ] {
            assert!(plan(&args(bad)).is_err(), "{bad:?}");
        }
        // Mutually exclusive modes are clap errors.
        assert!(Cli::try_parse_from(["bench", "--graph", "--eager"]).is_err());
    }

    #[test]
    fn sim_run_in_threads_is_right() {
        let a = args(&[
            "--backend",
            "sim",
            "--threads",
            "3",
            "--algo",
            "all",
            "--sizes",
            "1K:4K",
            "--iters",
            "2",
            "--warmup",
            "1",
            "--both",
            "--graph-calls",
            "2",
            "--op",
            "avg",
            "--dtype",
            "f16",
            "--compare",
            "nccl",
            "--timeout",
            "20",
        ]);
        let p = plan(&a).unwrap();
        let r = execute(&p).unwrap().unwrap();
        assert_eq!(r.world, 3);
        assert_eq!(r.sizes, vec![1024, 2048, 4096]);
        // 5 inc groups (auto, push-one-shot, one-shot, two-shot, hcm) + 2 NCCL groups, per mode.
        assert_eq!(r.series.len(), 14);
        assert_eq!(r.total_wrong(), 0);
        for s in r
            .series
            .iter()
            .filter(|s| s.source == Source::Inc && s.name != "hcm")
        {
            assert!(
                s.samples.iter().all(|x| x.time_us.is_some_and(|t| t > 0.0)),
                "{}",
                s.name
            );
        }
        // hcm needs a hybrid cube mesh of 8: n/a with the reason.
        let hcm = r.series.iter().find(|s| s.name == "hcm").unwrap();
        assert!(hcm
            .samples
            .iter()
            .all(|x| x.time_us.is_none() && x.note.is_some()));
        let auto = r.series.iter().find(|s| s.name == "auto").unwrap();
        assert_eq!(auto.samples[0].path.as_deref(), Some("push-one-shot"));
        let t = r.table();
        assert!(t.contains("NOT GPU numbers"));
        assert!(t.contains("NCCL needs the cuda backend"));
    }
}
