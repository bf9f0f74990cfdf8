#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The committed kernels/cubin/*.cubins (embedded in inc-cuda) hold, for each arch, exactly
//! the programs this inc-cuda compiles at run time, built with the pinned NVRTC. They are
//! written by `cargo xtask cubins`; this test (run by CI through `cargo test`, no GPU and no
//! NVRTC needed, like inc-proto's codegen test) fails while they are stale.

use inc_cuda::archive::Archive;
use inc_cuda::embedded::{self, ARCHES, PINNED_NVRTC};
use inc_cuda::source::compile_options;

fn fix() -> String {
    format!(
        "run `cargo xtask cubins --nvrtc <folder of libnvrtc.so.13 of NVRTC {}.{}>` (see xtask/src/cubins.rs) and commit kernels/cubin/",
        PINNED_NVRTC.0, PINNED_NVRTC.1
    )
}

#[test]
fn committed_cubin_archives_are_fresh() {
    for arch in ARCHES {
        let name = format!("{}/{}", embedded::DIR, embedded::file_name(arch));
        let bytes = embedded::bytes(arch).unwrap();
        // the embedded copy is the file in the tree (absent when this binary runs from a
        // GPU test bundle on another machine)
        let path = format!("{}/../../{name}", env!("CARGO_MANIFEST_DIR"));
        if let Ok(disk) = std::fs::read(&path) {
            assert!(
                disk == bytes,
                "{name} changed after this test was built: rebuild"
            );
        }
        let a =
            Archive::parse(bytes).unwrap_or_else(|e| panic!("{name} is damaged ({e}): {}", fix()));
        let want: Vec<(String, String)> = embedded::programs(arch)
            .into_iter()
            .map(|(_, p)| (p.label.clone(), p.key()))
            .collect();
        let have = a.keys();
        let stale: Vec<&str> = want
            .iter()
            .filter(|(_, k)| !have.contains(&k.as_str()))
            .map(|(l, _)| l.as_str())
            .collect();
        assert!(
            stale.is_empty() && have.len() == want.len(),
            "{name} is stale: {} of {} instances were built from other kernel sources or options (e.g. {}), {} entries in the archive: {}",
            stale.len(),
            want.len(),
            stale.first().copied().unwrap_or("-"),
            have.len(),
            fix()
        );
        assert_eq!(
            a.nvrtc(),
            Some(PINNED_NVRTC),
            "{name} was built with another NVRTC than the pinned {PINNED_NVRTC:?}: {}",
            fix()
        );
        let arch_name = format!("sm_{}{}", arch.0, arch.1);
        assert_eq!(a.manifest_value("arch"), Some(arch_name.as_str()));
        assert_eq!(
            a.manifest_value("options"),
            Some(compile_options(&arch_name).join(" ").as_str())
        );
        // every image unpacks, matches its checksum and is an ELF (CUBIN) image
        for (label, key) in &want {
            let img = a
                .get(key)
                .unwrap_or_else(|e| panic!("{name}: {label}: {e}: {}", fix()))
                .unwrap();
            assert_eq!(&img[..4], b"\x7fELF", "{name}: {label}");
        }
        println!(
            "{name}: {} instances, {} bytes packed, {} bytes of CUBIN, {} frames, NVRTC {}",
            have.len(),
            bytes.len(),
            a.image_bytes(),
            a.frame_count(),
            a.manifest_value("nvrtc_package").unwrap_or("?")
        );
    }
}

#[test]
fn embedded_lookup_serves_every_covered_instance() {
    for arch in ARCHES {
        for (inst, p) in embedded::programs(arch) {
            assert!(
                embedded::contains(&p),
                "{inst:?} sm_{}{} is not in the archive: {}",
                arch.0,
                arch.1,
                fix()
            );
            assert!(
                matches!(embedded::lookup(&p), embedded::Lookup::Image(_)),
                "{inst:?}"
            );
        }
        let n = embedded::coverage(arch).len();
        assert!(embedded::describe(arch).contains(&format!("{n} instances")));
    }
    // an arch without an archive, or a program differing in one byte, is a miss
    let mut p = inc_cuda::source::Program::new(
        inc_cuda::Algo::OneShot,
        inc_cuda::DType::Bf16,
        inc_cuda::ReduceOp::Sum,
        (9, 0),
    );
    p.source.push('\n');
    assert!(!embedded::contains(&p));
    assert_eq!(embedded::lookup(&p), embedded::Lookup::Miss);
    let p86 = inc_cuda::source::Program::new(
        inc_cuda::Algo::OneShot,
        inc_cuda::DType::Bf16,
        inc_cuda::ReduceOp::Sum,
        (8, 6),
    );
    assert_eq!(embedded::lookup(&p86), embedded::Lookup::Miss);
}
