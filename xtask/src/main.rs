//! `cargo xtask`: developer tasks that need more than cargo.
//!
//! - `cargo xtask codegen`: write kernels/proto.cuh from inc-proto's constants (a test of
//!   inc-proto fails while the committed header is stale).
//! - `cargo xtask cubins [--nvrtc DIR] [--any-nvrtc]`: precompile every kernel instance
//!   for sm_90 and sm_80 with the pinned NVRTC (13.0; folder from `--nvrtc` or
//!   `INC_NVRTC_DIR`) into kernels/cubin/ (a test of inc-cuda fails while they are stale).
//! - `cargo xtask gpu-test [--bundle-only DIR]`: build the GPU test binaries here and
//!   bundle them with a run script for a GPU machine (the device tool).
//! - `cargo xtask bench [DIR]`: build `inc` in release and bundle the GPU bench script.

use std::path::PathBuf;
use std::process::ExitCode;

mod bench;
mod codegen;
mod cubins;
mod gpu_test;
mod util;

const USAGE: &str = "usage: cargo xtask <command>
  codegen                        write kernels/proto.cuh from inc-proto
  cubins [--nvrtc DIR] [--any-nvrtc]
                                 precompile the kernels for sm_90/sm_80 into kernels/cubin/
                                 with NVRTC 13.0 (DIR or $INC_NVRTC_DIR: folder of libnvrtc.so.13)
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
        Some("cubins") => cubins::cubins(args.get(1..).unwrap_or(&[])),
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
