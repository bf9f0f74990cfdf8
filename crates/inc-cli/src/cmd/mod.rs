//! One module per `inc` subcommand; each exposes `Args` (clap) and `run(Args) -> ExitCode`.

pub mod bench;
pub mod demo;
pub mod launch;
pub mod sim;
pub mod soak;
pub mod store;
pub mod topo;
pub mod tune;
