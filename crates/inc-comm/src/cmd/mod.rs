//! One module per `inc` subcommand; each exposes `Args` (clap) and `run(Args) -> ExitCode`.

pub mod sim;
pub mod store;
pub mod topo;
