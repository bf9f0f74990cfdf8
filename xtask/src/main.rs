//! `cargo xtask`: developer tasks that need more than cargo.
//!
//! - `cargo xtask codegen`: write kernels/proto.cuh from inc-proto's constants (a test of
//!   inc-proto fails while the committed header is stale).
//! - `cargo xtask gpu-test [--bundle-only DIR]`: build the GPU test binaries here and
//!   bundle them with a run script for a GPU machine (the device tool).
//! - `cargo xtask bench [DIR]`: build `inc` in release and bundle the GPU bench script.

use std::path::PathBuf;
use std::process::ExitCode;

mod bench;
mod codegen;
mod gpu_test;
mod util;

const USAGE: &str = "usage: cargo xtask <command>
  codegen                        write kernels/proto.cuh from inc-proto
  gpu-test [--bundle-only DIR]   build GPU test binaries and bundle them (default bundle/gpu-test)
  bench [DIR]                    build inc (release) and bundle the GPU bench (default bundle/bench)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("gpu-test") => match (args.get(1).map(String::as_str), args.get(2)) {
            (None, _) => gpu_test::gpu_test(None),
            (Some("--bundle-only"), Some(dir)) => gpu_test::gpu_test(Some(PathBuf::from(dir))),
            _ => Err(USAGE.to_string()),
        },
        Some("codegen") => codegen::codegen(),
        Some("bench") => bench::bench(args.get(1).map(PathBuf::from)),
        Some("-h") | Some("--help") | Some("help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::from(2)
        }
    }
}
