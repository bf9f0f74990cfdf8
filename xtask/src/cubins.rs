//! `cargo xtask cubins [--nvrtc DIR] [--any-nvrtc]`: precompile every kernel instance of
//! `inc_cuda::embedded::coverage` for each arch of `inc_cuda::embedded::ARCHES` (sm_90,
//! sm_80) with NVRTC and write the archives `kernels/cubin/sm_XY.cubins` that inc-cuda
//! embeds. The programs and options are inc-cuda's own (`inc_cuda::source::Program`, the
//! same call `Kernels` makes at run time), so the keys match what a running binary looks up.
//!
//! The NVRTC used must be the pinned release (`inc_cuda::embedded::PINNED_NVRTC`, 13.0: a
//! CUBIN of a newer NVRTC may not load on the CUDA 13.0 driver). Its folder (the one
//! holding `libnvrtc.so.13`) comes from `--nvrtc DIR` or `INC_NVRTC_DIR`, e.g.
//! `pip install --target /tmp/nvrtc130 nvidia-cuda-nvrtc==13.0.88` then
//! `--nvrtc /tmp/nvrtc130/nvidia/cu13/lib`. The task re-runs itself with that folder first
//! in `LD_LIBRARY_PATH` (the loader reads it at start only), checks that the libnvrtc it
//! loaded lies in that folder and has the pinned version (`--any-nvrtc` accepts another
//! version, recorded in the manifest; the freshness test then fails), and records the
//! version (and the pip package's, when found) in each archive's manifest. It compiles in
//! a fixed empty working folder (NVRTC records the folder, and the modification time of
//! kernel files it finds there, in the line tables), so the same sources and NVRTC give the
//! same archives.

use std::path::{Path, PathBuf};
use std::process::Command;

use inc_cuda::embedded::{self, PINNED_NVRTC};
use inc_cuda::source::Program;
use inc_cuda::{archive, compile};

use crate::util::repo_root;

/// Environment variable naming the NVRTC folder (alternative to `--nvrtc`).
pub const NVRTC_DIR_ENV: &str = "INC_NVRTC_DIR";
/// Working folder of the compiles (recorded in the CUBINs' line tables).
const WORK_DIR: &str = "/tmp/inc-xtask-cubins";
/// Set in the re-executed child to the NVRTC folder it was started with.
const CHILD_ENV: &str = "INC_XTASK_CUBINS_CHILD";

/// Options of `cargo xtask cubins`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Opts {
    /// Folder of libnvrtc.so.13.
    pub nvrtc: Option<PathBuf>,
    /// Accept an NVRTC other than the pinned version.
    pub any_nvrtc: bool,
}

/// Parse the arguments after `cubins`.
pub fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--nvrtc" => {
                let d = it.next().ok_or("--nvrtc needs a folder")?;
                o.nvrtc = Some(PathBuf::from(d));
            }
            "--any-nvrtc" => o.any_nvrtc = true,
            other => return Err(format!("cubins: unknown argument {other}")),
        }
    }
    Ok(o)
}

fn help_nvrtc() -> String {
    format!(
        "name the folder of libnvrtc.so.13 of NVRTC {}.{} with --nvrtc DIR or {NVRTC_DIR_ENV}, e.g.\n  \
         pip install --target /tmp/nvrtc130 'nvidia-cuda-nvrtc==13.0.*'\n  \
         cargo xtask cubins --nvrtc /tmp/nvrtc130/nvidia/cu13/lib",
        PINNED_NVRTC.0, PINNED_NVRTC.1
    )
}

/// Run `cargo xtask cubins` with `args`.
pub fn cubins(args: &[String]) -> Result<(), String> {
    let opts = parse(args)?;
    let dir = opts
        .nvrtc
        .clone()
        .or_else(|| std::env::var_os(NVRTC_DIR_ENV).map(PathBuf::from))
        .ok_or_else(help_nvrtc)?;
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("NVRTC folder {}: {e}\n{}", dir.display(), help_nvrtc()))?;
    if std::env::var_os(CHILD_ENV).is_some_and(|v| Path::new(&v) == dir) {
        return build(&dir, opts.any_nvrtc);
    }
    // The loader reads LD_LIBRARY_PATH at process start: run again with the folder first.
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let mut path = dir.as_os_str().to_os_string();
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|v| !v.is_empty()) {
        path.push(":");
        path.push(old);
    }
    // NVRTC records the working directory, and the modification time of every `#line`
    // file it finds relative to it, in the CUBIN's line table: compile in a fixed, empty
    // folder, so that the archives depend on the sources' text only (reproducible).
    let work = PathBuf::from(WORK_DIR);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    if work.join("kernels").exists() {
        return Err(format!("{WORK_DIR} must be empty"));
    }
    let status = Command::new(exe)
        .arg("cubins")
        .args(args)
        .current_dir(&work)
        .env("LD_LIBRARY_PATH", path)
        .env(CHILD_ENV, &dir)
        .status()
        .map_err(|e| format!("re-running xtask: {e}"));
    let _ = std::fs::remove_dir(&work);
    let status = status?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cubins failed ({status})"))
    }
}

/// The libnvrtc files mapped into this process (`/proc/self/maps`).
fn mapped_nvrtc() -> Vec<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut v: Vec<PathBuf> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.contains("libnvrtc"))
        .map(PathBuf::from)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// `nvidia-cuda-nvrtc X.Y.Z` from a pip `*.dist-info` folder up to 3 levels above `dir`.
pub fn pip_package(dir: &Path) -> Option<String> {
    let mut d = Some(dir);
    for _ in 0..4 {
        let here = d?;
        if let Ok(rd) = std::fs::read_dir(here) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(v) = name
                    .strip_prefix("nvidia_cuda_nvrtc-")
                    .and_then(|r| r.strip_suffix(".dist-info"))
                {
                    return Some(format!("nvidia-cuda-nvrtc {v}"));
                }
            }
        }
        d = here.parent();
    }
    None
}

/// The manifest of the archive of `arch`.
pub fn manifest(
    arch: (u32, u32),
    nvrtc: (i32, i32),
    package: Option<&str>,
    options: &[String],
    count: usize,
) -> String {
    let mut m = format!(
        "format={}\narch=sm_{}{}\nnvrtc={}.{}\n",
        archive::FORMAT_VERSION,
        arch.0,
        arch.1,
        nvrtc.0,
        nvrtc.1
    );
    if let Some(p) = package {
        m.push_str(&format!("nvrtc_package={p}\n"));
    }
    m.push_str(&format!(
        "options={}\ninstances={count}\nwritten_by=cargo xtask cubins\n",
        options.join(" ")
    ));
    m
}

/// Compile `programs` on all cores: (key, CUBIN) in the order given.
fn compile_all(programs: &[Program]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, programs.len().max(1));
    let mut done: Vec<(usize, Result<Vec<u8>, String>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || {
                    programs
                        .iter()
                        .enumerate()
                        .skip(w)
                        .step_by(workers)
                        .map(|(i, p)| {
                            let r = compile::compile(&p.source, &p.options, p.arch)
                                .map_err(|e| format!("{}: {e}", p.label));
                            (i, r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    if done.len() != programs.len() {
        return Err("a compile thread panicked".into());
    }
    programs
        .iter()
        .zip(done)
        .map(|(p, (_, r))| Ok((p.key(), r?)))
        .collect()
}

/// zstd level 19 with an 8 MiB window and long-distance matching: one algorithm's 12
/// instances (up to ~7 MB) share most of their bytes, which the long window finds.
pub fn pack(raw: &[u8]) -> Result<Vec<u8>, String> {
    use zstd::zstd_safe::CParameter;
    let err = |e: std::io::Error| format!("zstd: {e}");
    let mut c = zstd::bulk::Compressor::new(19).map_err(err)?;
    for p in [
        CParameter::WindowLog(23),
        CParameter::EnableLongDistanceMatching(true),
        CParameter::ContentSizeFlag(true),
        CParameter::ChecksumFlag(false),
    ] {
        c.set_parameter(p).map_err(err)?;
    }
    c.compress(raw).map_err(err)
}

/// The child's work: check the NVRTC, compile, write the archives.
fn build(dir: &Path, any_nvrtc: bool) -> Result<(), String> {
    let nvrtc = compile::nvrtc_version().map_err(|e| format!("{e}\n{}", help_nvrtc()))?;
    let mapped = mapped_nvrtc();
    let foreign: Vec<&PathBuf> = mapped
        .iter()
        .filter(|p| {
            !p.canonicalize()
                .map(|c| c.starts_with(dir))
                .unwrap_or(false)
        })
        .collect();
    if mapped.is_empty() || !foreign.is_empty() {
        return Err(format!(
            "the NVRTC loaded is not the one in {}: mapped {mapped:?}",
            dir.display()
        ));
    }
    if nvrtc != PINNED_NVRTC && !any_nvrtc {
        return Err(format!(
            "NVRTC {}.{} in {}; the archives must be built with {}.{} (the oldest driver's); --any-nvrtc to override",
            nvrtc.0,
            nvrtc.1,
            dir.display(),
            PINNED_NVRTC.0,
            PINNED_NVRTC.1
        ));
    }
    let package = pip_package(dir);
    println!(
        "NVRTC {}.{} ({}) from {}",
        nvrtc.0,
        nvrtc.1,
        package.as_deref().unwrap_or("package unknown"),
        dir.display()
    );
    let out_dir = repo_root()?.join(embedded::DIR);
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let mut total = 0usize;
    for arch in embedded::ARCHES {
        let t = std::time::Instant::now();
        let groups = embedded::frames(arch);
        let programs: Vec<Program> = groups.iter().flatten().map(|(_, p)| p.clone()).collect();
        let mut entries = compile_all(&programs)?.into_iter();
        let frames: Vec<Vec<(String, Vec<u8>)>> = groups
            .iter()
            .map(|g| entries.by_ref().take(g.len()).collect())
            .collect();
        let count: usize = frames.iter().map(Vec::len).sum();
        let raw: usize = frames.iter().flatten().map(|(_, b)| b.len()).sum();
        let options = programs
            .first()
            .map(|p| p.options.clone())
            .unwrap_or_default();
        let m = manifest(arch, nvrtc, package.as_deref(), &options, count);
        let bytes = archive::encode(&m, &frames, &pack)?;
        let path = out_dir.join(embedded::file_name(arch));
        let same = std::fs::read(&path).ok().as_deref() == Some(bytes.as_slice());
        if !same {
            std::fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        total += bytes.len();
        println!(
            "{} {}: {count} instances, {raw} bytes of CUBIN packed into {} bytes ({:.1} s)",
            if same { "unchanged" } else { "wrote" },
            path.display(),
            bytes.len(),
            t.elapsed().as_secs_f64()
        );
    }
    println!(
        "total {total} bytes ({:.2} MiB)",
        total as f64 / (1 << 20) as f64
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let a = |v: &[&str]| parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(a(&[]).unwrap(), Opts::default());
        let o = a(&["--nvrtc", "/x", "--any-nvrtc"]).unwrap();
        assert_eq!(o.nvrtc, Some(PathBuf::from("/x")));
        assert!(o.any_nvrtc);
        assert!(a(&["--nvrtc"]).is_err());
        assert!(a(&["--bogus"]).is_err());
    }

    #[test]
    fn manifest_names_arch_nvrtc_and_package() {
        let m = manifest(
            (9, 0),
            (13, 0),
            Some("nvidia-cuda-nvrtc 13.0.88"),
            &["--gpu-architecture=sm_90".into(), "-lineinfo".into()],
            48,
        );
        let bytes = archive::encode(&m, &[], &pack).unwrap();
        let a = archive::Archive::parse(&bytes).unwrap();
        assert_eq!(a.nvrtc(), Some((13, 0)));
        assert_eq!(a.manifest_value("arch"), Some("sm_90"));
        assert_eq!(
            a.manifest_value("nvrtc_package"),
            Some("nvidia-cuda-nvrtc 13.0.88")
        );
        assert_eq!(
            a.manifest_value("options"),
            Some("--gpu-architecture=sm_90 -lineinfo")
        );
    }

    #[test]
    fn packed_frames_unpack_with_inc_cudas_decoder() {
        let raw: Vec<u8> = (0..300_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect();
        let f = vec![
            vec![("k1".to_string(), raw.clone())],
            vec![("k2".to_string(), vec![9u8; 10])],
        ];
        let bytes = archive::encode("nvrtc=13.0\n", &f, &pack).unwrap();
        assert!(bytes.len() < raw.len() / 4);
        let a = archive::Archive::parse(&bytes).unwrap();
        assert_eq!(a.get("k1").unwrap(), Some(&raw[..]));
        assert_eq!(a.get("k2").unwrap(), Some(&[9u8; 10][..]));
    }

    #[test]
    fn finds_the_pip_package_version() {
        let t = std::env::temp_dir().join(format!("xtask-pip-{}", std::process::id()));
        let lib = t.join("nvidia/cu13/lib");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::create_dir_all(t.join("nvidia_cuda_nvrtc-13.0.88.dist-info")).unwrap();
        assert_eq!(
            pip_package(&lib).as_deref(),
            Some("nvidia-cuda-nvrtc 13.0.88")
        );
        let _ = std::fs::remove_dir_all(&t);
    }
}
