//! `inc sim`: check an allreduce signal protocol on the CPU simulator (inc-sim).
//!
//! Exit status: 0 no violation, 1 violations found, 2 bad arguments.

use std::io::Write as _;
use std::process::ExitCode;

use inc_sim::{check, Algo, Protocol, Scheduler, SimConfig};

/// Arguments of `inc sim`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Protocol set: `seed` (what the seed's kernels do) or `inc` (PROTOCOL.md).
    #[arg(long, value_parser = parse::<Protocol>)]
    pub protocol: Protocol,
    /// Algorithm: one-shot, two-shot or hcm (hcm needs --world 8).
    #[arg(long, value_parser = parse::<Algo>)]
    pub algo: Algo,
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
    /// Scheduler: random, adversarial (rank `--slow-rank` lags) or exhaustive (bounded by `--depth`).
    #[arg(long, default_value = "random")]
    pub scheduler: String,
    /// The lagging rank of the adversarial scheduler.
    #[arg(long, default_value_t = 1)]
    pub slow_rank: usize,
    /// Branching choice points of the exhaustive scheduler.
    #[arg(long, default_value_t = 16)]
    pub depth: usize,
    /// Print a JSON report instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse<T: std::str::FromStr>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>().map_err(|e| e.to_string())
}

/// Runs `inc sim`.
pub fn run(args: Args) -> ExitCode {
    let scheduler = match args.scheduler.as_str() {
        "random" => Scheduler::Random,
        "adversarial" => Scheduler::Adversarial {
            slow_rank: args.slow_rank,
            stall: None,
        },
        "exhaustive" => Scheduler::Exhaustive { depth: args.depth },
        other => {
            eprintln!("inc sim: unknown scheduler {other:?} (random|adversarial|exhaustive)");
            return ExitCode::from(2);
        }
    };
    let mut cfg = SimConfig::new(args.protocol, args.algo, args.world, args.bytes, args.calls);
    cfg.blocks = args.blocks.clone();
    cfg.scheduler = scheduler;
    let report = match check(&cfg, args.schedules, args.seed) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("inc sim: {e}");
            return ExitCode::from(2);
        }
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
                })
            })
            .collect();
        let out = serde_json::json!({
            "protocol": report.protocol.name(),
            "algo": report.algo.name(),
            "world": report.world,
            "schedules": report.schedules,
            "failing_schedules": report.failing_schedules,
            "violations": violations,
        });
        text = format!("{out}\n");
    } else {
        text.push_str(&format!(
            "inc sim: protocol {} algo {} world {} bytes {} calls {}: {} schedules ({} steps), {} with violations\n",
            report.protocol,
            report.algo,
            report.world,
            args.bytes,
            args.calls,
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
        } else {
            text.push_str("no violations\n");
        }
    }
    // A closed pipe (e.g. `| head`) is not an error worth a panic.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    if report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
