//! `inc sim`: check an allreduce signal protocol on the CPU simulator (inc-sim).
//!
//! Exit status: 0 no violation, 1 violations found (or replayed), 2 bad arguments.
//!
//! `--json` writes the configuration and, per violation, its shrunk schedule (one line of
//! text, [`inc_sim::format_schedule`]); `inc sim --replay FILE` reads such a report back,
//! re-runs the schedule of violation `--violation N` (default 0) and prints its trace.
//!
//! `--form lines` checks the copy-in two-shot in its form of lines (PROTOCOL.md "two-shot
//! of lines"; inc-sim's lines family, [`SimConfig::lines`]) instead of its barrier form.

use std::io::Write as _;
use std::process::ExitCode;

use inc_sim::{
    check, format_schedule, parse_schedule, replay, Algo, Protocol, RandomMode, Scheduler,
    SimConfig,
};

/// Arguments of `inc sim`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Protocol set: `seed` (what the seed's kernels do) or `inc` (PROTOCOL.md); `inc` when
    /// omitted with `--form lines`.
    #[arg(long, value_parser = parse::<Protocol>, required_unless_present_any = ["replay", "form"])]
    pub protocol: Option<Protocol>,
    /// Algorithm: one-shot, two-shot, hcm (hcm needs --world 8) or push-one-shot.
    #[arg(long, value_parser = parse::<Algo>, required_unless_present = "replay")]
    pub algo: Option<Algo>,
    /// Ranks (1..=8).
    #[arg(long, default_value_t = 2)]
    pub world: usize,
    /// Bytes per rank per call (multiple of 4).
    #[arg(long, default_value_t = 64)]
    pub bytes: usize,
    /// Consecutive calls.
    #[arg(long, default_value_t = 2)]
    pub calls: usize,
    /// Schedules to run.
    #[arg(long, default_value_t = 1000)]
    pub schedules: u64,
    /// First schedule's seed (schedule i uses seed + i).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Blocks per call, comma separated and cycled (e.g. `2,1,3`).
    #[arg(long, default_value = "2", value_delimiter = ',')]
    pub blocks: Vec<usize>,
    /// Scheduler: pct (default: random priorities per block and store buffer, finds deep
    /// races at any size), random (uniform random walk), adversarial (rank `--slow-rank`
    /// lags) or exhaustive (bounded by `--depth`).
    #[arg(long, default_value = "pct")]
    pub scheduler: String,
    /// Bug depth targeted by the pct scheduler (`depth - 1` priority change points).
    #[arg(long, default_value_t = RandomMode::PCT_DEPTH)]
    pub pct_depth: usize,
    /// The lagging rank of the adversarial scheduler.
    #[arg(long, default_value_t = 1)]
    pub slow_rank: usize,
    /// Branching choice points of the exhaustive scheduler.
    #[arg(long, default_value_t = 16)]
    pub depth: usize,
    /// Print a JSON report instead of text (with each violation's shrunk schedule).
    #[arg(long)]
    pub json: bool,
    /// Re-run the schedule of a violation saved by `--json` and print its trace (the
    /// configuration comes from the file; other options are ignored).
    #[arg(long, value_name = "FILE")]
    pub replay: Option<std::path::PathBuf>,
    /// Which violation of the `--replay` file (0 = the first).
    #[arg(long, default_value_t = 0)]
    pub violation: usize,
    /// The copy-in two-shot's calls as pieces of one call: every call but the last leaves
    /// its Gather to the next call's GatherPrev (PROTOCOL.md "Deferred gather"; protocol
    /// inc, algo two-shot only).
    #[arg(long)]
    pub deferred_gather: bool,
    /// Form of the copy-in two-shot (--algo two-shot only): `barrier` (the default: scatter,
    /// barrier, reduce, barrier, gather) or `lines` (128-byte flagged lines, no barriers;
    /// PROTOCOL.md "two-shot of lines"; protocol inc, at most 7560 bytes, world >= 2).
    #[arg(long, value_enum)]
    pub form: Option<Form>,
}

/// `--form`: which form of the copy-in two-shot `inc sim` checks.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// The barrier form (inc-sim's barrier family).
    Barrier,
    /// The two-shot of lines (inc-sim's lines family, [`SimConfig::lines`]).
    Lines,
}

fn parse<T: std::str::FromStr>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>().map_err(|e| e.to_string())
}

fn emit(text: &str) {
    // A closed pipe (e.g. `| head`) is not an error worth a panic.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn bad(msg: String) -> ExitCode {
    eprintln!("inc sim: {msg}");
    ExitCode::from(2)
}

/// The replayable part of a configuration, as written into `--json`.
fn config_json(cfg: &SimConfig) -> serde_json::Value {
    serde_json::json!({
        "protocol": cfg.protocol.name(),
        "algo": cfg.algo.name(),
        "world": cfg.world,
        "bytes": cfg.bytes,
        "calls": cfg.calls,
        "blocks": cfg.blocks,
        "deferred_gather": cfg.deferred_gather,
        "lines": cfg.lines,
    })
}

/// `--replay FILE`: the configuration and violation `index`'s schedule from a `--json`
/// report.
fn load_replay(
    path: &std::path::Path,
    index: usize,
) -> Result<(SimConfig, Vec<inc_sim::Decision>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let c = &v["config"];
    let field = |k: &str| {
        c[k].as_u64()
            .map(|x| x as usize)
            .ok_or_else(|| format!("{}: config.{k} missing", path.display()))
    };
    let name = |k: &str| {
        c[k].as_str()
            .ok_or_else(|| format!("{}: config.{k} missing", path.display()))
    };
    let protocol = parse::<Protocol>(name("protocol")?)?;
    let algo = parse::<Algo>(name("algo")?)?;
    let mut cfg = SimConfig::new(
        protocol,
        algo,
        field("world")?,
        field("bytes")?,
        field("calls")?,
    );
    cfg.blocks = c["blocks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_u64().map(|x| x as usize))
                .collect()
        })
        .ok_or_else(|| format!("{}: config.blocks missing", path.display()))?;
    // Absent in reports written before the option existed.
    cfg.deferred_gather = c["deferred_gather"].as_bool().unwrap_or(false);
    cfg.lines = c["lines"].as_bool().unwrap_or(false);
    let viol = v["violations"]
        .as_array()
        .and_then(|a| a.get(index))
        .ok_or_else(|| format!("{}: no violation {index}", path.display()))?;
    let sched = viol["schedule"]
        .as_str()
        .ok_or_else(|| format!("{}: violation {index} has no schedule", path.display()))?;
    let schedule = parse_schedule(sched).map_err(|e| e.to_string())?;
    Ok((cfg, schedule))
}

fn run_replay(path: &std::path::Path, index: usize) -> ExitCode {
    let (cfg, schedule) = match load_replay(path, index) {
        Ok(x) => x,
        Err(e) => return bad(e),
    };
    let report = match replay(&cfg, &schedule) {
        Ok(r) => r,
        Err(e) => return bad(e.to_string()),
    };
    let mut text = format!(
        "inc sim --replay: protocol {} algo {}{} world {} bytes {} calls {} blocks {:?}: {} decisions, {} steps\n",
        cfg.protocol,
        cfg.algo,
        form_text(&cfg),
        cfg.world,
        cfg.bytes,
        cfg.calls,
        cfg.blocks,
        schedule.len(),
        report.steps
    );
    match report.violations.first() {
        Some(v) => {
            text.push_str(&format!("{}: {}\n", v.kind.name(), v.message));
            for l in &v.trace {
                text.push_str(&format!("  {l}\n"));
            }
        }
        None => text.push_str("no violation (the schedule does not reproduce one)\n"),
    }
    emit(&text);
    if report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// ` form lines` for the form of lines, else nothing.
fn form_text(cfg: &SimConfig) -> &'static str {
    if cfg.lines {
        " form lines"
    } else {
        ""
    }
}

/// Runs `inc sim`.
pub fn run(args: Args) -> ExitCode {
    if let Some(path) = &args.replay {
        return run_replay(path, args.violation);
    }
    let lines = args.form == Some(Form::Lines);
    // The form of lines exists in protocol inc only: it needs no --protocol.
    let protocol = args.protocol.or(lines.then_some(Protocol::Inc));
    let (Some(protocol), Some(algo)) = (protocol, args.algo) else {
        return bad("--protocol and --algo are required".into());
    };
    if args.form.is_some() && algo != Algo::TwoShot {
        return bad(format!(
            "--form {} is a form of the copy-in two-shot (--algo two-shot), not {algo}",
            if lines { "lines" } else { "barrier" }
        ));
    }
    let mut cfg = SimConfig::new(protocol, algo, args.world, args.bytes, args.calls);
    cfg.deferred_gather = args.deferred_gather;
    cfg.lines = lines;
    match args.scheduler.as_str() {
        "pct" => {
            cfg.scheduler = Scheduler::Random;
            cfg.random = RandomMode::Pct {
                depth: args.pct_depth,
            };
        }
        "random" => {
            cfg.scheduler = Scheduler::Random;
            cfg.random = RandomMode::Walk;
        }
        "adversarial" => {
            cfg.scheduler = Scheduler::Adversarial {
                slow_rank: args.slow_rank,
                stall: None,
            }
        }
        "exhaustive" => cfg.scheduler = Scheduler::Exhaustive { depth: args.depth },
        other => {
            return bad(format!(
                "unknown scheduler {other:?} (pct|random|adversarial|exhaustive)"
            ))
        }
    }
    cfg.blocks = args.blocks.clone();
    let report = match check(&cfg, args.schedules, args.seed) {
        Ok(r) => r,
        Err(e) => return bad(e.to_string()),
    };
    let mut text = String::new();
    if args.json {
        let violations: Vec<serde_json::Value> = report
            .violations
            .iter()
            .map(|v| {
                serde_json::json!({
                    "kind": v.kind.name(),
                    "message": v.message,
                    "seed": v.seed,
                    "trace": v.trace,
                    "shrunk": v.shrink.is_some(),
                    "events": v.events,
                    "schedule": format_schedule(&v.schedule),
                })
            })
            .collect();
        let out = serde_json::json!({
            "protocol": report.protocol.name(),
            "algo": report.algo.name(),
            "world": report.world,
            "scheduler": args.scheduler,
            "schedules": report.schedules,
            "failing_schedules": report.failing_schedules,
            "steps": report.steps,
            "config": config_json(&cfg),
            "violations": violations,
        });
        text = format!("{out}\n");
    } else {
        text.push_str(&format!(
            "inc sim: protocol {} algo {}{} world {} bytes {} calls {} scheduler {}: {} schedules ({} steps), {} with violations\n",
            report.protocol,
            report.algo,
            form_text(&cfg),
            report.world,
            args.bytes,
            args.calls,
            args.scheduler,
            report.schedules,
            report.steps,
            report.failing_schedules
        ));
        let mut kinds: Vec<&str> = report.violations.iter().map(|v| v.kind.name()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        if let Some(v) = report.violations.first() {
            text.push_str(&format!(
                "violation kinds: {}\nfirst violation:\n",
                kinds.join(", ")
            ));
            text.push_str(&v.render());
            text.push_str("  (--json carries its schedule; inc sim --replay FILE re-runs it)\n");
        } else {
            text.push_str("no violations\n");
        }
    }
    emit(&text);
    if report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
