//! Algorithm choice: a pure function of the call's size in BYTES, the topology class and
//! the world size (the seed compared element counts against byte limits).
//!
//! Rules, in order:
//! 1. `INC_ALGO=<path>` pins a path: it is used whenever it can run at all (the topology
//!    allows it and the buffer holds the call), whatever the thresholds say; a call it
//!    cannot take falls back to NCCL with the reason. hcm can run on a hybrid cube mesh of
//!    8 and, pinned only, on a fully connected group of exactly 8 (an NVSwitch machine
//!    contains every cube mesh; it runs the canonical DGX-1 table, see
//!    [`crate::topo::hcm_table`]).
//! 2. The tune table (`INC_TUNE_FILE`), when present: the first rule of this world and
//!    class (and dtype, when the rule names one) whose `max_bytes` holds the call, if its
//!    path can run.
//! 3. Defaults: world 1 → one-shot; fully connected → push-one-shot up to its buffer
//!    capacity (the push slot, capped by the one-shot limit), then one-shot up to the one-shot limit,
//!    two-shot up to the two-shot limit; hybrid cube mesh (world 8) → hcm up to its limit;
//!    anything else → NCCL, with the reason. Neither the tune table nor the defaults ever
//!    choose hcm on a fully connected group.
//!
//! All sizes are `u64` bytes computed with checked arithmetic, so a 4 GiB + 1 call never
//! wraps into a small one.

use std::fmt;
use std::path::Path as FsPath;

use inc_sim::DType;
use inc_topo::TopologyClass;
use serde::Deserialize;

use crate::error::{CommError, Result};
use crate::options::{AlgoChoice, CommOptions, Path};

/// Default push-one-shot (LL) limit in bytes for a fully connected group of `world`
/// ranks, measured on 2, 3 and 4 H200s over NVSwitch (docs/PERFORMANCE.md; graph, bf16):
/// LL wins up to 256 KiB at world 2 (at 256 KiB LL 4.72 us, one-shot 4.71), up to 64 KiB at
/// worlds 3 and 4 (at 128 KiB, GPU run 56: world 3 LL 4.98, one-shot 4.83; world 4 LL 5.99,
/// one-shot 5.30: every rank stores its data into W - 1 peers at half efficiency, so its
/// edge shrinks with W).
/// Larger worlds are unmeasured. `inc tune` or `INC_PUSH_MAX_BYTES` set it per machine.
pub fn default_push_max_bytes(world: usize) -> u64 {
    match world {
        0..=2 => 256 << 10,
        3 | 4 => 64 << 10,
        _ => 32 << 10,
    }
}

/// Default hcm limit (the seed's, in bytes).
pub const DEFAULT_HCM_MAX_BYTES: u64 = 256 << 10;

/// Default one-shot limit for a fully connected group of `world` ranks, measured on 2, 3
/// and 4 H200s (graph, bf16; GPU run 91, against the copy-in two-shot in its form of lines
/// where it fits): one-shot wins up to 8 MiB at world 2 (8 MiB 31.13 us against the
/// two-shot's 32.47 in GPU run 94, 31.30 against 32.44 in run 103; 16 MiB 61.9 against
/// 57.8) but for 512 KiB-2 MiB, where the lines form is 4-14% faster (1 MiB 6.19 us
/// against 7.16: [`default_lines_min_bytes`]); at world 3 up to 256 KiB (5.53 against 5.46: even; 512 KiB 7.14 against 5.97);
/// at world 4 up to 128 KiB (256 KiB 6.45 against 5.98, 1 MiB 13.94 against 8.51; at 128
/// KiB one-shot 5.18, run 77). Larger worlds are unmeasured and keep a conservative 128 KiB.
pub fn default_one_shot_max_bytes(world: usize) -> u64 {
    match world {
        0..=2 => 8 << 20,
        3 => 256 << 10,
        4 => 128 << 10,
        _ => 128 << 10,
    }
}

/// Above this many bytes `auto` takes the two-shot over the one-shot wherever the call runs
/// as 128-byte lines ([`Capacity::lines`]), even under the one-shot limit: at world 2 the
/// one-shot wins up to 8 MiB but for 512 KiB-2 MiB, where the lines form is 4-14% faster
/// (4x H200, GPU runs 91 and 94: 512 KiB 5.26 us against 5.55, 1 MiB 6.18 against 7.11,
/// 2 MiB 10.34 against 10.70; 384 KiB even, 5.10 against 5.05). Other worlds: no window
/// (their one-shot limit already hands over to the two-shot).
pub fn default_lines_min_bytes(world: usize) -> u64 {
    match world {
        2 => 384 << 10,
        _ => u64::MAX,
    }
}

/// Above this many bytes a call on a symmetric tensor (the zero-copy path) takes the
/// two-shot even under the one-shot limit: with no copy-in and no copy-out its crossover
/// with the one-shot comes earlier than the copy-in path's. World 2 (2x H200, graph, bf16,
/// GPU runs 111-112, three repetitions each): the one-shot on the tensor's memory wins up
/// to 5 MiB (4.5 MiB 19.6 us against 20.1, 5 MiB 21.2 against 21.5), the zero-copy
/// two-shot from 5.25 MiB (22.1 against 22.3, 6 MiB 24.2 against 24.5, 8 MiB 30.4 against
/// 31.2). Other worlds: no window (their one-shot limit is far below).
pub fn default_zero_copy_two_shot_min_bytes(world: usize) -> u64 {
    match world {
        2 => 5 << 20,
        _ => u64::MAX,
    }
}

/// Why a call did not take an intra-node path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// Larger than every intra-node path allows.
    TooLarge {
        /// The call's bytes.
        bytes: u64,
        /// The largest intra-node call for this topology.
        max: u64,
    },
    /// The topology allows no intra-node path (not fully connected, not hcm).
    Topology {
        /// The class name.
        class: &'static str,
    },
    /// `INC_ALGO` pinned a path that cannot take this call.
    ForcedUnfit {
        /// The pinned path.
        wanted: Path,
        /// Why it cannot.
        why: String,
    },
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fallback::TooLarge { bytes, max } => {
                write!(
                    f,
                    "{bytes} bytes is over the intra-node limit of {max} bytes"
                )
            }
            Fallback::Topology { class } => write!(f, "topology {class} has no intra-node path"),
            Fallback::ForcedUnfit { wanted, why } => {
                write!(f, "INC_ALGO={wanted} cannot take this call: {why}")
            }
        }
    }
}

/// The outcome of a choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The path to take.
    pub path: Path,
    /// Set when the path is NCCL because no intra-node path fits.
    pub fallback: Option<Fallback>,
}

/// One rule of a tune table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TuneRule {
    /// World size the rule is for.
    pub world: usize,
    /// Topology class name (`fully_connected`, `hybrid_cube_mesh`, `none`); absent: any.
    #[serde(default)]
    pub class: Option<String>,
    /// `bf16`, `f16` or `f32`; absent: any.
    #[serde(default)]
    pub dtype: Option<String>,
    /// The rule covers calls up to this many bytes.
    pub max_bytes: u64,
    /// `one-shot`, `two-shot`, `hcm` or `nccl`.
    pub algo: String,
}

/// An autotune table: `{"rules": [{"world": 2, "max_bytes": 65536, "algo": "one-shot"}, ...]}`.
/// Rules are tried in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TuneTable {
    rules: Vec<(TuneRule, Path)>,
}

#[derive(Deserialize)]
struct TuneFile {
    rules: Vec<TuneRule>,
}

impl TuneTable {
    /// Parses the JSON text of a table; an unknown algo or dtype is an error.
    pub fn parse(text: &str) -> Result<Self> {
        let file: TuneFile = serde_json::from_str(text)
            .map_err(|e| CommError::option("INC_TUNE_FILE", "<contents>", e.to_string()))?;
        let mut rules = Vec::with_capacity(file.rules.len());
        for r in file.rules {
            let path: Path = r.algo.parse().map_err(|_| {
                CommError::option(
                    "INC_TUNE_FILE",
                    &r.algo,
                    "rule algo must be one-shot, two-shot, hcm or nccl",
                )
            })?;
            if let Some(d) = &r.dtype {
                if d.parse::<DType>().is_err() {
                    return Err(CommError::option(
                        "INC_TUNE_FILE",
                        d,
                        "rule dtype must be bf16, f16 or f32",
                    ));
                }
            }
            rules.push((r, path));
        }
        Ok(Self { rules })
    }

    /// Reads and parses a table file.
    pub fn load(path: &FsPath) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CommError::option("INC_TUNE_FILE", &path.display().to_string(), e.to_string())
        })?;
        Self::parse(&text)
    }

    fn lookup(&self, world: usize, class: &str, dtype: DType, bytes: u64) -> Option<Path> {
        let dname = dtype.name();
        self.rules
            .iter()
            .find(|(r, _)| {
                r.world == world
                    && r.class.as_deref().is_none_or(|c| c == class)
                    && r.dtype
                        .as_deref()
                        .is_none_or(|d| d.eq_ignore_ascii_case(dname))
                    && bytes <= r.max_bytes
            })
            .map(|(_, p)| *p)
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when the table has no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Largest call (bytes) each intra-node algorithm's buffers hold; filled in by the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capacity {
    /// one-shot.
    pub one_shot: u64,
    /// two-shot.
    pub two_shot: u64,
    /// hcm.
    pub hcm: u64,
    /// push-one-shot (the push slot; 0 = not available).
    pub push_one_shot: u64,
    /// The largest two-shot call that runs as 128-byte lines (the lines region; 0 = none).
    pub lines: u64,
}

impl Capacity {
    fn of(&self, p: Path) -> u64 {
        match p {
            Path::OneShot => self.one_shot,
            Path::TwoShot => self.two_shot,
            Path::Hcm => self.hcm,
            Path::PushOneShot => self.push_one_shot,
            Path::Nccl => u64::MAX,
        }
    }
}

/// The selector of one communicator (fixed at init; `select` is pure and allocation-free
/// on the intra-node paths).
#[derive(Debug, Clone)]
pub struct Selector {
    world: usize,
    class: TopologyClass,
    choice: AlgoChoice,
    push_max: u64,
    one_shot_max: u64,
    /// Above this many bytes a two-shot call that runs as lines beats the one-shot even
    /// under `one_shot_max` ([`default_lines_min_bytes`]; `u64::MAX` when the one-shot
    /// limit was set by hand).
    lines_min: u64,
    /// Above this many bytes a zero-copy call takes the two-shot even under `one_shot_max`
    /// ([`default_zero_copy_two_shot_min_bytes`]; `u64::MAX` when the one-shot limit was
    /// set by hand).
    zero_copy_min: u64,
    two_shot_max: u64,
    hcm_max: u64,
    /// The hcm table when hcm can run here (hybrid cube mesh of 8, fully connected 8).
    hcm: Option<[[usize; 4]; 8]>,
    capacity: Capacity,
    tune: Option<TuneTable>,
}

impl Selector {
    /// Builds the selector from the options, the agreed topology and the buffers' capacity.
    pub fn new(
        world: usize,
        class: TopologyClass,
        opts: &CommOptions,
        capacity: Capacity,
        tune: Option<TuneTable>,
    ) -> Self {
        // Deterministic (the same on every rank); `None` if it cannot be built, which only
        // makes hcm unavailable.
        let hcm = crate::topo::hcm_table(&class, world).ok().flatten();
        Self {
            world,
            class,
            hcm,
            choice: opts.algo,
            push_max: opts
                .push_max_bytes
                .unwrap_or_else(|| default_push_max_bytes(world)),
            one_shot_max: opts
                .one_shot_max_bytes
                .unwrap_or_else(|| default_one_shot_max_bytes(world)),
            lines_min: if opts.one_shot_max_bytes.is_some() {
                u64::MAX
            } else {
                default_lines_min_bytes(world)
            },
            zero_copy_min: if opts.one_shot_max_bytes.is_some() {
                u64::MAX
            } else {
                default_zero_copy_two_shot_min_bytes(world)
            },
            two_shot_max: opts.two_shot_max_bytes.unwrap_or(u64::MAX),
            hcm_max: opts.hcm_max_bytes.unwrap_or(DEFAULT_HCM_MAX_BYTES),
            capacity,
            tune,
        }
    }

    /// The buffer capacity of `path` in bytes (`u64::MAX` for NCCL).
    pub fn capacity_of(&self, path: Path) -> u64 {
        self.capacity.of(path)
    }

    /// The hcm table the hcm path runs with, when it can run on this group (a hybrid cube
    /// mesh of 8: the solver's; a fully connected 8: the canonical DGX-1 table).
    pub fn hcm_table(&self) -> Option<&[[usize; 4]; 8]> {
        self.hcm.as_ref()
    }

    /// The topology class this selector decides for.
    pub fn class(&self) -> &TopologyClass {
        &self.class
    }

    /// Whether `path` can run at all for a call of `bytes` (topology and buffer capacity),
    /// or why not. hcm can run on a hybrid cube mesh of 8 or a fully connected group of
    /// exactly 8 (the latter only when pinned: [`Selector::select`] never picks it there
    /// on its own).
    pub fn can_run(&self, path: Path, bytes: u64) -> std::result::Result<(), String> {
        let topo_ok = match path {
            Path::Nccl => true,
            Path::OneShot | Path::TwoShot | Path::PushOneShot => {
                self.world == 1 || matches!(self.class, TopologyClass::FullyConnected)
            }
            Path::Hcm => self.hcm.is_some(),
        };
        if !topo_ok {
            return Err(format!(
                "{path} needs {} (topology is {}, world {})",
                if path == Path::Hcm {
                    "a hybrid cube mesh of 8 or a fully connected group of 8"
                } else {
                    "a fully connected group"
                },
                self.class.name(),
                self.world
            ));
        }
        let cap = self.capacity.of(path);
        if bytes > cap {
            return Err(format!(
                "{bytes} bytes is over the {path} buffer capacity of {cap} bytes"
            ));
        }
        Ok(())
    }

    /// Chooses the path for a call of `bytes` bytes of `dtype`.
    pub fn select(&self, bytes: u64, dtype: DType) -> Selection {
        self.select_for(bytes, dtype, false)
    }

    /// Chooses the path for a call of `bytes` bytes of `dtype` in place on a symmetric
    /// tensor (the zero-copy path): as [`Selector::select`], but the two-shot above 5 MiB
    /// at world 2 (`default_zero_copy_two_shot_min_bytes`) where `auto` would take the
    /// one-shot (a forced path and a tune table's rule still win).
    pub fn select_zero_copy(&self, bytes: u64, dtype: DType) -> Selection {
        self.select_for(bytes, dtype, true)
    }

    fn select_for(&self, bytes: u64, dtype: DType, zero_copy: bool) -> Selection {
        let intra = |path| Selection {
            path,
            fallback: None,
        };
        if let AlgoChoice::Force(p) = self.choice {
            return match self.can_run(p, bytes) {
                Ok(()) => intra(p),
                Err(why) => Selection {
                    path: Path::Nccl,
                    fallback: Some(Fallback::ForcedUnfit { wanted: p, why }),
                },
            };
        }
        if let Some(t) = &self.tune {
            if let Some(p) = t.lookup(self.world, self.class.name(), dtype, bytes) {
                // hcm off a true hybrid cube mesh is for pinned calls only.
                let auto_ok =
                    p != Path::Hcm || matches!(self.class, TopologyClass::HybridCubeMesh(_));
                if auto_ok && self.can_run(p, bytes).is_ok() {
                    return intra(p);
                }
            }
        }
        if self.world == 1 {
            let max = self.capacity.one_shot;
            return if bytes <= max {
                intra(Path::OneShot)
            } else {
                Selection {
                    path: Path::Nccl,
                    fallback: Some(Fallback::TooLarge { bytes, max }),
                }
            };
        }
        match &self.class {
            TopologyClass::FullyConnected => {
                let one = self.one_shot_max.min(self.capacity.one_shot);
                let two = self.two_shot_max.min(self.capacity.two_shot);
                // push-one-shot for small calls: no barrier, one NVLink traversal.
                let push = self
                    .push_max
                    .min(self.one_shot_max)
                    .min(self.capacity.push_one_shot);
                // the two-shot of lines beats the one-shot above lines_min where it fits
                let lines = bytes > self.lines_min && bytes <= self.capacity.lines.min(two);
                // the zero-copy two-shot beats the one-shot on a symmetric tensor earlier
                let zc_two = zero_copy && bytes > self.zero_copy_min;
                if bytes <= push {
                    intra(Path::PushOneShot)
                } else if bytes <= one && !lines && !zc_two {
                    intra(Path::OneShot)
                } else if bytes <= two {
                    intra(Path::TwoShot)
                } else {
                    Selection {
                        path: Path::Nccl,
                        // the largest call any path takes (the push slot may hold more
                        // than the one-shot's W - 1 receive areas of a small half)
                        fallback: Some(Fallback::TooLarge {
                            bytes,
                            max: one.max(two).max(push),
                        }),
                    }
                }
            }
            TopologyClass::HybridCubeMesh(_) if self.world == 8 => {
                let max = self.hcm_max.min(self.capacity.hcm);
                if bytes <= max {
                    intra(Path::Hcm)
                } else {
                    Selection {
                        path: Path::Nccl,
                        fallback: Some(Fallback::TooLarge { bytes, max }),
                    }
                }
            }
            other => Selection {
                path: Path::Nccl,
                fallback: Some(Fallback::Topology {
                    class: other.name(),
                }),
            },
        }
    }
}

/// Bytes of `len` elements of `dtype`, or an error when that overflows `u64`.
pub fn bytes_of(len: usize, dtype: DType) -> Option<u64> {
    u64::try_from(len).ok()?.checked_mul(dtype.size() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CAP: Capacity = Capacity {
        one_shot: 64 << 20,
        two_shot: 64 << 20,
        hcm: 32 << 20,
        push_one_shot: 256 << 10,
        lines: 2 << 20,
    };

    fn hcm_class() -> TopologyClass {
        let mesh = crate::topo::hcm_mesh().unwrap();
        inc_topo::classify(&mesh)
    }

    fn sel(world: usize, class: TopologyClass, opts: CommOptions) -> Selector {
        Selector::new(world, class, &opts, CAP, None)
    }

    #[test]
    fn too_large_names_the_largest_call_any_path_takes() {
        // small halves (the sim backend's): the push slot holds more than the one-shot's W
        // receive areas or the two-shot's receive + gather areas
        let cap = Capacity {
            one_shot: 32 << 10,
            two_shot: (32 << 10) - 16,
            hcm: 0,
            push_one_shot: 64 << 10,
            lines: 0,
        };
        let s = Selector::new(
            2,
            TopologyClass::FullyConnected,
            &CommOptions::default(),
            cap,
            None,
        );
        assert_eq!(s.select(64 << 10, DType::F32).path, Path::PushOneShot);
        let r = s.select((64 << 10) + 4, DType::F32);
        assert_eq!(r.path, Path::Nccl);
        assert_eq!(
            r.fallback,
            Some(Fallback::TooLarge {
                bytes: (64 << 10) + 4,
                max: 64 << 10
            })
        );
    }

    #[test]
    fn fully_connected_defaults() {
        // world 4: LL push up to 64 KiB, one-shot up to 128 KiB, then two-shot (lines)
        let s = sel(4, TopologyClass::FullyConnected, CommOptions::default());
        assert_eq!(s.select(1024, DType::Bf16).path, Path::PushOneShot);
        assert_eq!(s.select(64 << 10, DType::Bf16).path, Path::PushOneShot);
        assert_eq!(s.select((64 << 10) + 2, DType::Bf16).path, Path::OneShot);
        assert_eq!(s.select(128 << 10, DType::Bf16).path, Path::OneShot);
        assert_eq!(s.select((128 << 10) + 2, DType::Bf16).path, Path::TwoShot);
        assert_eq!(s.select(64 << 20, DType::F32).path, Path::TwoShot);
        // world 3: LL push up to 64 KiB, one-shot up to 256 KiB
        let s = sel(3, TopologyClass::FullyConnected, CommOptions::default());
        assert_eq!(s.select(64 << 10, DType::Bf16).path, Path::PushOneShot);
        assert_eq!(s.select((64 << 10) + 2, DType::Bf16).path, Path::OneShot);
        assert_eq!(s.select(256 << 10, DType::Bf16).path, Path::OneShot);
        assert_eq!(s.select((256 << 10) + 2, DType::Bf16).path, Path::TwoShot);
        // world 5 and up (unmeasured): 32 KiB and 128 KiB
        let s = sel(6, TopologyClass::FullyConnected, CommOptions::default());
        assert_eq!(s.select(32 << 10, DType::Bf16).path, Path::PushOneShot);
        assert_eq!(s.select((128 << 10) + 2, DType::Bf16).path, Path::TwoShot);
        // world 2: LL push up to 256 KiB, one-shot up to 8 MiB but for the window where the
        // two-shot runs as lines (384 KiB .. the lines capacity, 2 MiB in CAP)
        let s = sel(2, TopologyClass::FullyConnected, CommOptions::default());
        assert_eq!(s.select(256 << 10, DType::Bf16).path, Path::PushOneShot);
        assert_eq!(s.select((256 << 10) + 2, DType::Bf16).path, Path::OneShot);
        assert_eq!(s.select(384 << 10, DType::Bf16).path, Path::OneShot);
        assert_eq!(s.select((384 << 10) + 2, DType::Bf16).path, Path::TwoShot);
        assert_eq!(s.select(2 << 20, DType::Bf16).path, Path::TwoShot);
        assert_eq!(s.select((2 << 20) + 2, DType::Bf16).path, Path::OneShot);
        assert_eq!(s.select(4 << 20, DType::Bf16).path, Path::OneShot);
        assert_eq!(s.select(8 << 20, DType::Bf16).path, Path::OneShot);
        // a one-shot limit set by hand turns the window off
        let hand = CommOptions {
            one_shot_max_bytes: Some(4 << 20),
            ..CommOptions::default()
        };
        let s2 = sel(2, TopologyClass::FullyConnected, hand);
        assert_eq!(s2.select(1 << 20, DType::Bf16).path, Path::OneShot);
        assert_eq!(s.select((8 << 20) + 2, DType::Bf16).path, Path::TwoShot);
        // over the two-shot buffer capacity: NCCL, with the reason
        let big = s.select((64 << 20) + 1, DType::F32);
        assert_eq!(big.path, Path::Nccl);
        assert!(matches!(big.fallback, Some(Fallback::TooLarge { .. })));
    }

    #[test]
    fn zero_copy_takes_the_two_shot_earlier_at_world_2() {
        let s = sel(2, TopologyClass::FullyConnected, CommOptions::default());
        // the same as the copy-in path up to 5 MiB
        for bytes in [
            1024,
            256 << 10,
            (256 << 10) + 2,
            1 << 20,
            (2 << 20) + 2,
            4 << 20,
        ] {
            assert_eq!(
                s.select_zero_copy(bytes, DType::Bf16).path,
                s.select(bytes, DType::Bf16).path,
                "{bytes}"
            );
        }
        // above it the two-shot, where the copy-in path still takes the one-shot
        assert_eq!(
            s.select_zero_copy((5 << 20) + 2, DType::Bf16).path,
            Path::TwoShot
        );
        assert_eq!(s.select_zero_copy(8 << 20, DType::Bf16).path, Path::TwoShot);
        assert_eq!(s.select(8 << 20, DType::Bf16).path, Path::OneShot);
        // a one-shot limit set by hand is kept on both paths
        let hand = CommOptions {
            one_shot_max_bytes: Some(8 << 20),
            ..CommOptions::default()
        };
        let s2 = sel(2, TopologyClass::FullyConnected, hand);
        assert_eq!(
            s2.select_zero_copy(8 << 20, DType::Bf16).path,
            Path::OneShot
        );
        // other worlds: no window
        let s4 = sel(4, TopologyClass::FullyConnected, CommOptions::default());
        for bytes in [64 << 10, 128 << 10, (128 << 10) + 2, 8 << 20] {
            assert_eq!(
                s4.select_zero_copy(bytes, DType::Bf16).path,
                s4.select(bytes, DType::Bf16).path,
                "{bytes}"
            );
        }
    }

    #[test]
    fn thresholds_are_bytes_not_elements() {
        // 128K f32 elements = 512 KiB: over a 256 KiB one-shot limit, even though the
        // element count (131072) is under it.
        let o = CommOptions {
            one_shot_max_bytes: Some(256 << 10),
            ..CommOptions::default()
        };
        let s = sel(8, TopologyClass::FullyConnected, o);
        let bytes = bytes_of(128 << 10, DType::F32).unwrap();
        assert_eq!(s.select(bytes, DType::F32).path, Path::TwoShot);
        let bytes = bytes_of(128 << 10, DType::Bf16).unwrap();
        assert_eq!(s.select(bytes, DType::Bf16).path, Path::OneShot);
        let bytes = bytes_of(16 << 10, DType::Bf16).unwrap();
        assert_eq!(s.select(bytes, DType::Bf16).path, Path::PushOneShot);
    }

    #[test]
    fn four_gib_boundary_does_not_wrap() {
        let cap = Capacity {
            one_shot: u64::MAX,
            two_shot: u64::MAX,
            hcm: u64::MAX,
            push_one_shot: 0,
            lines: 0,
        };
        let o = CommOptions {
            two_shot_max_bytes: Some(1 << 32),
            ..CommOptions::default()
        };
        let s = Selector::new(2, TopologyClass::FullyConnected, &o, cap, None);
        assert_eq!(s.select(1 << 32, DType::F32).path, Path::TwoShot);
        // 2^32 + 16 bytes truncated to 32 bits would be 16 bytes -> one-shot; it must not.
        assert_eq!(s.select((1 << 32) + 16, DType::F32).path, Path::Nccl);
        assert_eq!(bytes_of((1 << 30) + 4, DType::F32), Some((1 << 32) + 16));
        assert_eq!(bytes_of(usize::MAX, DType::F32), None);
    }

    #[test]
    fn hcm_only_on_hcm_world_8() {
        let s = sel(8, hcm_class(), CommOptions::default());
        assert_eq!(s.select(4096, DType::Bf16).path, Path::Hcm);
        let big = s.select((256 << 10) + 1, DType::Bf16);
        assert_eq!(big.path, Path::Nccl);
        let s = sel(4, TopologyClass::None, CommOptions::default());
        let r = s.select(16, DType::F16);
        assert_eq!(r.path, Path::Nccl);
        assert_eq!(r.fallback, Some(Fallback::Topology { class: "none" }));
    }

    #[test]
    fn forced_paths() {
        let force = |p| CommOptions {
            algo: AlgoChoice::Force(p),
            ..CommOptions::default()
        };
        let s = sel(4, TopologyClass::FullyConnected, force(Path::TwoShot));
        assert_eq!(s.select(16, DType::F32).path, Path::TwoShot);
        let s = sel(4, TopologyClass::FullyConnected, force(Path::Nccl));
        assert_eq!(
            s.select(16, DType::F32),
            Selection {
                path: Path::Nccl,
                fallback: None
            }
        );
        let s = sel(4, TopologyClass::FullyConnected, force(Path::Hcm));
        let r = s.select(16, DType::F32);
        assert_eq!(r.path, Path::Nccl);
        assert!(matches!(
            r.fallback,
            Some(Fallback::ForcedUnfit {
                wanted: Path::Hcm,
                ..
            })
        ));
        let s = sel(4, TopologyClass::FullyConnected, force(Path::OneShot));
        assert_eq!(s.select(CAP.one_shot + 1, DType::F32).path, Path::Nccl);
        assert_eq!(s.select(CAP.one_shot, DType::F32).path, Path::OneShot);
    }

    #[test]
    fn hcm_forced_on_fully_connected_8_only() {
        // Auto: never hcm on a fully connected 8, even when a tune rule names it.
        let auto = sel(8, TopologyClass::FullyConnected, CommOptions::default());
        assert!(auto.hcm_table().is_some());
        assert!(auto.can_run(Path::Hcm, 4096).is_ok());
        for bytes in [0, 16, 4096, 256 << 10, 1 << 20, 64 << 20] {
            assert_ne!(auto.select(bytes, DType::Bf16).path, Path::Hcm);
        }
        let t =
            TuneTable::parse(r#"{"rules":[{"world":8,"max_bytes":65536,"algo":"hcm"}]}"#).unwrap();
        let tuned = Selector::new(
            8,
            TopologyClass::FullyConnected,
            &CommOptions::default(),
            CAP,
            Some(t.clone()),
        );
        assert_ne!(tuned.select(4096, DType::Bf16).path, Path::Hcm);
        // The same rule on a true hybrid cube mesh is taken.
        let hcm = Selector::new(8, hcm_class(), &CommOptions::default(), CAP, Some(t));
        assert_eq!(hcm.select(4096, DType::Bf16).path, Path::Hcm);
        // Forced: hcm on a fully connected 8, up to the buffer capacity.
        let o = CommOptions {
            algo: AlgoChoice::Force(Path::Hcm),
            ..CommOptions::default()
        };
        let s = sel(8, TopologyClass::FullyConnected, o.clone());
        assert_eq!(s.select(4096, DType::Bf16).path, Path::Hcm);
        assert_eq!(s.select(CAP.hcm, DType::Bf16).path, Path::Hcm);
        let big = s.select(CAP.hcm + 1, DType::Bf16);
        assert_eq!(big.path, Path::Nccl);
        assert!(matches!(big.fallback, Some(Fallback::ForcedUnfit { .. })));
        // Not on a disconnected 8 nor a fully connected 7.
        for s in [
            sel(8, TopologyClass::None, o.clone()),
            sel(7, TopologyClass::FullyConnected, o),
        ] {
            assert!(s.hcm_table().is_none());
            assert!(matches!(
                s.select(16, DType::F32).fallback,
                Some(Fallback::ForcedUnfit {
                    wanted: Path::Hcm,
                    ..
                })
            ));
        }
    }

    #[test]
    fn world_one_is_one_shot() {
        let s = sel(1, TopologyClass::FullyConnected, CommOptions::default());
        assert_eq!(s.select(10 << 20, DType::F32).path, Path::OneShot);
    }

    #[test]
    fn tune_table_rules() {
        let t = TuneTable::parse(
            r#"{"rules":[
                {"world":2,"dtype":"f32","max_bytes":1024,"algo":"two-shot"},
                {"world":2,"class":"fully_connected","max_bytes":4096,"algo":"nccl"}
            ]}"#,
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        let s = Selector::new(
            2,
            TopologyClass::FullyConnected,
            &CommOptions::default(),
            CAP,
            Some(t),
        );
        assert_eq!(s.select(1024, DType::F32).path, Path::TwoShot);
        assert_eq!(s.select(1024, DType::Bf16).path, Path::Nccl);
        assert_eq!(s.select(4097, DType::Bf16).path, Path::PushOneShot);
        assert!(TuneTable::parse(r#"{"rules":[{"world":2,"max_bytes":1,"algo":"x"}]}"#).is_err());
        assert!(TuneTable::parse(
            r#"{"rules":[{"world":2,"max_bytes":1,"algo":"nccl","dtype":"f64"}]}"#
        )
        .is_err());
        assert!(TuneTable::parse("not json").is_err());
    }

    proptest! {
        #[test]
        fn selection_respects_limits(bytes in 0u64..(1 << 34), world in 1usize..=8, one in 0u64..(1 << 24), two in 0u64..(1 << 27)) {
            let o = CommOptions { one_shot_max_bytes: Some(one), two_shot_max_bytes: Some(two), ..CommOptions::default() };
            let s = Selector::new(world, TopologyClass::FullyConnected, &o, CAP, None);
            let r = s.select(bytes, DType::Bf16);
            match r.path {
                Path::PushOneShot => prop_assert!(world > 1 && bytes <= one.min(CAP.push_one_shot).min(default_push_max_bytes(world))),
                Path::OneShot => prop_assert!(world == 1 && bytes <= CAP.one_shot || bytes <= one.min(CAP.one_shot) && bytes > one.min(CAP.push_one_shot).min(default_push_max_bytes(world))),
                Path::TwoShot => prop_assert!(bytes <= two.min(CAP.two_shot) && bytes > one.min(CAP.one_shot)),
                Path::Nccl => prop_assert!(r.fallback.is_some() && bytes > one.min(CAP.one_shot)),
                Path::Hcm => prop_assert!(false, "hcm on a fully connected group"),
            }
            // Monotone: a smaller call never takes a "larger" path.
            if bytes > 0 {
                let smaller = s.select(bytes / 2, DType::Bf16).path;
                prop_assert!(smaller <= r.path);
            }
        }
    }
}
