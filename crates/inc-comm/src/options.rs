//! [`CommOptions`]: what a communicator may do, from code or from `INC_*` variables.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `INC_BACKEND` | `auto`, `cuda` or `sim` | `auto` (cuda when a GPU is there) |
//! | `INC_ALGO` | `auto`, `push-one-shot`, `one-shot`, `two-shot`, `hcm` or `nccl` | `auto` |
//! | `INC_PUSH_MAX_BYTES` | largest push-one-shot call (capped by the one-shot limit) | 256 KiB at 2 ranks, 64 KiB at 3-4, 32 KiB above |
//! | `INC_ONE_SHOT_MAX_BYTES` | largest one-shot call | per topology and world |
//! | `INC_TWO_SHOT_MAX_BYTES` | largest two-shot call | the buffer capacity |
//! | `INC_HCM_MAX_BYTES` | largest hybrid-cube-mesh call | 256 KiB |
//! | `INC_TIMEOUT_MS` | every wait (rendezvous and in-call) | 30000 (`inc_cuda::DEFAULT_TIMEOUT`, the kernels' default too) |
//! | `INC_BUFFER_BYTES` | bytes of one parity half of the symmetric buffer | 64 MiB cuda, 4 MiB sim |
//! | `INC_BLOCKS` | blocks (CUDA) / worker lanes (sim) per call | backend default |
//! | `INC_TUNE_FILE` | autotune table (JSON, see [`TuneTable`](crate::TuneTable)) | none |
//! | `INC_SIM_SHM` | `1`: sim regions in /dev/shm even in one process | `0` |
//! | `INC_ALLOW_SHARED_DEVICE` | `1`: several ranks may drive one device (virtual ranks; tests) | `0` |
//!
//! Read by inc-cuda (the kernels) on the cuda backend: `INC_CACHE_DIR` (compiled-kernel
//! cache folder; default `$XDG_CACHE_HOME/inc` or `~/.cache/inc`), `INC_KERNEL_WARM`
//! (`default`, `all` or `off`: what compiles in the background after init; instances the
//! embedded CUBINs cover are not compiled), `INC_EMBEDDED_CUBINS` (`0`: never use the
//! CUBINs embedded in the binary, always the disk cache and NVRTC; default on: sm_90 and
//! sm_80 devices take every kernel from the binary, and NVRTC is not loaded), `INC_PDL`
//! (`0` turns off programmatic dependent launch; on by default on sm_90+ with one rank per
//! device), `INC_KERNEL_DIR` (a folder whose `kernels/` file names replace the embedded
//! kernel sources: kernel experiments on a GPU host without a rebuild; the cache key follows
//! the text).
//!
//! `INC_ALGO=hcm` runs on a hybrid cube mesh of 8 and also on a fully connected group of
//! exactly 8 (NVSwitch: every cube mesh is a subgraph), there with the canonical DGX-1
//! table ([`crate::topo::hcm_table`]); `auto` never picks hcm on a fully connected group.
//! Anywhere else a forced hcm falls back to NCCL with the reason.
//!
//! Sizes accept a plain byte count or a `K`/`M`/`G` (binary) suffix: `256K`, `10M`.
//! An invalid value is an error naming the variable, never silently ignored.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{CommError, Result};

/// Which data backend a communicator uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BackendKind {
    /// CUDA when a GPU and the driver are present, else the CPU simulator.
    #[default]
    Auto,
    /// GPUs through inc-cuda (CUDA IPC buffers, NVRTC kernels).
    Cuda,
    /// The CPU data backend of inc-sim (shared memory between processes).
    Sim,
}

impl BackendKind {
    /// The name used by `INC_BACKEND` and `--backend`.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Auto => "auto",
            BackendKind::Cuda => "cuda",
            BackendKind::Sim => "sim",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = CommError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendKind::Auto),
            "cuda" | "gpu" => Ok(BackendKind::Cuda),
            "sim" | "cpu" => Ok(BackendKind::Sim),
            _ => Err(CommError::option(
                "INC_BACKEND",
                s,
                "expected auto, cuda or sim",
            )),
        }
    }
}

/// The path an allreduce takes: one of the intra-node algorithms or NCCL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlgoPath {
    /// Push one-shot ("Lamport", small messages; PROTOCOL.md "push one-shot"). Declared
    /// first so that the derived order runs from the smallest calls' path to NCCL.
    PushOneShot,
    /// One-shot: every rank reads every peer's whole buffer.
    OneShot,
    /// Two-shot: reduce-scatter then all-gather through the symmetric buffers.
    TwoShot,
    /// Hybrid cube mesh (8 GPUs, 4 NVLink neighbours each). Also runs, when forced or
    /// pinned, on a fully connected group of exactly 8 with the canonical DGX-1 table.
    Hcm,
    /// NCCL (`ncclAllReduce`), the fallback.
    Nccl,
}

/// The crate's short name of [`AlgoPath`] (the public name does not shadow
/// `std::path::Path`).
pub(crate) type Path = AlgoPath;

impl AlgoPath {
    /// Every path, in counter order.
    pub const ALL: [AlgoPath; 5] = [
        AlgoPath::OneShot,
        AlgoPath::TwoShot,
        AlgoPath::Hcm,
        AlgoPath::Nccl,
        AlgoPath::PushOneShot,
    ];

    /// The intra-node algorithm of this path (`None` for NCCL).
    pub fn algo(self) -> Option<inc_sim::Algo> {
        match self {
            AlgoPath::OneShot => Some(inc_sim::Algo::OneShot),
            AlgoPath::TwoShot => Some(inc_sim::Algo::TwoShot),
            AlgoPath::Hcm => Some(inc_sim::Algo::Hcm),
            AlgoPath::PushOneShot => Some(inc_sim::Algo::PushOneShot),
            AlgoPath::Nccl => None,
        }
    }

    /// The name used by `INC_ALGO` and in tables.
    pub fn name(self) -> &'static str {
        match self {
            AlgoPath::OneShot => "one-shot",
            AlgoPath::TwoShot => "two-shot",
            AlgoPath::Hcm => "hcm",
            AlgoPath::Nccl => "nccl",
            AlgoPath::PushOneShot => "push-one-shot",
        }
    }

    /// Index into per-path arrays.
    pub fn index(self) -> usize {
        match self {
            AlgoPath::OneShot => 0,
            AlgoPath::TwoShot => 1,
            AlgoPath::Hcm => 2,
            AlgoPath::Nccl => 3,
            AlgoPath::PushOneShot => 4,
        }
    }
}

impl fmt::Display for AlgoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AlgoPath {
    type Err = CommError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "one-shot" | "oneshot" => Ok(AlgoPath::OneShot),
            "two-shot" | "twoshot" => Ok(AlgoPath::TwoShot),
            "hcm" | "hybrid-cube-mesh" => Ok(AlgoPath::Hcm),
            "nccl" => Ok(AlgoPath::Nccl),
            "push-one-shot" | "pushoneshot" | "push" => Ok(AlgoPath::PushOneShot),
            _ => Err(CommError::option(
                "INC_ALGO",
                s,
                "expected auto, one-shot, two-shot, hcm, push-one-shot or nccl",
            )),
        }
    }
}

/// `INC_ALGO`: let the selector choose, or pin one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AlgoChoice {
    /// Choose by bytes, topology and world size (and the tune table).
    #[default]
    Auto,
    /// Always this path while it fits; a call it cannot take falls back (and says why).
    Force(AlgoPath),
}

impl FromStr for AlgoChoice {
    type Err = CommError;
    fn from_str(s: &str) -> Result<Self> {
        if s.trim().eq_ignore_ascii_case("auto") {
            Ok(AlgoChoice::Auto)
        } else {
            s.parse().map(AlgoChoice::Force)
        }
    }
}

impl fmt::Display for AlgoChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlgoChoice::Auto => f.write_str("auto"),
            AlgoChoice::Force(p) => p.fmt(f),
        }
    }
}

/// Options of one communicator. All ranks of a communicator must use the same values
/// (the rendezvous checks it).
///
/// `#[non_exhaustive]`: new options may come in minor releases, so build one from
/// [`CommOptions::default`] (or [`CommOptions::from_env`]) with the `with_*` setters, or
/// set its public fields:
///
/// ```
/// use std::time::Duration;
/// use inc_comm::{BackendKind, CommOptions};
///
/// let opts = CommOptions::default()
///     .with_backend(BackendKind::Sim)
///     .with_timeout(Duration::from_secs(10))
///     .with_buffer_bytes(Some(1 << 20));
/// assert_eq!(opts.backend, BackendKind::Sim);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommOptions {
    /// Data backend.
    pub backend: BackendKind,
    /// Algorithm choice.
    pub algo: AlgoChoice,
    /// Largest push-one-shot call in bytes (`None`: 32 KiB), capped by the one-shot limit.
    pub push_max_bytes: Option<u64>,
    /// Largest one-shot call in bytes (`None`: per topology and world size).
    pub one_shot_max_bytes: Option<u64>,
    /// Largest two-shot call in bytes (`None`: the buffer capacity).
    pub two_shot_max_bytes: Option<u64>,
    /// Largest hybrid-cube-mesh call in bytes (`None`: 256 KiB).
    pub hcm_max_bytes: Option<u64>,
    /// Timeout of every wait: rendezvous and, inside a call, waiting for peers.
    pub timeout: Duration,
    /// Bytes of one parity half of the symmetric buffer (`None`: backend default).
    pub buffer_bytes: Option<u64>,
    /// Blocks per call (`None`: backend default).
    pub blocks: Option<u32>,
    /// Autotune table file.
    pub tune_file: Option<PathBuf>,
    /// Sim backend: put the regions in POSIX shared memory even within one process.
    pub sim_shm: bool,
    /// Sim backend: declare this topology instead of a fully connected one (tests, and
    /// `inc demo` to run hcm at world 8). `None`: fully connected.
    pub sim_topology: Option<SimTopology>,
    /// Let several ranks drive the same device ("virtual ranks": tests, or more ranks than
    /// GPUs). Off by default, because two ranks on one GPU is usually a launch mistake
    /// (`INC_ALLOW_SHARED_DEVICE=1`). NCCL cannot run such a group.
    pub allow_shared_device: bool,
}

/// A topology the sim backend pretends to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimTopology {
    /// Every pair connected.
    FullyConnected,
    /// The DGX-1 hybrid cube mesh (world 8 only).
    HybridCubeMesh,
    /// No pair connected: every call falls back.
    Disconnected,
}

impl FromStr for SimTopology {
    type Err = CommError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "full" | "fully-connected" => Ok(SimTopology::FullyConnected),
            "hcm" | "hybrid-cube-mesh" => Ok(SimTopology::HybridCubeMesh),
            "none" | "disconnected" => Ok(SimTopology::Disconnected),
            _ => Err(CommError::option(
                "INC_SIM_TOPOLOGY",
                s,
                "expected full, hcm or none",
            )),
        }
    }
}

impl Default for CommOptions {
    fn default() -> Self {
        Self {
            backend: BackendKind::Auto,
            algo: AlgoChoice::Auto,
            push_max_bytes: None,
            one_shot_max_bytes: None,
            two_shot_max_bytes: None,
            hcm_max_bytes: None,
            timeout: inc_cuda::DEFAULT_TIMEOUT,
            buffer_bytes: None,
            blocks: None,
            tune_file: None,
            sim_shm: false,
            sim_topology: None,
            allow_shared_device: false,
        }
    }
}

/// Default timeout of every wait, in ms: inc-cuda's [`inc_cuda::DEFAULT_TIMEOUT`] (30 s),
/// one number for the library and the kernels' direct API.
pub const DEFAULT_TIMEOUT_MS: u64 = inc_cuda::DEFAULT_TIMEOUT.as_millis() as u64;
/// Largest accepted `INC_BUFFER_BYTES` (a parity half): 4 GiB.
pub const MAX_BUFFER_BYTES: u64 = 4 << 30;
/// Largest accepted `INC_BLOCKS`.
pub const MAX_BLOCKS: u32 = inc_sim::MAX_BLOCKS as u32;

/// Parses a byte size: `4096`, `256K`, `10M`, `1G` (binary units; `KiB`, `MB`... accepted).
pub fn parse_bytes(name: &str, s: &str) -> Result<u64> {
    let t = s.trim();
    let upper = t.to_ascii_uppercase();
    let digits_end = upper
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(upper.len());
    let (num, unit) = upper.split_at(digits_end);
    if num.is_empty() {
        return Err(CommError::option(
            name,
            s,
            "expected a byte count like 4096, 256K or 10M",
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| CommError::option(name, s, "number out of range"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(CommError::option(name, s, "unknown unit (use K, M or G)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| CommError::option(name, s, "number out of range"))
}

fn parse_bool(name: &str, s: &str) -> Result<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(CommError::option(name, s, "expected 0/1, true/false")),
    }
}

/// The `with_*` setters of [`CommOptions`], one per field.
macro_rules! setters {
    ($($name:ident => $field:ident: $t:ty;)*) => {
        impl CommOptions {
            $(
                #[doc = concat!("Sets [`CommOptions::", stringify!($field), "`].")]
                #[must_use]
                pub fn $name(mut self, v: $t) -> Self {
                    self.$field = v;
                    self
                }
            )*
        }
    };
}

setters! {
    with_backend => backend: BackendKind;
    with_algo => algo: AlgoChoice;
    with_push_max_bytes => push_max_bytes: Option<u64>;
    with_one_shot_max_bytes => one_shot_max_bytes: Option<u64>;
    with_two_shot_max_bytes => two_shot_max_bytes: Option<u64>;
    with_hcm_max_bytes => hcm_max_bytes: Option<u64>;
    with_timeout => timeout: Duration;
    with_buffer_bytes => buffer_bytes: Option<u64>;
    with_blocks => blocks: Option<u32>;
    with_tune_file => tune_file: Option<PathBuf>;
    with_sim_shm => sim_shm: bool;
    with_sim_topology => sim_topology: Option<SimTopology>;
    with_allow_shared_device => allow_shared_device: bool;
}

impl CommOptions {
    /// Options from the `INC_*` variables of this process (unset variables keep defaults).
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Options from any variable source (tests use a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut o = CommOptions::default();
        if let Some(v) = get("INC_BACKEND") {
            o.backend = v.parse()?;
        }
        if let Some(v) = get("INC_ALGO") {
            o.algo = v.parse()?;
        }
        if let Some(v) = get("INC_PUSH_MAX_BYTES") {
            o.push_max_bytes = Some(parse_bytes("INC_PUSH_MAX_BYTES", &v)?);
        }
        if let Some(v) = get("INC_ONE_SHOT_MAX_BYTES") {
            o.one_shot_max_bytes = Some(parse_bytes("INC_ONE_SHOT_MAX_BYTES", &v)?);
        }
        if let Some(v) = get("INC_TWO_SHOT_MAX_BYTES") {
            o.two_shot_max_bytes = Some(parse_bytes("INC_TWO_SHOT_MAX_BYTES", &v)?);
        }
        if let Some(v) = get("INC_HCM_MAX_BYTES") {
            o.hcm_max_bytes = Some(parse_bytes("INC_HCM_MAX_BYTES", &v)?);
        }
        if let Some(v) = get("INC_TIMEOUT_MS") {
            let ms: u64 = v
                .trim()
                .parse()
                .map_err(|_| CommError::option("INC_TIMEOUT_MS", &v, "expected milliseconds"))?;
            o.timeout = Duration::from_millis(ms);
        }
        if let Some(v) = get("INC_BUFFER_BYTES") {
            o.buffer_bytes = Some(parse_bytes("INC_BUFFER_BYTES", &v)?);
        }
        if let Some(v) = get("INC_BLOCKS") {
            let b: u32 = v
                .trim()
                .parse()
                .map_err(|_| CommError::option("INC_BLOCKS", &v, "expected a block count"))?;
            o.blocks = Some(b);
        }
        if let Some(v) = get("INC_TUNE_FILE") {
            if !v.trim().is_empty() {
                o.tune_file = Some(PathBuf::from(v));
            }
        }
        if let Some(v) = get("INC_SIM_SHM") {
            o.sim_shm = parse_bool("INC_SIM_SHM", &v)?;
        }
        if let Some(v) = get("INC_SIM_TOPOLOGY") {
            o.sim_topology = Some(v.parse()?);
        }
        if let Some(v) = get("INC_ALLOW_SHARED_DEVICE") {
            o.allow_shared_device = parse_bool("INC_ALLOW_SHARED_DEVICE", &v)?;
        }
        o.validate()?;
        Ok(o)
    }

    /// Checks ranges: timeout > 0, buffer and block counts within limits.
    pub fn validate(&self) -> Result<()> {
        let ms = self.timeout.as_millis();
        if ms == 0 || ms > u128::from(u32::MAX) {
            return Err(CommError::option(
                "INC_TIMEOUT_MS",
                &ms.to_string(),
                "must be between 1 and 4294967295 ms",
            ));
        }
        if let Some(b) = self.buffer_bytes {
            if !(4096..=MAX_BUFFER_BYTES).contains(&b) || b % 16 != 0 {
                return Err(CommError::option(
                    "INC_BUFFER_BYTES",
                    &b.to_string(),
                    format!("must be a multiple of 16 between 4096 and {MAX_BUFFER_BYTES}"),
                ));
            }
        }
        if let Some(b) = self.blocks {
            if b == 0 || b > MAX_BLOCKS {
                return Err(CommError::option(
                    "INC_BLOCKS",
                    &b.to_string(),
                    format!("must be between 1 and {MAX_BLOCKS}"),
                ));
            }
        }
        Ok(())
    }

    /// A stable text of every field that all ranks must agree on (compared during the
    /// rendezvous; a difference is an error on every rank).
    pub fn agreement_digest(&self) -> String {
        format!(
            "algo={};push={:?};1s={:?};2s={:?};hcm={:?};buf={:?};blocks={:?};tune={:?};simtopo={:?};timeout={};shared={}",
            self.algo,
            self.push_max_bytes,
            self.one_shot_max_bytes,
            self.two_shot_max_bytes,
            self.hcm_max_bytes,
            self.buffer_bytes,
            self.blocks,
            self.tune_file,
            self.sim_topology,
            self.timeout.as_millis(),
            self.allow_shared_device
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<CommOptions> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CommOptions::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_when_unset() {
        assert_eq!(from(&[]).unwrap(), CommOptions::default());
    }

    #[test]
    fn parses_every_variable() {
        let o = from(&[
            ("INC_BACKEND", "sim"),
            ("INC_ALGO", "two-shot"),
            ("INC_ONE_SHOT_MAX_BYTES", "256K"),
            ("INC_TWO_SHOT_MAX_BYTES", "10M"),
            ("INC_HCM_MAX_BYTES", "4096"),
            ("INC_TIMEOUT_MS", "2000"),
            ("INC_BUFFER_BYTES", "1M"),
            ("INC_BLOCKS", "4"),
            ("INC_TUNE_FILE", "/tmp/t.json"),
            ("INC_SIM_SHM", "1"),
            ("INC_SIM_TOPOLOGY", "hcm"),
            ("INC_ALLOW_SHARED_DEVICE", "1"),
        ])
        .unwrap();
        assert_eq!(o.backend, BackendKind::Sim);
        assert_eq!(o.algo, AlgoChoice::Force(AlgoPath::TwoShot));
        assert_eq!(o.one_shot_max_bytes, Some(256 * 1024));
        assert_eq!(o.two_shot_max_bytes, Some(10 << 20));
        assert_eq!(o.hcm_max_bytes, Some(4096));
        assert_eq!(o.timeout, Duration::from_millis(2000));
        assert_eq!(o.buffer_bytes, Some(1 << 20));
        assert_eq!(o.blocks, Some(4));
        assert_eq!(o.tune_file, Some(PathBuf::from("/tmp/t.json")));
        assert!(o.sim_shm);
        assert_eq!(o.sim_topology, Some(SimTopology::HybridCubeMesh));
        assert!(o.allow_shared_device);
    }

    #[test]
    fn bad_values_are_errors_naming_the_variable() {
        for (k, v) in [
            ("INC_BACKEND", "tpu"),
            ("INC_ALGO", "three-shot"),
            ("INC_ONE_SHOT_MAX_BYTES", "lots"),
            ("INC_ONE_SHOT_MAX_BYTES", "12X"),
            ("INC_ONE_SHOT_MAX_BYTES", "99999999999999999999"),
            ("INC_TWO_SHOT_MAX_BYTES", "17179869184G"),
            ("INC_TIMEOUT_MS", "-5"),
            ("INC_TIMEOUT_MS", "0"),
            ("INC_BUFFER_BYTES", "100"),
            ("INC_BUFFER_BYTES", "8G"),
            ("INC_BUFFER_BYTES", "4097"),
            ("INC_BLOCKS", "0"),
            ("INC_BLOCKS", "1000"),
            ("INC_SIM_SHM", "maybe"),
            ("INC_SIM_TOPOLOGY", "torus"),
            ("INC_ALLOW_SHARED_DEVICE", "2"),
        ] {
            match from(&[(k, v)]) {
                Err(CommError::InvalidOption { name, .. }) => assert_eq!(name, k, "{k}={v}"),
                other => panic!("{k}={v}: expected InvalidOption, got {other:?}"),
            }
        }
    }

    #[test]
    fn byte_units() {
        assert_eq!(parse_bytes("x", "0").unwrap(), 0);
        assert_eq!(parse_bytes("x", "1k").unwrap(), 1024);
        assert_eq!(parse_bytes("x", "2MiB").unwrap(), 2 << 20);
        assert_eq!(parse_bytes("x", "4G").unwrap(), 4 << 30);
        assert!(parse_bytes("x", "").is_err());
        assert!(parse_bytes("x", "K").is_err());
    }

    #[test]
    fn digest_differs_when_options_differ() {
        let a = CommOptions::default();
        let b = CommOptions {
            one_shot_max_bytes: Some(1),
            ..CommOptions::default()
        };
        assert_ne!(a.agreement_digest(), b.agreement_digest());
        assert_eq!(
            a.agreement_digest(),
            CommOptions::default().agreement_digest()
        );
    }
}
