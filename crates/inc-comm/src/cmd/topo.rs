//! `inc topo` (being built; see the issue for this subcommand).

use std::process::ExitCode;

/// Arguments of `inc topo`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `inc topo`.
pub fn run(_args: Args) -> ExitCode {
    eprintln!("inc topo: not built yet");
    ExitCode::from(2)
}
