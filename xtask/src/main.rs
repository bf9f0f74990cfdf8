//! `cargo xtask`: developer tasks (GPU test bundle, GPU bench bundle).

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("usage: cargo xtask <gpu-test|bench> (being built)");
    ExitCode::from(2)
}
