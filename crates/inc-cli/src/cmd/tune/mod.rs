//! `inc tune`: measures every algorithm at every size on this machine (the same loop as
//! `inc bench`) and writes the threshold table that `auto` uses when `INC_TUNE_FILE`
//! points to it.
//!
//! # File format (`inc-tune/1`)
//!
//! ```json
//! {
//!   "format": "inc-tune/1",
//!   "rules": [
//!     {"gpu": "NVIDIA H200", "driver": "570.86.15", "world": 2, "class": "fully_connected",
//!      "max_bytes": 262144, "algo": "one-shot"},
//!     {"gpu": "NVIDIA H200", "driver": "570.86.15", "world": 2, "class": "fully_connected",
//!      "max_bytes": 67108864, "algo": "two-shot"}
//!   ],
//!   "machines": [
//!     {"gpu": "...", "driver": "...", "world": 2, "class": "fully_connected", "backend": "cuda",
//!      "dtype": "bf16", "op": "sum", "mode": "graph", "iters": 20, "created_unix": 1700000000,
//!      "sizes": [{"size_bytes": 1024, "best": "one-shot", "time_us": {"one-shot": 2.1, ...}}]}
//!   ]
//! }
//! ```
//!
//! A table is keyed by (gpu model, driver, world size, topology class): `rules` holds the
//! rules of every key, each rule naming its key; a call of `b` bytes takes the first rule
//! of its key whose `max_bytes >= b` (rules of one key are sorted by `max_bytes`); calls
//! larger than every rule use the built-in thresholds. A rule may also name a `dtype`
//! (written with `--per-dtype`). `machines` keeps the measurements the rules came from.
//! Tuning again for the same key replaces that key's rules and keeps the others. This is
//! the `{"rules": [...]}` shape that `inc_comm::TuneTable::parse` reads (it ignores the
//! extra fields); the written file is re-read with it before `inc tune` succeeds.

use std::path::PathBuf;
use std::process::ExitCode;

use inc_comm::AlgoPath as Path;

use super::bench::{self, Which};

mod table;

use table::{from_report, load, merge, TuneFile};

/// Arguments of `inc tune`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Where to write the table (default: $INC_TUNE_FILE). An existing table is merged:
    /// rules of other machines/world sizes are kept.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Data backend: auto, cuda or sim.
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Element type measured: bf16, f16 or f32.
    #[arg(long, default_value = "bf16")]
    pub dtype: String,
    /// Reduction measured.
    #[arg(long, default_value = "sum")]
    pub op: String,
    /// Sizes (as `inc bench --sizes`). Default 1K:64M on cuda, 1K:1M on sim.
    #[arg(long)]
    pub sizes: Option<String>,
    /// Timed repetitions per size and algorithm.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Untimed repetitions.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Tune for one host-launched call at a time instead of back-to-back calls in a CUDA
    /// graph (the default on cuda; sim always times eager calls unless --graph).
    #[arg(long, conflicts_with = "graph")]
    pub eager: bool,
    /// Tune on back-to-back calls (CUDA graph).
    #[arg(long)]
    pub graph: bool,
    /// Ranks as threads of this process (default 2; not under `inc launch`).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Keep the current winner at the next size unless another path beats it by more than
    /// this fraction (stops noise from flipping the choice back and forth).
    #[arg(long, default_value_t = 0.03)]
    pub tolerance: f64,
    /// Tag the rules with the dtype measured (default: rules apply to every dtype, since
    /// thresholds are in bytes).
    #[arg(long)]
    pub per_dtype: bool,
    /// Sim backend only: the topology to pretend (full, hcm, none).
    #[arg(long)]
    pub sim_topology: Option<String>,
    /// Print the table to stdout instead of writing it.
    #[arg(long)]
    pub dry_run: bool,
}

/// The paths `inc tune` measures: every intra-node path, and NCCL on cuda.
fn tune_algos(sim: bool) -> String {
    let mut paths: Vec<Path> = Path::ALL
        .into_iter()
        .filter(|p| !sim || p.algo().is_some())
        .collect();
    paths.sort();
    paths.iter().map(|p| p.name()).collect::<Vec<_>>().join(",")
}

fn bench_args(a: &Args, sim: bool) -> bench::Args {
    let graph = a.graph || (!a.eager && !sim);
    bench::Args {
        backend: a.backend.clone(),
        algo: tune_algos(sim),
        compare: None,
        dtype: a.dtype.clone(),
        op: a.op.clone(),
        sizes: a.sizes.clone(),
        iters: a.iters,
        warmup: a.warmup,
        graph,
        eager: !graph,
        both: false,
        graph_calls: None,
        threads: a.threads,
        csv: None,
        json: None,
        plot: None,
        tune_file: None,
        sim_topology: a.sim_topology.clone(),
        timeout: None,
    }
}

fn tune(a: &Args) -> Result<(), String> {
    if !(0.0..=1.0).contains(&a.tolerance) {
        return Err(format!(
            "bad --tolerance {}: must be between 0 and 1",
            a.tolerance
        ));
    }
    let out = match (&a.out, std::env::var_os("INC_TUNE_FILE")) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(p)) if !p.is_empty() => Some(PathBuf::from(p)),
        _ if a.dry_run => None,
        _ => return Err("say where to write the table: --out FILE or INC_TUNE_FILE".into()),
    };
    let sim = a.backend.eq_ignore_ascii_case("sim")
        || (a.backend.eq_ignore_ascii_case("auto") && !inc_comm::cuda_available());
    let mut plan = bench::plan(&bench_args(a, sim))?;
    // Measure with the built-in thresholds, never with the table being rewritten.
    plan.opts.tune_file = None;
    plan.notes = vec!["inc tune: every path at every size".into()];
    debug_assert!(plan.specs.iter().all(|s| s.which != Which::Auto));
    let Some(report) = bench::execute(&plan)? else {
        return Ok(()); // not rank 0
    };
    print!("{}", report.table());
    if report.total_wrong() > 0 {
        return Err(format!(
            "{} wrong element(s): no table written",
            report.total_wrong()
        ));
    }
    let (machine, rules) = from_report(&report, a.tolerance, a.per_dtype);
    if rules.is_empty() {
        return Err("no path ran at any size: nothing to tune".into());
    }
    println!(
        "# tune: {} rule(s) for {} / driver {} / world {} / {}",
        rules.len(),
        machine.gpu,
        machine.driver,
        machine.world,
        machine.class
    );
    for r in &rules {
        println!("#   up to {:>12} B: {}", r.max_bytes, r.algo);
    }
    let Some(out) = out else {
        let mut f = TuneFile::default();
        merge(&mut f, machine, rules);
        println!(
            "{}",
            serde_json::to_string_pretty(&f).map_err(|e| e.to_string())?
        );
        return Ok(());
    };
    let mut file = if out.exists() {
        load(&out)?
    } else {
        TuneFile::default()
    };
    merge(&mut file, machine, rules);
    let text = serde_json::to_string_pretty(&file).map_err(|e| e.to_string())? + "\n";
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let tmp = out.with_extension("json.tmp");
    std::fs::write(&tmp, &text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &out).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    // The library must accept what we wrote.
    let t = inc_comm::TuneTable::load(&out)
        .map_err(|e| format!("the written table does not load: {e}"))?;
    println!(
        "# tune: wrote {} ({} rule(s) in all); use it with INC_TUNE_FILE={}",
        out.display(),
        t.len(),
        out.display()
    );
    Ok(())
}

/// Runs `inc tune`.
pub fn run(args: Args) -> ExitCode {
    match tune(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inc tune: {}", e.replace('\n', " "));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tune_measures_every_path() {
        let cuda = tune_algos(false);
        for p in ["one-shot", "two-shot", "hcm", "nccl"] {
            assert!(cuda.split(',').any(|x| x == p), "{cuda}");
        }
        assert_eq!(cuda.split(',').count(), Path::ALL.len());
        assert!(!tune_algos(true).split(',').any(|x| x == "nccl"));
        assert!(bench::parse_algos(&cuda).is_ok());
    }

    #[test]
    fn tune_on_sim_writes_a_table_the_library_loads() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tune.json");
        let a = Args {
            out: Some(out.clone()),
            backend: "sim".into(),
            dtype: "f32".into(),
            op: "sum".into(),
            sizes: Some("1K:8K".into()),
            iters: 2,
            warmup: 0,
            eager: true,
            graph: false,
            threads: Some(2),
            tolerance: 0.03,
            per_dtype: false,
            sim_topology: None,
            dry_run: false,
        };
        tune(&a).unwrap();
        let f = load(&out).unwrap();
        assert!(!f.rules.is_empty());
        assert!(f
            .rules
            .iter()
            .all(|r| r.world == 2 && r.gpu.as_deref() == Some("CPU simulator")));
        assert_eq!(f.rules.last().map(|r| r.max_bytes), Some(8192));
        assert_eq!(f.machines.len(), 1);
        assert_eq!(f.machines[0].sizes.len(), 4);
        // Tuning again replaces, not appends.
        tune(&a).unwrap();
        let g = load(&out).unwrap();
        assert_eq!(g.machines.len(), 1);
        let mut maxes: Vec<u64> = g.rules.iter().map(|r| r.max_bytes).collect();
        maxes.dedup();
        assert_eq!(
            maxes.len(),
            g.rules.len(),
            "rules of one key are not duplicated"
        );
        assert!(maxes.windows(2).all(|w| w[0] < w[1]), "sorted by max_bytes");
        assert!(inc_comm::TuneTable::load(&out).is_ok());
    }
}
