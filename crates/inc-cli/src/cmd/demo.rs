//! `inc demo [--world N] [--backend auto|cuda|sim] [--json]`: allreduce for every algorithm
//! x dtype x op at a few sizes, checked against a CPU reference.

use std::process::ExitCode;

use inc_comm::demo::{demo_paths, run_rank, table, Case};
use inc_comm::{AlgoPath as Path, BackendKind, Comm, CommError, CommOptions, SimTopology};

/// Arguments of `inc demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Ranks (threads of this process; under `inc launch` WORLD_SIZE decides).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub world: u8,
    /// auto (GPUs when present, else the CPU simulator), cuda or sim.
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Largest size to run, in bytes (default: 64 KiB on the simulator, 1 MiB on GPUs).
    #[arg(long)]
    pub max_bytes: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn max_bytes(kind: BackendKind, given: Option<usize>) -> usize {
    given.unwrap_or(if kind == BackendKind::Sim {
        inc_comm::demo::SIM_DEMO_MAX_BYTES
    } else {
        usize::MAX
    })
}

fn opts_for(backend: BackendKind, hcm: bool) -> Result<CommOptions, CommError> {
    let mut o = CommOptions::from_env()?;
    o.backend = backend;
    if hcm {
        o.sim_topology = Some(SimTopology::HybridCubeMesh);
    }
    Ok(o)
}

/// The communicators of this process: one fully connected, and on the simulator at world 8
/// a second one declared as a hybrid cube mesh, so hcm runs too.
fn run_threads(
    world: usize,
    backend: BackendKind,
    max: Option<usize>,
    json: bool,
) -> Result<(String, Vec<Case>, usize), CommError> {
    let backend = match backend {
        BackendKind::Auto if inc_comm::cuda_available() => BackendKind::Cuda,
        BackendKind::Auto => BackendKind::Sim,
        b => b,
    };
    let gpus = inc_comm::cuda_device_count();
    let mut opts = opts_for(backend, false)?;
    let devices: Vec<usize> = if backend == BackendKind::Cuda && gpus > 0 && world > gpus {
        opts.allow_shared_device = true;
        let line = format!(
            "inc demo: {world} ranks on {gpus} GPU(s): virtual ranks (several ranks share a GPU)"
        );
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
        (0..world).map(|r| r % gpus).collect()
    } else {
        (0..world).collect()
    };
    let comms = Comm::init_threads(&devices, opts)?;
    let kind = comms.first().map(|c| c.backend()).unwrap_or(backend);
    let nccl_solo = kind == BackendKind::Cuda
        && comms
            .first()
            .is_some_and(|c| c.check_path(Path::Nccl, 16, inc_comm::DType::F32).is_err())
        && inc_comm::nccl::available();
    let mut groups = vec![comms];
    if kind == BackendKind::Sim && world == 8 {
        groups.push(Comm::init_threads(&devices, opts_for(kind, true)?)?);
    }
    if nccl_solo {
        // Virtual ranks cannot use NCCL (a GPU per rank); show it with one rank instead.
        let line = "inc demo: NCCL rows run with world 1 (NCCL needs a GPU per rank)";
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
        groups.push(Comm::init_threads(&[0], opts_for(kind, false)?)?);
    }
    let mut cases = Vec::new();
    let mut wrong = 0;
    for comms in &groups {
        let paths = comms.first().map(demo_paths).unwrap_or_default();
        let paths: Vec<Path> =
            if groups.len() > 1 && comms.first().is_some_and(|c| c.topology().hcm().is_some()) {
                paths.into_iter().filter(|p| *p == Path::Hcm).collect()
            } else if nccl_solo && comms.len() == 1 && world > 1 {
                paths.into_iter().filter(|p| *p == Path::Nccl).collect()
            } else {
                paths
            };
        let results: Vec<Result<Vec<Case>, CommError>> = std::thread::scope(|s| {
            let hs: Vec<_> = comms
                .iter()
                .map(|c| s.spawn(|| run_rank(c, &paths, max_bytes(kind, max))))
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(CommError::Backend {
                            rank: 0,
                            reason: "demo thread panicked".into(),
                        })
                    })
                })
                .collect()
        });
        for (rank, r) in results.into_iter().enumerate() {
            let rc = r?;
            wrong += rc.iter().map(|c| c.wrong).sum::<usize>();
            if rank == 0 {
                cases.extend(rc);
            }
        }
    }
    Ok((kind.name().to_string(), cases, wrong))
}

fn run_launched(
    backend: BackendKind,
    max: Option<usize>,
) -> Result<(usize, usize, String, Vec<Case>, usize), CommError> {
    let t0 = std::time::Instant::now();
    let comm = Comm::from_env_with(opts_for(backend, false)?)?;
    let (rank, world, kind) = (comm.rank(), comm.world(), comm.backend());
    if kind == BackendKind::Cuda {
        first_call(&comm, t0)?;
    }
    let paths = demo_paths(&comm);
    let mut cases = run_rank(&comm, &paths, max_bytes(kind, max))?;
    drop(comm);
    if kind == BackendKind::Sim && world == 8 {
        let hcm = Comm::from_env_with(opts_for(kind, true)?)?;
        cases.extend(run_rank(&hcm, &[Path::Hcm], max_bytes(kind, max))?);
    }
    let wrong = cases.iter().map(|c| c.wrong).sum();
    Ok((rank, world, kind.name().to_string(), cases, wrong))
}

/// Time to first allreduce (issue 18): prints, per rank, the communicator's init and its
/// first bf16 sum allreduce of 4096 elements on the device (cold kernel cache: compiles).
fn first_call(comm: &Comm, t0: std::time::Instant) -> Result<(), CommError> {
    let init = t0.elapsed();
    let t1 = std::time::Instant::now();
    let backend_err = |e: String| CommError::Backend {
        rank: comm.rank(),
        reason: e,
    };
    let stream = comm
        .stream()
        .ok_or_else(|| backend_err("no stream".into()))?
        .clone();
    let mut x = stream
        .clone_htod(&vec![half::bf16::from_f32(1.0); 4096])
        .map_err(|e| backend_err(format!("upload: {e}")))?;
    comm.allreduce(&mut x, inc_comm::ReduceOp::Sum, &stream)?
        .wait()?;
    eprintln!(
        "inc demo: rank {}: init {:.0} ms, first bf16 sum allreduce {:.0} ms, total {:.0} ms",
        comm.rank(),
        init.as_secs_f64() * 1e3,
        t1.elapsed().as_secs_f64() * 1e3,
        t0.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

fn report(json: bool, backend: &str, world: usize, cases: &[Case], wrong: usize) {
    if json {
        let v =
            serde_json::json!({"backend": backend, "world": world, "cases": cases, "wrong": wrong});
        println!("{v}");
    } else {
        println!("inc demo: backend {backend}, world {world}, {} cases (times: rank 0, mean of {} calls)", cases.len(), inc_comm::demo::DEMO_REPS);
        print!("{}", table(cases));
        if wrong == 0 {
            println!(
                "PASS: all {} results match the CPU reference on every rank",
                cases.len()
            );
        } else {
            println!("FAIL: {wrong} wrong elements");
        }
    }
}

/// Runs `inc demo`.
pub fn run(args: Args) -> ExitCode {
    let backend: BackendKind = match args.backend.parse() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("inc demo: {e}");
            return ExitCode::from(2);
        }
    };
    let launched = std::env::var_os("RANK").is_some() && std::env::var_os("WORLD_SIZE").is_some();
    let wrong = if launched {
        run_launched(backend, args.max_bytes).map(|(rank, world, kind, cases, wrong)| {
            if rank == 0 {
                report(args.json, &kind, world, &cases, wrong);
            } else if wrong > 0 {
                eprintln!("inc demo: rank {rank}: {wrong} wrong elements");
            }
            wrong
        })
    } else {
        let world = usize::from(args.world);
        run_threads(world, backend, args.max_bytes, args.json).map(|(kind, cases, wrong)| {
            report(args.json, &kind, world, &cases, wrong);
            wrong
        })
    };
    match wrong {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("inc demo: {e}");
            ExitCode::from(1)
        }
    }
}
