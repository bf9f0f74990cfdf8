//! `inc sim` (being built; see the issue for this subcommand).

use std::process::ExitCode;

/// Arguments of `inc sim`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `inc sim`.
pub fn run(_args: Args) -> ExitCode {
    eprintln!("inc sim: not built yet");
    ExitCode::from(2)
}
