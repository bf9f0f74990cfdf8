//! Kernel source assembly: the CUDA files of `kernels/` are embedded at build time and
//! concatenated (with `#line` directives, so NVRTC logs name the real file and line) into
//! one NVRTC program. Also: kernel entry names, the cache key hash, and the `// STEP`
//! marker parser that ties the kernels to the protocol's step lists.

use crate::proto::{kernel_name, Algo, DType, ReduceOp};

/// The kernel files, in compile order: (file name, contents).
pub const FILES: [(&str, &str); 7] = [
    ("proto.cuh", include_str!("../../../kernels/proto.cuh")),
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

/// The kernel files in use: [`FILES`], or, when `INC_KERNEL_DIR` names a folder, each file
/// of that name found there instead (kernel experiments on a GPU host without a rebuild;
/// a file missing there keeps its embedded text). Read once per process.
pub fn files() -> &'static [(&'static str, &'static str)] {
    static F: std::sync::OnceLock<Vec<(&'static str, &'static str)>> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::var_os("INC_KERNEL_DIR").map(std::path::PathBuf::from);
        files_in(dir.as_deref())
    })
}

/// [`FILES`] with each file found in `dir` replaced by its text there.
fn files_in(dir: Option<&std::path::Path>) -> Vec<(&'static str, &'static str)> {
    FILES
        .iter()
        .map(|&(name, text)| {
            let over = dir.and_then(|d| std::fs::read_to_string(d.join(name)).ok());
            // Leaked once per process and file (callers keep the result for the process's
            // life): the program text lives as long as the process, like the embedded one.
            (name, over.map_or(text, |t| &*Box::leak(t.into_boxed_str())))
        })
        .collect()
}

/// The whole NVRTC program: every file behind a `#line 1 "kernels/<file>"` directive.
pub fn assemble() -> String {
    assemble_from(files())
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

/// Name of the file whose macros define the entry points (and whose top-level macro calls
/// instantiate all of them when the whole program is compiled).
pub const INSTANCES_FILE: &str = "instances.cu";

/// The NVRTC program of one kernel instance: every kernel file as in [`assemble`], except
/// that the top-level `INC_ENTRY*(...)` invocations of instances.cu are blanked (its macro
/// definitions stay), followed by one generated `INC_ENTRY(<algo>, <dtype>, <DT>, <op>,
/// <OP>)` line. NVRTC only compiles templates that are instantiated, so the program holds
/// this one kernel. The template codes are read from instances.cu's own `INC_ENTRY_OPS` and
/// `INC_ENTRY` calls, so they cannot drift from the whole-program build. An error names
/// what could not be found (callers fall back to the whole program).
pub fn instance_source(algo: Algo, dtype: DType, op: ReduceOp) -> Result<String, String> {
    instance_source_from(files(), algo, dtype, op)
}

/// [`instance_source`] over any file list (the last file holding the entry macros is
/// [`INSTANCES_FILE`]).
pub fn instance_source_from(
    files: &[(&str, &str)],
    algo: Algo,
    dtype: DType,
    op: ReduceOp,
) -> Result<String, String> {
    let inst = files
        .iter()
        .find(|(n, _)| *n == INSTANCES_FILE)
        .map(|(_, t)| *t)
        .ok_or_else(|| format!("no {INSTANCES_FILE} among the kernel files"))?;
    let line = entry_instantiation(inst, algo, dtype, op)?;
    let stripped = strip_invocations(inst);
    let mut parts: Vec<(&str, &str)> = Vec::with_capacity(files.len());
    for (name, text) in files {
        if *name == INSTANCES_FILE {
            parts.push((name, stripped.as_str()));
        } else {
            parts.push((name, text));
        }
    }
    let mut out = assemble_from(&parts);
    out.push_str("#line 1 \"inc-generated-instance\"\n");
    out.push_str(&line);
    out.push('\n');
    Ok(out)
}

/// The one-instance `INC_ENTRY(...)` line, with the template codes that instances.cu passes
/// for `dtype` (`INC_ENTRY_OPS(ALGO, <dtype>, <code>)`) and `op`
/// (`INC_ENTRY(ALGO, DTN, DT, <op>, <code>)`).
pub fn entry_instantiation(
    instances: &str,
    algo: Algo,
    dtype: DType,
    op: ReduceOp,
) -> Result<String, String> {
    let dt = macro_code(
        instances,
        &format!("INC_ENTRY_OPS(ALGO, {}, ", dtype.name()),
    )
    .ok_or_else(|| {
        format!(
            "{INSTANCES_FILE}: no `INC_ENTRY_OPS(ALGO, {}, <code>)` call",
            dtype.name()
        )
    })?;
    let oc = macro_code(
        instances,
        &format!("INC_ENTRY(ALGO, DTN, DT, {}, ", op.name()),
    )
    .ok_or_else(|| {
        format!(
            "{INSTANCES_FILE}: no `INC_ENTRY(ALGO, DTN, DT, {}, <code>)` call",
            op.name()
        )
    })?;
    if !instances.contains("#define INC_ENTRY(") {
        return Err(format!("{INSTANCES_FILE}: no `#define INC_ENTRY(` macro"));
    }
    Ok(format!(
        "INC_ENTRY({}, {}, {dt}, {}, {oc})",
        kernel_name(algo),
        dtype.name(),
        op.name()
    ))
}

/// The integer that follows `prefix` up to the next `)` in `text`.
fn macro_code(text: &str, prefix: &str) -> Option<i64> {
    let start = text.find(prefix)? + prefix.len();
    let rest = text.get(start..)?;
    let end = rest.find(')')?;
    rest.get(..end)?.trim().parse().ok()
}

/// instances.cu with every top-level (not inside a `#define` continuation) line that starts
/// with an `INC_ENTRY` macro call replaced by an empty line (so `#line` numbers still hold).
pub fn strip_invocations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut continued = false;
    for line in text.lines() {
        let top_level = !continued;
        continued = line.trim_end().ends_with('\\');
        if top_level && line.trim_start().starts_with("INC_ENTRY") {
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Options every kernel program is compiled with (part of the cache key); `arch` is
/// `sm_XY`.
pub fn compile_options(arch: &str) -> Vec<String> {
    vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".to_string(),
        "--fmad=false".to_string(),
        "-lineinfo".to_string(),
    ]
}

/// Key of one program: `inc-<label>-<hash>-<len>-sm_XY` with `label` the entry name (or
/// `all`), a hash of the full program text and the compile options, the text length and
/// the arch. Any kernel edit, option or arch change gives a new key. The embedded CUBINs
/// are stored under it ([`crate::embedded`]); the disk cache adds driver and NVRTC versions
/// ([`instance_cache_key`]).
pub fn program_key(label: &str, source: &str, options: &[String], arch: (u32, u32)) -> String {
    let mut text = Vec::with_capacity(source.len() + 256);
    text.extend_from_slice(source.as_bytes());
    for o in options {
        text.push(0);
        text.extend_from_slice(o.as_bytes());
    }
    format!(
        "inc-{label}-{:016x}-{}-sm_{}{}",
        fnv64(&text),
        source.len(),
        arch.0,
        arch.1
    )
}

/// Cache file name of one compiled program: [`program_key`] plus the driver and NVRTC
/// versions. Any kernel edit, option, arch, driver or NVRTC change gives a new name.
pub fn instance_cache_key(
    label: &str,
    source: &str,
    options: &[String],
    arch: (u32, u32),
    driver: i32,
    nvrtc: (i32, i32),
) -> String {
    format!(
        "{}-drv{}-nvrtc{}.{}.cubin",
        program_key(label, source, options, arch),
        driver,
        nvrtc.0,
        nvrtc.1
    )
}

/// One kernel program exactly as inc-cuda compiles it at run time for an instance and an
/// arch: what `Kernels` hands to NVRTC (and keys its disk cache and embedded lookup by),
/// and what `cargo xtask cubins` precompiles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// Entry name of the instance, or `all` (the whole program, when instances.cu no
    /// longer has the macros [`instance_source`] relies on).
    pub label: String,
    /// The NVRTC program text.
    pub source: String,
    /// NVRTC options ([`compile_options`]).
    pub options: Vec<String>,
    /// Compute capability.
    pub arch: (u32, u32),
}

impl Program {
    /// The program of instance (`algo`, `dtype`, `op`) for `arch`.
    pub fn new(algo: Algo, dtype: DType, op: ReduceOp, arch: (u32, u32)) -> Self {
        let (label, source) = match instance_source(algo, dtype, op) {
            Ok(s) => (entry_name(algo, dtype, op), s),
            Err(_) => ("all".to_string(), assemble()),
        };
        Program {
            label,
            source,
            options: compile_options(&format!("sm_{}{}", arch.0, arch.1)),
            arch,
        }
    }

    /// [`program_key`] of this program.
    pub fn key(&self) -> String {
        program_key(&self.label, &self.source, &self.options, self.arch)
    }

    /// [`instance_cache_key`] of this program.
    pub fn cache_key(&self, driver: i32, nvrtc: (i32, i32)) -> String {
        instance_cache_key(
            &self.label,
            &self.source,
            &self.options,
            self.arch,
            driver,
            nvrtc,
        )
    }
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
    kernel_variant_steps(name, name)
}

/// Step names of program `variant` marked in kernel file `<stem>.cu` (a file holds its
/// algorithm's program and variants named `<file>_<suffix>`, e.g. `two_shot_zc`), checked
/// to be numbered 0, 1, 2, ...
pub fn kernel_variant_steps(stem: &str, variant: &str) -> Result<Vec<String>, String> {
    let file = format!("{stem}.cu");
    let text = FILES
        .iter()
        .find(|(n, _)| *n == file)
        .map(|(_, t)| *t)
        .ok_or_else(|| format!("no kernel file {file}"))?;
    let markers = parse_markers(text)?;
    let mut names = Vec::new();
    // The file's own program and its variants (`<stem>_<suffix>`) other than `variant` are
    // skipped; any other algorithm's marker is an error.
    let variant_prefix = format!("{stem}_");
    let own = markers
        .iter()
        .filter(|m| m.algo == variant || (m.algo != stem && !m.algo.starts_with(&variant_prefix)));
    for (i, m) in own.enumerate() {
        if m.algo != variant {
            return Err(format!("{file}: marker for {} inside {file}", m.algo));
        }
        if m.index != i {
            return Err(format!("{file}: step {} numbered {}", i, m.index));
        }
        names.push(m.name.clone());
    }
    Ok(names)
}

/// Read `#define NAME <int>` (an optional `u` suffix) from the generated proto.cuh (tests
/// compare the kernel constants with Rust).
pub fn define_value(name: &str) -> Option<i64> {
    let text = FILES.first().map(|(_, t)| *t)?;
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        if it.next()? != "#define" || it.next()? != name {
            return None;
        }
        it.next()?.trim_end_matches('u').parse().ok()
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
    fn two_shot_variant_markers_match_their_sim_programs() {
        assert_eq!(
            kernel_variant_steps("two_shot", "two_shot_zc").unwrap(),
            inc_proto::steps::TWO_SHOT_ZC
        );
        // the push form (inc_two_shot_zcp) against inc::two_shot_zcp
        assert_eq!(
            kernel_variant_steps("two_shot", "two_shot_zcp").unwrap(),
            inc_proto::steps::TWO_SHOT_ZCP
        );
        // the copy-in two-shot's form of 128-byte lines (inc_two_shot_lines_w) against its
        // own step list (inc-sim's lines checker)
        assert_eq!(
            kernel_variant_steps("two_shot", "two_shot_lines").unwrap(),
            inc_proto::steps::TWO_SHOT_LINES
        );
        // the copy-in two-shot's one-pass form (inc_two_shot_one_pass) is the same program
        assert_eq!(
            kernel_variant_steps("two_shot", "two_shot_1p").unwrap(),
            step_names(Algo::TwoShot)
        );
        // the file's own program is unaffected by the variants it holds
        assert_eq!(
            kernel_steps(Algo::TwoShot).unwrap(),
            step_names(Algo::TwoShot)
        );
    }

    #[test]
    fn zero_copy_one_shot_markers_match_its_sim_program() {
        assert_eq!(
            kernel_variant_steps("one_shot", "one_shot_zc").unwrap(),
            inc_proto::steps::ONE_SHOT_ZC
        );
        assert_eq!(
            kernel_steps(Algo::OneShot).unwrap(),
            step_names(Algo::OneShot)
        );
    }

    #[test]
    fn push_markers_match_the_push_steps() {
        assert_eq!(
            kernel_steps_named(PUSH_KERNEL).unwrap(),
            inc_proto::push::PUSH_STEP_NAMES
        );
        assert_eq!(
            define_value("INC_PUSH_HDR"),
            Some(inc_proto::push::PushLayout::HDR as i64)
        );
        assert_eq!(
            define_value("INC_PUSH_SLOTS"),
            Some(inc_proto::push::PushLayout::HEADER_BYTES as i64)
        );
        assert!(FILES[6].1.contains("INC_ENTRY_ALL(push_one_shot)"));
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
        let inst = FILES[6].1;
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
        assert_eq!(
            define_value("INC_PAD_EPOCHS"),
            Some(PadLayout::EPOCHS as i64)
        );
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
    fn instance_source_holds_one_entry_and_the_macros() {
        let src = instance_source(Algo::TwoShot, DType::Bf16, ReduceOp::Avg).unwrap();
        // the shared files, the macro definitions, exactly one instantiation at the end
        for (name, _) in FILES {
            assert!(
                src.contains(&format!("#line 1 \"kernels/{name}\"")),
                "{name}"
            );
        }
        assert!(src.contains("#define INC_ENTRY("));
        assert!(src.contains("#define INC_ENTRY_ALL("));
        assert!(
            src.ends_with("\nINC_ENTRY(two_shot, bf16, 0, avg, 1)\n"),
            "{src}"
        );
        // top-level calls (macro bodies are indented continuation lines)
        let calls: Vec<&str> = src.lines().filter(|l| l.starts_with("INC_ENTRY")).collect();
        assert_eq!(calls, ["INC_ENTRY(two_shot, bf16, 0, avg, 1)"]);
        // line numbers of instances.cu are kept (blanked, not removed)
        let whole = FILES[6].1;
        let stripped = strip_invocations(whole);
        assert_eq!(stripped.lines().count(), whole.lines().count());
    }

    #[test]
    fn instance_codes_match_the_whole_program_for_every_instance() {
        // What INC_ENTRY_ALL(<algo>) expands to in instances.cu, computed independently:
        // the dtype code of INC_ENTRY_OPS(ALGO, <dtype>, <code>), the op code of
        // INC_ENTRY(ALGO, DTN, DT, <op>, <code>).
        let inst = FILES[6].1;
        let mut seen = std::collections::HashSet::new();
        for algo in Algo::ALL {
            assert!(inst.contains(&format!("INC_ENTRY_ALL({})", kernel_name(algo))));
            for d in DType::ALL {
                for o in ReduceOp::ALL {
                    let line = entry_instantiation(inst, algo, d, o).unwrap();
                    let want = format!(
                        "INC_ENTRY({}, {}, {}, {}, {})",
                        kernel_name(algo),
                        d.name(),
                        d.code(),
                        o.name(),
                        o.code()
                    );
                    assert_eq!(line, want);
                    // the entry it defines is the name the host looks up
                    let defined = format!("inc_{}_{}_{}", kernel_name(algo), d.name(), o.name());
                    assert_eq!(defined, entry_name(algo, d, o));
                    assert!(seen.insert(line));
                }
            }
        }
    }

    #[test]
    fn instance_source_errors_name_what_is_missing() {
        let files = [
            ("common.cuh", "x"),
            ("instances.cu", "#define INC_ENTRY(A)\n"),
        ];
        let e = instance_source_from(&files, Algo::OneShot, DType::F32, ReduceOp::Sum).unwrap_err();
        assert!(e.contains("INC_ENTRY_OPS(ALGO, f32"), "{e}");
        let e = instance_source_from(&files[..1], Algo::OneShot, DType::F32, ReduceOp::Sum)
            .unwrap_err();
        assert!(e.contains("no instances.cu"), "{e}");
    }

    #[test]
    fn strip_keeps_macro_bodies_and_blanks_top_level_calls() {
        let text = "#define INC_ENTRY_OPS(A) \\\n    INC_ENTRY(A, 1) \\\n    INC_ENTRY(A, 2)\nINC_ENTRY_ALL(x)\n  INC_ENTRY_OPS(y)\nint z;\n";
        let s = strip_invocations(text);
        assert_eq!(
            s,
            "#define INC_ENTRY_OPS(A) \\\n    INC_ENTRY(A, 1) \\\n    INC_ENTRY(A, 2)\n\n\nint z;\n"
        );
    }

    #[test]
    fn instance_cache_key_changes_with_every_input() {
        let o = compile_options("sm_90");
        let a = instance_cache_key("inc_one_shot_f32_sum", "src", &o, (9, 0), 13000, (13, 0));
        let b = |l: &str, s: &str, o: &[String], a: (u32, u32), d: i32, n: (i32, i32)| {
            instance_cache_key(l, s, o, a, d, n)
        };
        assert_ne!(
            a,
            b("inc_one_shot_f32_avg", "src", &o, (9, 0), 13000, (13, 0))
        );
        assert_ne!(
            a,
            b("inc_one_shot_f32_sum", "src ", &o, (9, 0), 13000, (13, 0))
        );
        assert_ne!(
            a,
            b(
                "inc_one_shot_f32_sum",
                "src",
                &o[1..],
                (9, 0),
                13000,
                (13, 0)
            )
        );
        assert_ne!(
            a,
            b("inc_one_shot_f32_sum", "src", &o, (8, 0), 13000, (13, 0))
        );
        assert_ne!(
            a,
            b("inc_one_shot_f32_sum", "src", &o, (9, 0), 12080, (13, 0))
        );
        assert_ne!(
            a,
            b("inc_one_shot_f32_sum", "src", &o, (9, 0), 13000, (12, 8))
        );
        assert!(a.starts_with("inc-inc_one_shot_f32_sum-"), "{a}");
        assert!(a.ends_with("-3-sm_90-drv13000-nvrtc13.0.cubin"), "{a}");
        // one edit anywhere in a real instance program changes its key
        let src = instance_source(Algo::OneShot, DType::F32, ReduceOp::Sum).unwrap();
        let edited = src.replacen("__device__", "__device__ ", 1);
        assert_ne!(
            b("x", &src, &o, (9, 0), 1, (1, 0)),
            b("x", &edited, &o, (9, 0), 1, (1, 0))
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

    #[test]
    fn kernel_dir_replaces_only_the_files_it_holds() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("common.cuh"), "// variant\n").unwrap();
        let f = files_in(Some(d.path()));
        assert_eq!(f.len(), FILES.len());
        for ((n, t), (en, et)) in f.iter().zip(FILES.iter()) {
            assert_eq!(n, en);
            if *n == "common.cuh" {
                assert_eq!(*t, "// variant\n");
            } else {
                assert_eq!(t, et);
            }
        }
        assert_eq!(files_in(None), FILES.to_vec());
    }
}
