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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use inc_comm::AlgoPath as Path;
use serde::{Deserialize, Serialize};

use super::bench::{self, Mode, Report, Which};

/// Format tag written in every table.
pub const FORMAT: &str = "inc-tune/1";

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

/// One rule (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// GPU model of the key.
    #[serde(default)]
    pub gpu: Option<String>,
    /// Driver version of the key.
    #[serde(default)]
    pub driver: Option<String>,
    /// World size.
    pub world: usize,
    /// Topology class.
    #[serde(default)]
    pub class: Option<String>,
    /// Element type, when the rule is for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// Largest call (bytes) the rule covers.
    pub max_bytes: u64,
    /// `one-shot`, `two-shot`, `hcm` or `nccl`.
    pub algo: String,
}

/// The measurements behind one key's rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// GPU model.
    pub gpu: String,
    /// Driver version.
    pub driver: String,
    /// World size.
    pub world: usize,
    /// Topology class.
    pub class: String,
    /// Backend measured.
    pub backend: String,
    /// Element type measured.
    pub dtype: String,
    /// Reduction measured.
    pub op: String,
    /// `graph` or `eager`.
    pub mode: String,
    /// Repetitions per point.
    pub iters: usize,
    /// When (seconds since the Unix epoch).
    pub created_unix: u64,
    /// Per size: the winner and every path's median time.
    pub sizes: Vec<Measured>,
}

/// One size of a [`Machine`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Bytes.
    pub size_bytes: u64,
    /// The chosen path (`-` when none ran).
    pub best: String,
    /// Median microseconds per path that ran.
    pub time_us: BTreeMap<String, f64>,
}

/// A whole tune file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneFile {
    /// [`FORMAT`].
    pub format: String,
    /// Every key's rules.
    pub rules: Vec<Rule>,
    /// Every key's measurements.
    #[serde(default)]
    pub machines: Vec<Machine>,
}

impl Default for TuneFile {
    fn default() -> Self {
        Self {
            format: FORMAT.into(),
            rules: Vec::new(),
            machines: Vec::new(),
        }
    }
}

/// Reads a tune file written by `inc tune`.
pub fn load(path: &std::path::Path) -> Result<TuneFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let f: TuneFile = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not an inc tune table: {e}", path.display()))?;
    if f.format != FORMAT {
        return Err(format!(
            "{}: format {:?}, expected {FORMAT:?}",
            path.display(),
            f.format
        ));
    }
    Ok(f)
}

/// Chooses a path per size and folds the choices into `(max_bytes, path)` rules.
///
/// `times[k]` holds path `k`'s median time per size (`None`: it did not run). At each
/// size the fastest path wins, except that the previous size's winner is kept while it
/// is within `tolerance` (a fraction) of the fastest. Sizes where nothing ran give no
/// rule. Consecutive sizes with the same winner become one rule ending at the last one.
pub fn derive_rules(
    sizes: &[u64],
    times: &[(Path, Vec<Option<f64>>)],
    tolerance: f64,
) -> Vec<(u64, Path)> {
    let tol = if tolerance.is_finite() && tolerance > 0.0 {
        tolerance
    } else {
        0.0
    };
    let mut winners: Vec<(u64, Path)> = Vec::new();
    let mut prev: Option<Path> = None;
    for (i, &b) in sizes.iter().enumerate() {
        let at = |p: Path| {
            times
                .iter()
                .find(|(q, _)| *q == p)
                .and_then(|(_, v)| v.get(i).copied().flatten())
                .filter(|t| t.is_finite() && *t > 0.0)
        };
        let best = times
            .iter()
            .filter_map(|(p, _)| at(*p).map(|t| (*p, t)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((mut win, tbest)) = best else {
            continue;
        };
        if let Some(p) = prev {
            if at(p).is_some_and(|t| t <= tbest * (1.0 + tol)) {
                win = p;
            }
        }
        prev = Some(win);
        winners.push((b, win));
    }
    let mut rules: Vec<(u64, Path)> = Vec::new();
    for (b, p) in winners {
        match rules.last_mut() {
            Some(last) if last.1 == p => last.0 = b,
            _ => rules.push((b, p)),
        }
    }
    rules
}

/// Replaces `file`'s rules and measurements of `machine`'s key with the new ones.
///
/// New rules without a dtype replace every rule of the key; new per-dtype rules replace
/// the key's rules of that dtype and go first (lookup takes the first match, so a rule for
/// one dtype must come before the key's rules for any dtype).
pub fn merge(file: &mut TuneFile, machine: Machine, rules: Vec<Rule>) {
    let same = |gpu: Option<&str>, driver: Option<&str>, world: usize, class: Option<&str>| {
        gpu == Some(machine.gpu.as_str())
            && driver == Some(machine.driver.as_str())
            && world == machine.world
            && class == Some(machine.class.as_str())
    };
    let new_dtype = rules.first().and_then(|r| r.dtype.clone());
    file.rules.retain(|r| {
        let mine = same(
            r.gpu.as_deref(),
            r.driver.as_deref(),
            r.world,
            r.class.as_deref(),
        );
        !mine || (new_dtype.is_some() && r.dtype != new_dtype)
    });
    file.machines.retain(|m| {
        !(same(Some(&m.gpu), Some(&m.driver), m.world, Some(&m.class)) && m.dtype == machine.dtype)
    });
    if new_dtype.is_some() {
        file.rules.splice(0..0, rules);
    } else {
        file.rules.extend(rules);
    }
    file.machines.push(machine);
}

/// Builds the machine record and rules from a report of every path.
pub fn from_report(report: &Report, tolerance: f64, per_dtype: bool) -> (Machine, Vec<Rule>) {
    let mode = report.modes().first().copied().unwrap_or(Mode::Eager);
    let times: Vec<(Path, Vec<Option<f64>>)> = report
        .series
        .iter()
        .filter(|s| s.mode == mode)
        .filter_map(|s| {
            let p: Path = s.name.parse().ok()?;
            Some((p, s.samples.iter().map(|x| x.time_us).collect()))
        })
        .collect();
    let derived = derive_rules(&report.sizes, &times, tolerance);
    let best_at = |b: u64| {
        derived
            .iter()
            .find(|(max, _)| b <= *max)
            .map_or("-".to_string(), |(_, p)| p.name().to_string())
    };
    let sizes = report
        .sizes
        .iter()
        .enumerate()
        .map(|(i, &b)| Measured {
            size_bytes: b,
            best: best_at(b),
            time_us: times
                .iter()
                .filter_map(|(p, v)| {
                    v.get(i)
                        .copied()
                        .flatten()
                        .map(|t| (p.name().to_string(), t))
                })
                .collect(),
        })
        .collect();
    let created_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let machine = Machine {
        gpu: report.device.clone(),
        driver: report.driver.clone(),
        world: report.world,
        class: report.topology.clone(),
        backend: report.backend.clone(),
        dtype: report.dtype.name().into(),
        op: report.op.name().into(),
        mode: mode.name().into(),
        iters: report.iters,
        created_unix,
        sizes,
    };
    let rules = derived
        .into_iter()
        .map(|(max_bytes, p)| Rule {
            gpu: Some(report.device.clone()),
            driver: Some(report.driver.clone()),
            world: report.world,
            class: Some(report.topology.clone()),
            dtype: per_dtype.then(|| report.dtype.name().to_string()),
            max_bytes,
            algo: p.name().into(),
        })
        .collect();
    (machine, rules)
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

    fn t(v: &[f64]) -> Vec<Option<f64>> {
        v.iter()
            .map(|x| if *x > 0.0 { Some(*x) } else { None })
            .collect()
    }

    #[test]
    fn rules_follow_the_fastest_path() {
        let sizes = [1, 2, 4, 8, 16];
        let times = vec![
            (Path::OneShot, t(&[1.0, 1.0, 2.0, 5.0, 9.0])),
            (Path::TwoShot, t(&[3.0, 3.0, 3.0, 4.0, 6.0])),
        ];
        assert_eq!(
            derive_rules(&sizes, &times, 0.0),
            vec![(4, Path::OneShot), (16, Path::TwoShot)]
        );
    }

    #[test]
    fn tolerance_keeps_the_incumbent_and_gaps_are_skipped() {
        let sizes = [1, 2, 4, 8];
        let times = vec![
            (Path::OneShot, t(&[1.0, 2.02, 0.0, 5.0])),
            (Path::TwoShot, t(&[3.0, 2.0, 0.0, 4.0])),
        ];
        // At 2 one-shot is within 3% of two-shot: kept. At 4 nothing ran. At 8 two-shot wins.
        assert_eq!(
            derive_rules(&sizes, &times, 0.03),
            vec![(2, Path::OneShot), (8, Path::TwoShot)]
        );
        assert_eq!(
            derive_rules(&sizes, &times, 0.0),
            vec![(1, Path::OneShot), (8, Path::TwoShot)]
        );
        assert!(derive_rules(&sizes, &[], 0.0).is_empty());
    }

    fn machine(gpu: &str, world: usize, dtype: &str) -> Machine {
        Machine {
            gpu: gpu.into(),
            driver: "1".into(),
            world,
            class: "fully_connected".into(),
            backend: "sim".into(),
            dtype: dtype.into(),
            op: "sum".into(),
            mode: "eager".into(),
            iters: 1,
            created_unix: 0,
            sizes: vec![],
        }
    }

    fn rule(gpu: &str, world: usize, max: u64, algo: &str) -> Rule {
        Rule {
            gpu: Some(gpu.into()),
            driver: Some("1".into()),
            world,
            class: Some("fully_connected".into()),
            dtype: None,
            max_bytes: max,
            algo: algo.into(),
        }
    }

    #[test]
    fn merge_replaces_only_the_same_key() {
        let mut f = TuneFile::default();
        merge(
            &mut f,
            machine("A", 2, "bf16"),
            vec![rule("A", 2, 10, "one-shot"), rule("A", 2, 20, "two-shot")],
        );
        merge(
            &mut f,
            machine("A", 4, "bf16"),
            vec![rule("A", 4, 10, "one-shot")],
        );
        merge(
            &mut f,
            machine("B", 2, "bf16"),
            vec![rule("B", 2, 10, "two-shot")],
        );
        assert_eq!(f.rules.len(), 4);
        merge(
            &mut f,
            machine("A", 2, "bf16"),
            vec![rule("A", 2, 99, "one-shot")],
        );
        assert_eq!(f.rules.len(), 3);
        assert_eq!(f.machines.len(), 3);
        assert!(f
            .rules
            .iter()
            .any(|r| r.gpu.as_deref() == Some("A") && r.world == 2 && r.max_bytes == 99));
        assert!(!f
            .rules
            .iter()
            .any(|r| r.gpu.as_deref() == Some("A") && r.world == 2 && r.max_bytes == 20));
        // The library reads the file.
        let text = serde_json::to_string(&f).unwrap();
        let table = inc_comm::TuneTable::parse(&text).unwrap();
        assert_eq!(table.len(), 3);
        // Per-dtype rules go first (first match wins) and replace only their dtype.
        let mut r = rule("A", 4, 5, "two-shot");
        r.dtype = Some("f32".into());
        merge(&mut f, machine("A", 4, "f32"), vec![r]);
        assert_eq!(f.rules[0].dtype.as_deref(), Some("f32"));
        assert_eq!(f.rules.len(), 4);
        // A dtype-less retune of the key replaces all of its rules.
        merge(
            &mut f,
            machine("A", 4, "bf16"),
            vec![rule("A", 4, 10, "one-shot")],
        );
        assert_eq!(f.rules.len(), 3);
        assert!(f.rules.iter().all(|r| r.dtype.is_none()));
    }

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
    fn load_checks_the_format() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        std::fs::write(&p, r#"{"format":"other","rules":[]}"#).unwrap();
        assert!(load(&p).is_err());
        std::fs::write(&p, "garbage").unwrap();
        assert!(load(&p).is_err());
        std::fs::write(&p, serde_json::to_string(&TuneFile::default()).unwrap()).unwrap();
        assert_eq!(load(&p).unwrap(), TuneFile::default());
        assert!(load(&dir.path().join("missing.json")).is_err());
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
