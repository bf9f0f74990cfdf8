//! Kernel source assembly: the CUDA files of `kernels/` are embedded at build time and
//! concatenated (with `#line` directives, so NVRTC logs name the real file and line) into
//! one NVRTC program. Also: kernel entry names, the cache key hash, and the `// STEP`
//! marker parser that ties the kernels to the protocol's step lists.

use crate::proto::{kernel_name, Algo, DType, ReduceOp};

/// The kernel files, in compile order: (file name, contents).
pub const FILES: [(&str, &str); 6] = [
    ("common.cuh", include_str!("../../../kernels/common.cuh")),
    ("one_shot.cu", include_str!("../../../kernels/one_shot.cu")),
    ("two_shot.cu", include_str!("../../../kernels/two_shot.cu")),
    ("hcm.cu", include_str!("../../../kernels/hcm.cu")),
    (
        "push_one_shot.cu",
        include_str!("../../../kernels/push_one_shot.cu"),
    ),
    (
        "instances.cu",
        include_str!("../../../kernels/instances.cu"),
    ),
];

/// The whole NVRTC program: every file behind a `#line 1 "kernels/<file>"` directive.
pub fn assemble() -> String {
    assemble_from(&FILES)
}

/// [`assemble`] over any file list (tests use it with synthetic files).
pub fn assemble_from(files: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (name, text) in files {
        out.push_str(&format!("#line 1 \"kernels/{name}\"\n"));
        out.push_str(text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// Entry-point name of one kernel: `inc_<algo>_<dtype>_<op>`.
pub fn entry_name(algo: Algo, dtype: DType, op: ReduceOp) -> String {
    format!("inc_{}_{}_{}", kernel_name(algo), dtype.name(), op.name())
}

/// 64-bit FNV-1a (cache keys; not cryptographic).
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Cache file name for the compiled program: source hash + arch + driver + NVRTC versions.
pub fn cache_file_name(source: &str, arch: (u32, u32), driver: i32, nvrtc: (i32, i32)) -> String {
    format!(
        "inc-kernels-{:016x}-sm_{}{}-drv{}-nvrtc{}.{}.cubin",
        fnv64(source.as_bytes()),
        arch.0,
        arch.1,
        driver,
        nvrtc.0,
        nvrtc.1
    )
}

/// One `// STEP <algo> <n> <Name>` marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// Algorithm part (`one_shot`, `two_shot`, `hcm`).
    pub algo: String,
    /// Step number.
    pub index: usize,
    /// Step name.
    pub name: String,
}

/// Parse every `// STEP` marker of `text`, in order. A malformed marker is an error naming
/// the line, so a typo cannot silently drop a step.
pub fn parse_markers(text: &str) -> Result<Vec<Marker>, String> {
    let mut out = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let Some(pos) = line.find("// STEP") else {
            continue;
        };
        let rest = line.get(pos + "// STEP".len()..).unwrap_or("");
        let parts: Vec<&str> = rest.split_whitespace().collect();
        let [algo, index, name] = parts.as_slice() else {
            return Err(format!("line {}: malformed STEP marker: {line:?}", ln + 1));
        };
        let index = index
            .parse::<usize>()
            .map_err(|_| format!("line {}: bad step number in {line:?}", ln + 1))?;
        out.push(Marker {
            algo: (*algo).to_string(),
            index,
            name: (*name).to_string(),
        });
    }
    Ok(out)
}

/// Step names of `algo` as marked in its kernel file, checked to be numbered 0, 1, 2, ...
pub fn kernel_steps(algo: Algo) -> Result<Vec<String>, String> {
    kernel_steps_named(kernel_name(algo))
}

/// Entry-point name of a push one-shot kernel: `inc_push_one_shot_<dtype>_<op>`.
pub fn push_entry_name(dtype: DType, op: ReduceOp) -> String {
    format!("inc_{PUSH_KERNEL}_{}_{}", dtype.name(), op.name())
}

/// Kernel file stem and STEP-marker name of the push one-shot.
pub const PUSH_KERNEL: &str = "push_one_shot";

/// Step names marked in kernel file `<name>.cu`, checked to be numbered 0, 1, 2, ...
pub fn kernel_steps_named(name: &str) -> Result<Vec<String>, String> {
    let file = format!("{name}.cu");
    let text = FILES
        .iter()
        .find(|(n, _)| *n == file)
        .map(|(_, t)| *t)
        .ok_or_else(|| format!("no kernel file {file}"))?;
    let markers = parse_markers(text)?;
    let mut names = Vec::new();
    for (i, m) in markers.iter().enumerate() {
        if m.algo != name {
            return Err(format!("{file}: marker for {} inside {file}", m.algo));
        }
        if m.index != i {
            return Err(format!("{file}: step {} numbered {}", i, m.index));
        }
        names.push(m.name.clone());
    }
    Ok(names)
}

/// Read `#define NAME <int>` from common.cuh (tests compare the kernel constants with Rust).
pub fn define_value(name: &str) -> Option<i64> {
    let text = FILES.first().map(|(_, t)| *t)?;
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        if it.next()? != "#define" || it.next()? != name {
            return None;
        }
        it.next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{
        step_names, PadLayout, ERR_CALL_MISMATCH, ERR_PEER_ABORT, ERR_SEQ_MISMATCH, ERR_TIMEOUT,
        MAX_BLOCKS, MAX_RANKS,
    };

    #[test]
    fn markers_match_protocol_steps() {
        for algo in Algo::ALL {
            let got = kernel_steps(algo).unwrap();
            assert_eq!(
                got,
                step_names(algo),
                "{algo}: kernel STEP markers differ from PROTOCOL.md"
            );
        }
    }

    #[test]
    fn push_markers_match_the_push_steps() {
        assert_eq!(
            kernel_steps_named(PUSH_KERNEL).unwrap(),
            inc_sim::push::PUSH_STEP_NAMES
        );
        assert_eq!(
            define_value("INC_PUSH_USED"),
            Some(inc_sim::push::PushLayout::USED as i64)
        );
        assert_eq!(
            define_value("INC_PUSH_LAST"),
            Some(inc_sim::push::PushLayout::LAST as i64)
        );
        assert_eq!(
            define_value("INC_PUSH_HEADER"),
            Some(inc_sim::push::PushLayout::HEADER_BYTES as i64)
        );
        assert!(FILES[5].1.contains("INC_ENTRY_ALL(push_one_shot)"));
        assert_eq!(
            push_entry_name(DType::F16, ReduceOp::Min),
            "inc_push_one_shot_f16_min"
        );
    }

    #[test]
    fn marker_parser_rejects_malformed_lines() {
        assert!(parse_markers("  // STEP one_shot x Prologue\n").is_err());
        assert!(parse_markers("// STEP one_shot 0\n").is_err());
        let m = parse_markers("a\n    // STEP hcm 3 QuadReduce\n").unwrap();
        assert_eq!(
            m,
            vec![Marker {
                algo: "hcm".into(),
                index: 3,
                name: "QuadReduce".into()
            }]
        );
    }

    #[test]
    fn assembled_source_has_every_file_and_entry() {
        let src = assemble();
        for (name, _) in FILES {
            assert!(
                src.contains(&format!("#line 1 \"kernels/{name}\"")),
                "{name}"
            );
        }
        // every entry point the host looks up is generated by instances.cu's macros
        let inst = FILES[5].1;
        for algo in Algo::ALL {
            assert!(inst.contains(&format!("INC_ENTRY_ALL({})", kernel_name(algo))));
        }
        for d in DType::ALL {
            assert!(
                inst.contains(&format!("INC_ENTRY_OPS(ALGO, {}, ", d.name())),
                "{d}"
            );
        }
        for o in ReduceOp::ALL {
            assert!(
                inst.contains(&format!(
                    "INC_ENTRY(ALGO, DTN, DT, {}, {})",
                    o.name(),
                    o.code()
                )),
                "{o}"
            );
        }
        assert_eq!(
            entry_name(Algo::TwoShot, DType::Bf16, ReduceOp::Avg),
            "inc_two_shot_bf16_avg"
        );
        let s = assemble_from(&[("a.cu", "x"), ("b.cu", "y\n")]);
        assert_eq!(
            s,
            "#line 1 \"kernels/a.cu\"\nx\n#line 1 \"kernels/b.cu\"\ny\n"
        );
    }

    #[test]
    fn kernel_constants_match_the_protocol() {
        assert_eq!(define_value("INC_MAX_RANKS"), Some(MAX_RANKS as i64));
        assert_eq!(define_value("INC_MAX_BLOCKS"), Some(MAX_BLOCKS as i64));
        assert_eq!(define_value("INC_PAD_EPOCH"), Some(PadLayout::EPOCH as i64));
        assert_eq!(define_value("INC_PAD_DONE"), Some(PadLayout::DONE as i64));
        assert_eq!(define_value("INC_PAD_ABORT"), Some(PadLayout::ABORT as i64));
        assert_eq!(define_value("INC_PAD_ERROR"), Some(PadLayout::ERROR as i64));
        assert_eq!(define_value("INC_PAD_START"), Some(PadLayout::START as i64));
        assert_eq!(
            define_value("INC_ERR_TIMEOUT"),
            Some(i64::from(ERR_TIMEOUT))
        );
        assert_eq!(
            define_value("INC_ERR_SEQ_MISMATCH"),
            Some(i64::from(ERR_SEQ_MISMATCH))
        );
        assert_eq!(
            define_value("INC_ERR_CALL_MISMATCH"),
            Some(i64::from(ERR_CALL_MISMATCH))
        );
        assert_eq!(
            define_value("INC_ERR_PEER_ABORT"),
            Some(i64::from(ERR_PEER_ABORT))
        );
        assert_eq!(
            define_value("INC_MAX_THREADS"),
            Some(i64::from(crate::launch::MAX_THREADS))
        );
    }

    #[test]
    fn cache_key_changes_with_every_input() {
        let a = cache_file_name("src", (9, 0), 13000, (13, 0));
        assert_ne!(a, cache_file_name("src2", (9, 0), 13000, (13, 0)));
        assert_ne!(a, cache_file_name("src", (8, 0), 13000, (13, 0)));
        assert_ne!(a, cache_file_name("src", (9, 0), 12080, (13, 0)));
        assert_ne!(a, cache_file_name("src", (9, 0), 13000, (12, 8)));
        assert!(a.ends_with("-sm_90-drv13000-nvrtc13.0.cubin"), "{a}");
        assert_eq!(fnv64(b""), 0xcbf2_9ce4_8422_2325);
    }
}
