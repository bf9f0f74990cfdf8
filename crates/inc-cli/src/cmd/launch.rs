//! `inc launch -n N [--] CMD ARGS...`: N ranks of CMD around an in-process store server.

use std::process::ExitCode;
use std::time::Duration;

use crate::launch::{new_job_id, run_job, LaunchSpec};
use inc_store::{ServerOptions, TcpStoreServer};

/// Arguments of `inc launch`.
#[derive(clap::Args)]
pub struct Args {
    /// Number of ranks (processes) to start.
    #[arg(short = 'n', long = "nprocs", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nprocs: u16,
    /// Milliseconds the other ranks may run on after one failed, before they are killed.
    #[arg(long, default_value_t = 5000)]
    pub grace_ms: u64,
    /// The command and its arguments (`inc` means this very binary).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Runs `inc launch`.
pub fn run(args: Args) -> ExitCode {
    let Some((program, rest)) = args.command.split_first() else {
        eprintln!("inc launch: no command given");
        return ExitCode::from(2);
    };
    let mut server = match TcpStoreServer::start(ServerOptions::from_env()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("inc launch: cannot start the store server: {e}");
            return ExitCode::from(1);
        }
    };
    let addr = server.local_addr();
    let spec = LaunchSpec {
        nprocs: usize::from(args.nprocs),
        program: program.clone(),
        args: rest.to_vec(),
        master_addr: addr.ip().to_string(),
        master_port: addr.port(),
        job_id: new_job_id(),
        grace: Duration::from_millis(args.grace_ms),
    };
    tracing::info!(nprocs = spec.nprocs, %addr, job = %spec.job_id, "launching");
    let outcome = run_job(&spec);
    server.shutdown();
    match outcome {
        Ok(o) => {
            if let Some(r) = o.first_failed {
                eprintln!("inc launch: rank {r} exited with code {}", o.exit_code);
            } else if o.exit_code != 0 {
                eprintln!("inc launch: interrupted");
            }
            ExitCode::from(u8::try_from(o.exit_code.clamp(0, 255)).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("inc launch: {e}");
            ExitCode::from(1)
        }
    }
}
