//! `inc`: the command-line tool of the inc allreduce library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Topo(a) => cmd::topo::run(a),
        Cmd::Store(a) => cmd::store::run(a),
        Cmd::Sim(a) => cmd::sim::run(a),
    }
}
