//! `inc soak`: many back-to-back checked allreduces (see [`Args`] and `inc soak --help`).
//!
//! * `plan`: the call sequence (a pure function of the seed), batches, arena layout,
//!   full and sampled checks.
//! * `check`: input patterns, the reference tables, the check of a batch, digests.
//! * `exchange`: the cross-rank comparison of output digests and the stop decision,
//!   through a store (not through the library under test).
//! * `driver`: one rank's loop, its counts and summary.
//! * `cuda` / `sim`: running a batch on GPUs (no per-call allocation or upload) or on
//!   the CPU simulator.
//!
//! The loop keeps two batches in flight: batch k+1 is enqueued, then batch k is finished
//! (its download waited for) and checked on the host while the GPU runs batch k+1.

use std::process::ExitCode;
use std::sync::Arc;

use inc_comm::{AlgoPath as Path, BackendKind, Comm, CommOptions, DType, TorchrunEnv};
use inc_store::{ClientOptions, MemStore, Store, TcpStore};

mod check;
mod cuda;
mod driver;
mod exchange;
mod plan;
mod sim;

use check::Reference;
use driver::{summary, Soak};
use exchange::Exchange;
use plan::{Batch, Geometry, Planner};

/// `inc soak --help`'s description.
pub const ABOUT: &str = "\
Many back-to-back allreduces, every one checked. Calls mix sizes (1 element .. --max-bytes, \
log-uniform, odd sizes), dtypes (bf16/f16/f32), ops (sum/avg/min/max), paths (auto and every \
intra-node path the group allows, forced), in place and out of place, aligned and misaligned \
buffers, and (cuda backend) a quarter of the calls on symmetric tensors (zero-copy: \
Comm::allreduce_symmetric, unaligned starts included); batches alternate eager and captured \
into one CUDA graph (cuda backend).

Inputs: one pattern per rank and dtype, uploaded once; each call reads a slice of it, so its \
expected result is a slice of a reference table computed once on the CPU (inc-sim's rank-order \
f32 fold). No buffer is allocated or uploaded per call; outputs of a batch are downloaded in one \
copy and checked on the host while the next batch runs.

Checks: every call of every --full-every-th batch is compared with the reference element by \
element (default 1: every call, every element); in the other batches each call is compared at \
its first, last and 62 sampled elements. Independently, a digest of every byte of every call's \
output is compared across all ranks (bit identity, every call, always). The summary gives the \
fraction of elements compared. Exit status 0 only when nothing was wrong on any rank.";

/// Arguments of `inc soak`.
#[derive(clap::Args)]
pub struct Args {
    /// Allreduce calls in all (every rank makes the same calls).
    #[arg(long, default_value_t = 100_000)]
    pub calls: u64,
    /// Largest call in bytes per rank (`1048576`, `256K`, `64M`, `1G`).
    #[arg(long, default_value = "1M", value_parser = parse_max_bytes)]
    pub max_bytes: usize,
    /// Seed of the call sequence and of the inputs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Most calls per batch (each batch is eager or one CUDA graph; a batch also ends when
    /// its outputs would not fit the 64 MiB arena).
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Every N-th batch (the first included) is checked element by element in full; the
    /// calls of the others at their first, last and 62 sampled elements. 1 = every element
    /// of every call.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub full_every: u64,
    /// Stop after this many seconds (0: no limit); the ranks agree on the batch to stop at.
    #[arg(long, default_value_t = 0.0)]
    pub time_limit: f64,
    /// Host threads per rank that check outputs (each reads ~5-15 GB/s).
    #[arg(long, default_value_t = 4)]
    pub check_threads: usize,
    /// cuda (GPUs) or sim (the CPU simulator, host calls, no graphs).
    #[arg(long, default_value = "cuda")]
    pub backend: String,
    /// Ranks as threads of this process (not under `inc launch`).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Test hook: rank 0 flips a bit of the output of this call before checking it.
    #[arg(long, hide = true)]
    pub inject_wrong: Option<u64>,
}

/// Runs a batch: on GPUs ([`cuda::CudaExec`]) or the simulator ([`sim::SimExec`]).
pub trait Exec {
    /// Starts `batch` in pipeline slot `slot` (0 or 1), whose previous batch was finished.
    fn launch(&mut self, slot: usize, batch: &Batch) -> Result<(), String>;
    /// Waits for the batch in `slot`, reports its errors and returns its outputs (the
    /// first `batch.bytes` bytes of its arena).
    fn finish(&mut self, slot: usize, batch: &Batch) -> Result<&[u8], String>;
}

fn soak_rank(
    comm: Comm,
    args: &Args,
    reference: &Reference,
    store: Arc<dyn Store>,
    prefix: String,
) -> bool {
    let rank = comm.rank();
    let res = (|| {
        let geo = Geometry::new(args.max_bytes);
        let cuda = comm.backend() == BackendKind::Cuda;
        let paths: Vec<Path> = [Path::PushOneShot, Path::OneShot, Path::TwoShot, Path::Hcm]
            .into_iter()
            .filter(|p| comm.check_path(*p, 16, DType::F32).is_ok())
            .collect();
        let soak = Soak {
            comm: &comm,
            args,
            planner: Planner {
                seed: args.seed,
                paths,
                geo,
                batch_calls: args.batch,
                full_every: args.full_every,
                graphs: cuda,
                symmetric: cuda,
            },
            reference,
            exchange: Exchange::new(store, prefix, rank, comm.world(), comm.timeout()),
        };
        if cuda {
            soak.run(&mut cuda::CudaExec::new(&comm, args.seed, &geo)?)
        } else {
            soak.run(&mut sim::SimExec::new(&comm, args.seed, &geo))
        }
    })();
    match res {
        Ok(t) => {
            println!("{}", summary(rank, comm.world(), args, &t));
            t.passed()
        }
        Err(e) => {
            println!("rank {rank}: ERROR: {e}");
            false
        }
    }
}

fn launched(args: &Args, opts: CommOptions) -> Result<bool, String> {
    let env = TorchrunEnv::from_lookup(|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
    let reference = Reference::new(args.seed, env.world, &Geometry::new(args.max_bytes))?;
    let addr = format!("{}:{}", env.master_addr, env.master_port);
    let copts = ClientOptions {
        connect_timeout: opts.timeout,
        ..ClientOptions::from_env()
    };
    let store: Arc<dyn Store> = Arc::new(
        TcpStore::connect(&addr, copts).map_err(|e| format!("connecting to {addr}: {e}"))?,
    );
    let job = std::env::var("INC_JOB_ID").unwrap_or_else(|_| "job".into());
    let comm = Comm::from_env_with(opts).map_err(|e| e.to_string())?;
    Ok(soak_rank(
        comm,
        args,
        &reference,
        store,
        format!("inc-soak/{job}"),
    ))
}

fn threads(args: &Args, mut opts: CommOptions) -> Result<bool, String> {
    let devices: Vec<usize> = if opts.backend == BackendKind::Cuda {
        let gpus = inc_comm::cuda_device_count();
        if gpus == 0 {
            return Err("no GPU found (--backend sim runs on the CPU simulator)".into());
        }
        if args.threads > gpus {
            opts.allow_shared_device = true;
        }
        (0..args.threads).map(|r| r % gpus).collect()
    } else {
        (0..args.threads).collect()
    };
    let reference = Reference::new(args.seed, args.threads, &Geometry::new(args.max_bytes))?;
    let comms = Comm::init_threads(&devices, opts).map_err(|e| e.to_string())?;
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    Ok(std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .into_iter()
            .map(|c| {
                let (reference, store) = (&reference, store.clone());
                s.spawn(move || soak_rank(c, args, reference, store, "inc-soak".into()))
            })
            .collect();
        // join every rank (no short-circuit), then combine
        let oks: Vec<bool> = hs.into_iter().map(|h| h.join().unwrap_or(false)).collect();
        oks.iter().all(|ok| *ok)
    }))
}

/// Runs `inc soak`.
pub fn run(args: Args) -> ExitCode {
    let backend = match args.backend.parse::<BackendKind>() {
        Ok(b @ (BackendKind::Cuda | BackendKind::Sim)) => b,
        _ => {
            eprintln!("inc soak: --backend must be cuda or sim");
            return ExitCode::from(2);
        }
    };
    if args.max_bytes < 4
        || args.batch == 0
        || args.threads == 0
        || !args.time_limit.is_finite()
        || args.time_limit < 0.0
    {
        eprintln!(
            "inc soak: --max-bytes must be at least 4, --batch and --threads at least 1, --time-limit not negative"
        );
        return ExitCode::from(2);
    }
    let mut opts = match CommOptions::from_env() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("inc soak: {e}");
            return ExitCode::from(2);
        }
    };
    opts.backend = backend;
    let is_launched =
        std::env::var_os("RANK").is_some() && std::env::var_os("WORLD_SIZE").is_some();
    let res = if is_launched {
        launched(&args, opts)
    } else {
        threads(&args, opts)
    };
    match res {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("inc soak: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_max_bytes(s: &str) -> Result<usize, String> {
    let b = super::bench::sizes::parse_size(s)?;
    usize::try_from(b).map_err(|_| format!("{s}: too large for this machine"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(a: &[&str]) -> Result<Args, clap::Error> {
        Cli::try_parse_from([&["soak"][..], a].concat()).map(|c| c.args)
    }

    #[test]
    fn defaults_and_options_parse() {
        let a = parse(&[]).unwrap();
        assert_eq!(
            (a.calls, a.max_bytes, a.batch, a.full_every),
            (100_000, 1 << 20, 256, 1)
        );
        assert_eq!(
            (a.time_limit, a.backend.as_str(), a.inject_wrong),
            (0.0, "cuda", None)
        );
        let a = parse(&[
            "--calls",
            "1000000",
            "--time-limit",
            "170",
            "--full-every",
            "4",
            "--check-threads",
            "3",
            "--backend",
            "sim",
        ])
        .unwrap();
        assert_eq!((a.calls, a.time_limit, a.full_every), (1_000_000, 170.0, 4));
        assert_eq!((a.check_threads, a.backend.as_str()), (3, "sim"));
        assert!(parse(&["--full-every", "0"]).is_err());
        assert!(parse(&["--calls", "-3"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert_eq!(parse(&["--max-bytes", "64K"]).unwrap().max_bytes, 64 << 10);
        assert_eq!(parse(&["--max-bytes", "4096"]).unwrap().max_bytes, 4096);
        assert!(parse(&["--max-bytes", "4Q"]).is_err());
    }
}
