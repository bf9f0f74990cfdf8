//! `inc topo`: show the NVLink topology of this machine (NVML) or of a saved
//! `nvidia-smi topo -m` / JSON file, and its class.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use inc_topo::Topology;

/// Largest input file `inc topo --file` reads.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// Arguments of `inc topo`.
#[derive(clap::Args)]
pub struct Args {
    /// Read this `nvidia-smi topo -m` output or topology JSON (auto-detected) instead of
    /// asking NVML; `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Print one line of JSON: `{"gpus": N, "class": "fully_connected"|"hybrid_cube_mesh"|"none",
    /// "mesh": [[..]], "hcm": [[n0,n1,n2,relay],..] or null}`.
    #[arg(long)]
    pub json: bool,
}

/// Runs `inc topo`: prints the topology (table or JSON); on error one line on stderr, exit 1.
pub fn run(args: Args) -> ExitCode {
    match load(&args).and_then(|t| render(&t, args.json)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("inc topo: {}", e.replace('\n', " "));
            ExitCode::from(1)
        }
    }
}

fn render(topo: &Topology, json: bool) -> Result<String, String> {
    if json {
        topo.to_summary_json()
            .map(|s| s + "\n")
            .map_err(|e| e.to_string())
    } else {
        Ok(topo.to_string())
    }
}

fn load(args: &Args) -> Result<Topology, String> {
    match &args.file {
        Some(path) => {
            let text = read_limited(path)?;
            inc_topo::parse_topology(&text).map_err(|e| format!("{}: {e}", path.display()))
        }
        None => from_nvml(),
    }
}

fn read_limited(path: &PathBuf) -> Result<String, String> {
    let mut bytes = Vec::new();
    let what = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let n = if path.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(what)?
    } else {
        std::fs::File::open(path)
            .map_err(what)?
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(what)?
    };
    if n as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{} is larger than {MAX_FILE_BYTES} bytes",
            path.display()
        ));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(feature = "nvml")]
fn from_nvml() -> Result<Topology, String> {
    inc_topo::from_nvml()
        .map_err(|e| format!("{e} (use --file to read a saved `nvidia-smi topo -m`)"))
}

#[cfg(not(feature = "nvml"))]
fn from_nvml() -> Result<Topology, String> {
    Err("this build has no NVML support (rebuild with `--features nvml`); use --file FILE to read a saved `nvidia-smi topo -m` or JSON".into())
}
