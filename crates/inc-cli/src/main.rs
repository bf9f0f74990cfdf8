//! `inc`: the command-line tool of the inc allreduce library (inc-comm). This crate is the
//! only one of the workspace that depends on clap, plotters and tracing-subscriber.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod launch;

/// Low-latency allreduce between the GPUs of one machine.
#[derive(Parser)]
#[command(name = "inc", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show the NVLink topology of this machine (NVML) or of a saved `nvidia-smi topo -m` / JSON file.
    Topo(cmd::topo::Args),
    /// Run or talk to a rendezvous store (PyTorch TCPStore protocol).
    Store(cmd::store::Args),
    /// Check an allreduce signal protocol on the CPU simulator.
    Sim(cmd::sim::Args),
    /// Allreduce every algorithm x dtype x op on N ranks and check it against a CPU reference.
    Demo(cmd::demo::Args),
    /// Run N ranks of a command with the torchrun environment and a store server.
    Launch(cmd::launch::Args),
    /// Allreduce latency and bandwidth per size (nccl-tests columns), beside NCCL.
    Bench(cmd::bench::Args),
    /// Measure every algorithm at every size and write a threshold table for `auto`.
    Tune(cmd::tune::Args),
    /// Many back-to-back checked allreduces on the GPUs (sizes, dtypes, ops, paths, graph and eager).
    #[command(long_about = cmd::soak::ABOUT)]
    Soak(cmd::soak::Args),
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Topo(a) => cmd::topo::run(a),
        Cmd::Store(a) => cmd::store::run(a),
        Cmd::Sim(a) => cmd::sim::run(a),
        Cmd::Demo(a) => cmd::demo::run(a),
        Cmd::Launch(a) => cmd::launch::run(a),
        Cmd::Bench(a) => cmd::bench::run(a),
        Cmd::Tune(a) => cmd::tune::run(a),
        Cmd::Soak(a) => cmd::soak::run(a),
    }
}
