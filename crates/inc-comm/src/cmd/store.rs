//! `inc store` (being built; see the issue for this subcommand).

use std::process::ExitCode;

/// Arguments of `inc store`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `inc store`.
pub fn run(_args: Args) -> ExitCode {
    eprintln!("inc store: not built yet");
    ExitCode::from(2)
}
