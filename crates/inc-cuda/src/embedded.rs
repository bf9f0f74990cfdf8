//! Precompiled CUBINs embedded in the binary (issue 18: a fast first call). On a fresh
//! machine NVRTC's first load and compile cost about 1.6 s; the archives of
//! `kernels/cubin/` (one per arch, format in [`crate::archive`]) hold every instance that
//! [`coverage`] names, compiled ahead by `cargo xtask cubins` with NVRTC
//! [`PINNED_NVRTC`] from exactly the program text and options that `Kernels` would compile
//! ([`Program`]). `Kernels` takes an instance's image from here when the device's arch has
//! an archive holding the instance's [`Program::key`] (hash of program text + options +
//! arch), and otherwise (or when the driver rejects the image) uses the disk cache and
//! NVRTC as before. `INC_EMBEDDED_CUBINS=0` turns this off.
//!
//! A test (`tests/cubins_fresh.rs`, run by CI without GPU or NVRTC) fails while a
//! committed archive does not match the current kernels: run `cargo xtask cubins`.

use std::sync::OnceLock;

use crate::archive::Archive;
use crate::kernels::{all_instances, Instance};
use crate::proto::{DType, ReduceOp};
use crate::source::Program;

/// The NVRTC release the committed archives are built with: the oldest one the supported
/// drivers run (driver 580 = CUDA 13.0). A CUBIN from a newer NVRTC may not load on an
/// older driver; `cargo xtask cubins` refuses another version unless told otherwise, and
/// the freshness test checks the manifest.
pub const PINNED_NVRTC: (i32, i32) = (13, 0);

/// Folder of the archives, relative to the repository root.
pub const DIR: &str = "kernels/cubin";

/// The architectures with an archive: sm_90 (H100, H200) and sm_80 (A100).
pub const ARCHES: [(u32, u32); 2] = [(9, 0), (8, 0)];

/// The archive bytes compiled into this binary, by arch (same order as [`ARCHES`]).
const BYTES: [&[u8]; 2] = [
    include_bytes!("../../../kernels/cubin/sm_90.cubins"),
    include_bytes!("../../../kernels/cubin/sm_80.cubins"),
];

/// File name of the archive of `arch` inside [`DIR`]: `sm_XY.cubins`.
pub fn file_name(arch: (u32, u32)) -> String {
    format!("sm_{}{}.cubins", arch.0, arch.1)
}

/// The archive bytes embedded for `arch` (`None`: this arch has no archive).
pub fn bytes(arch: (u32, u32)) -> Option<&'static [u8]> {
    let i = ARCHES.iter().position(|a| *a == arch)?;
    BYTES.get(i).copied()
}

/// The parsed embedded archive of `arch`, parsed once per process: `None` when there is
/// none for this arch, `Some(Err(why))` when its bytes are damaged (then nothing is taken
/// from it).
pub fn archive(arch: (u32, u32)) -> Option<&'static Result<Archive<'static>, String>> {
    static PARSED: [OnceLock<Result<Archive<'static>, String>>; 2] =
        [OnceLock::new(), OnceLock::new()];
    let i = ARCHES.iter().position(|a| *a == arch)?;
    let bytes = BYTES.get(i)?;
    Some(PARSED.get(i)?.get_or_init(|| Archive::parse(bytes)))
}

/// The instances the archive of `arch` holds, in archive order (what `cargo xtask cubins`
/// compiles and the freshness test expects): every instance for every arch of [`ARCHES`].
pub fn coverage(arch: (u32, u32)) -> Vec<Instance> {
    if !ARCHES.contains(&arch) {
        return Vec::new();
    }
    all_instances()
}

/// The instances whose sum over bf16/f16/f32 `auto` uses first (kept for callers that
/// want a small list, e.g. a partial archive).
pub fn sum_instances() -> Vec<Instance> {
    all_instances()
        .into_iter()
        .filter(|(_, d, o)| *o == ReduceOp::Sum && DType::ALL.contains(d))
        .collect()
}

/// The key and program of every instance of [`coverage`] for `arch`.
pub fn programs(arch: (u32, u32)) -> Vec<(Instance, Program)> {
    coverage(arch)
        .into_iter()
        .map(|i| (i, Program::new(i.0, i.1, i.2, arch)))
        .collect()
}

/// Whether `Kernels` takes images from the embedded archives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Embedded {
    /// From `INC_EMBEDDED_CUBINS`: `0` (or `off`, `false`, `no`) = off, anything else or
    /// unset = on.
    #[default]
    FromEnv,
    /// Use them.
    On,
    /// Never: disk cache and NVRTC only.
    Off,
}

impl Embedded {
    /// Whether embedded images are used (reads `INC_EMBEDDED_CUBINS` for `FromEnv`).
    pub fn enabled(self) -> bool {
        match self {
            Embedded::FromEnv => env_enabled(std::env::var("INC_EMBEDDED_CUBINS").ok().as_deref()),
            Embedded::On => true,
            Embedded::Off => false,
        }
    }
}

/// The meaning of an `INC_EMBEDDED_CUBINS` value (`None` = unset).
pub fn env_enabled(value: Option<&str>) -> bool {
    !matches!(
        value.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("0" | "off" | "false" | "no")
    )
}

/// Where an instance's embedded image stands, for `Kernels`.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The image built from exactly this program.
    Image(&'static [u8]),
    /// No image for this program (other arch, instance not covered, or stale archive).
    Miss,
    /// The archive or entry is damaged (why): compile instead.
    Damaged(String),
}

/// Whether the archive of `program`'s arch holds it (index only: nothing is unpacked).
pub fn contains(program: &Program) -> bool {
    matches!(archive(program.arch), Some(Ok(a)) if a.contains(&program.key()))
}

/// The embedded image of `program` (its arch's archive, entry [`Program::key`]); unpacks
/// its frame at the first use.
pub fn lookup(program: &Program) -> Lookup {
    lookup_key(program.arch, &program.key())
}

/// The embedded image stored under `key` in the archive of `arch`.
pub fn lookup_key(arch: (u32, u32), key: &str) -> Lookup {
    match archive(arch) {
        None => Lookup::Miss,
        Some(Err(why)) => Lookup::Damaged(format!("embedded {}: {why}", file_name(arch))),
        Some(Ok(a)) => match a.get(key) {
            Ok(Some(img)) => Lookup::Image(img),
            Ok(None) => Lookup::Miss,
            Err(why) => Lookup::Damaged(format!("embedded {}: {why}", file_name(arch))),
        },
    }
}

/// Unpack now the frames of the archive of `arch` that hold `programs` (a background
/// thread of `Kernels::load` does this for the warm list, so that the first call finds its
/// image unpacked).
pub fn prefetch(arch: (u32, u32), programs: &[Program]) {
    if let Some(Ok(a)) = archive(arch) {
        let keys: Vec<String> = programs.iter().map(Program::key).collect();
        a.prefetch(&keys);
    }
}

/// The programs of [`coverage`] for `arch` grouped into the archive's frames: one frame
/// per algorithm, in [`coverage`] order (what `cargo xtask cubins` writes).
pub fn frames(arch: (u32, u32)) -> Vec<Vec<(Instance, Program)>> {
    let mut out: Vec<Vec<(Instance, Program)>> = Vec::new();
    for (inst, p) in programs(arch) {
        match out.last_mut() {
            Some(f) if f.first().is_some_and(|(i, _)| i.0 == inst.0) => f.push((inst, p)),
            _ => out.push(vec![(inst, p)]),
        }
    }
    out
}

/// One line about the embedded archive of `arch` (for logs): instance count and NVRTC
/// version, or why there is none.
pub fn describe(arch: (u32, u32)) -> String {
    let name = file_name(arch);
    match archive(arch) {
        None => format!("no embedded CUBINs for sm_{}{}", arch.0, arch.1),
        Some(Err(why)) => format!("embedded {name} unusable: {why}"),
        Some(Ok(a)) => format!(
            "embedded {name}: {} instances, {} KiB, NVRTC {}",
            a.entries().len(),
            a.image_bytes() / 1024,
            a.manifest_value("nvrtc").unwrap_or("?")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Algo;

    #[test]
    fn env_values() {
        assert!(env_enabled(None));
        assert!(env_enabled(Some("1")));
        assert!(env_enabled(Some("")));
        for off in ["0", "off", "OFF", " false ", "no"] {
            assert!(!env_enabled(Some(off)), "{off}");
        }
        assert!(Embedded::On.enabled());
        assert!(!Embedded::Off.enabled());
    }

    #[test]
    fn keys_follow_program_text_options_and_arch() {
        let p = Program::new(Algo::OneShot, DType::Bf16, ReduceOp::Sum, (9, 0));
        assert_eq!(p.label, "inc_one_shot_bf16_sum");
        assert!(p.options.contains(&"--gpu-architecture=sm_90".to_string()));
        let k = p.key();
        assert!(
            k.starts_with("inc-inc_one_shot_bf16_sum-") && k.ends_with("-sm_90"),
            "{k}"
        );
        // the disk cache key extends it with driver and NVRTC versions
        assert!(p
            .cache_key(13000, (13, 0))
            .starts_with(&format!("{k}-drv13000-nvrtc13.0")));
        // another arch, another option, another text: another key
        let p80 = Program::new(Algo::OneShot, DType::Bf16, ReduceOp::Sum, (8, 0));
        assert_ne!(p80.key(), k);
        let mut o = p.clone();
        o.options.push("-G".into());
        assert_ne!(o.key(), k);
        let mut t = p.clone();
        t.source.push(' ');
        assert_ne!(t.key(), k);
        // every instance has its own key
        let keys: std::collections::HashSet<String> =
            programs((9, 0)).iter().map(|(_, p)| p.key()).collect();
        assert_eq!(keys.len(), coverage((9, 0)).len());
    }

    #[test]
    fn lookup_takes_only_the_exact_key() {
        assert_eq!(lookup_key((7, 5), "inc-anything"), Lookup::Miss);
        assert_eq!(bytes((7, 5)), None);
        assert!(coverage((7, 5)).is_empty());
        for arch in ARCHES {
            if let Some(Ok(a)) = archive(arch) {
                if let Some(k) = a.keys().first() {
                    assert!(matches!(lookup_key(arch, k), Lookup::Image(_)));
                    assert_eq!(lookup_key(arch, &format!("{k}x")), Lookup::Miss);
                }
            }
        }
        // an instance of a covered arch is found by its program (when the archive is fresh;
        // the freshness test reports a stale one)
        let p = Program::new(Algo::TwoShot, DType::F32, ReduceOp::Sum, (9, 0));
        assert!(matches!(
            lookup(&p),
            Lookup::Image(_) | Lookup::Miss | Lookup::Damaged(_)
        ));
        assert!(describe((7, 5)).contains("no embedded"));
        assert!(sum_instances().iter().all(|(_, _, o)| *o == ReduceOp::Sum));
    }
}
