//! Property tests of the `nvidia-smi topo -m` parser: random well-formed matrices in every
//! format variant parse to exactly their mesh; arbitrary and mutated input never panics,
//! and errors name a line inside the input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use inc_topo::{classify, parse_nvidia_smi_topo, NvlMesh, TopoError, Topology};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Style {
    tabs: bool,
    crlf: bool,
    ansi: bool,
    nics: usize,
    affinity: bool,
    numa_id: bool,
    legend: bool,
    trailing: bool,
}

fn style() -> impl Strategy<Value = Style> {
    (any::<[bool; 7]>(), 0usize..4).prop_map(|(b, nics)| Style {
        tabs: b[0],
        crlf: b[1],
        ansi: b[2],
        nics,
        affinity: b[3],
        numa_id: b[4],
        legend: b[5],
        trailing: b[6],
    })
}

fn render(mesh: &NvlMesh, pcie: &[u8], s: &Style) -> String {
    let n = mesh.num_gpus();
    let sep = if s.tabs { "\t" } else { "    " };
    let mut head: Vec<String> = (0..n).map(|i| format!("GPU{i}")).collect();
    head.extend((0..s.nics).map(|k| format!("NIC{k}")));
    if s.affinity {
        head.push("CPU Affinity".into());
        head.push("NUMA Affinity".into());
        if s.numa_id {
            head.push("GPU NUMA ID".into());
        }
    }
    let mut header = format!("{sep}{}", head.join(sep));
    if s.ansi {
        header = format!("\x1b[4m{header}\x1b[0m");
    }
    let mut lines = vec![header];
    let kinds = ["SYS", "NODE", "PHB", "PXB", "PIX"];
    for i in 0..n {
        let label = if s.ansi {
            format!("\x1b[1mGPU{i}\x1b[0m")
        } else {
            format!("GPU{i}")
        };
        let mut cells = vec![label];
        for j in 0..n {
            cells.push(match mesh.links(i, j) {
                _ if i == j => " X ".into(),
                0 => kinds[pcie[(i.min(j) * 16 + i.max(j)) % pcie.len()] as usize % 5].into(),
                k => format!("NV{k}"),
            });
        }
        cells.extend((0..s.nics).map(|_| "PXB".to_string()));
        if s.affinity {
            cells.push("0-15".into());
            cells.push("0".into());
            if s.numa_id {
                cells.push(String::new());
                cells.push("N/A".into());
            }
        }
        let mut l = cells.join(sep);
        if s.trailing {
            l.push_str(" \t");
        }
        lines.push(l);
    }
    for k in 0..s.nics {
        let mut cells = vec![format!("NIC{k}")];
        cells.extend((0..n).map(|_| "PXB".to_string()));
        cells.extend((0..s.nics).map(|m| {
            if m == k {
                " X ".into()
            } else {
                "PIX".to_string()
            }
        }));
        lines.push(cells.join(sep));
    }
    if s.legend {
        lines.push(String::new());
        lines.push("Legend:".into());
        lines.push(String::new());
        lines.push("  X    = Self".into());
        lines.push("  NV#  = Connection traversing a bonded set of # NVLinks".into());
        if s.nics > 0 {
            lines.push(String::new());
            lines.push("NIC Legend:".into());
            lines.push(String::new());
            lines.push("  NIC0: mlx5_0".into());
        }
    }
    let nl = if s.crlf { "\r\n" } else { "\n" };
    let mut out = lines.join(nl);
    out.push_str(nl);
    out
}

fn mesh_strategy() -> impl Strategy<Value = NvlMesh> {
    (1usize..=16).prop_flat_map(|n| {
        prop::collection::vec(
            prop_oneof![3 => Just(0u32), 3 => 1u32..=4, 1 => 5u32..=255],
            n * n,
        )
        .prop_map(move |v| {
            NvlMesh::from_fn(n, |i, j| {
                if i == j {
                    0
                } else {
                    v[i.min(j) * n + i.max(j)]
                }
            })
            .unwrap()
        })
    })
}

fn check_error_line(text: &str, r: &Result<Topology, TopoError>) {
    if let Err(e) = r {
        match e {
            TopoError::Parse { line, reason } => {
                let lines = text.split('\n').count();
                assert!(
                    *line >= 1 && *line <= lines,
                    "line {line} of {lines}: {reason}"
                );
                assert!(!reason.is_empty());
                assert!(!reason.contains('\n'));
            }
            other => panic!("parser returned a non-parse error: {other}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn well_formed_matrices_parse_exactly(mesh in mesh_strategy(), pcie in prop::collection::vec(any::<u8>(), 1..8), s in style()) {
        let text = render(&mesh, &pcie, &s);
        let topo = parse_nvidia_smi_topo(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        prop_assert_eq!(&topo.mesh, &mesh);
        prop_assert_eq!(topo.class, classify(&mesh));
        prop_assert_eq!(Topology::from_json(&topo.to_json().unwrap()).unwrap(), topo);
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let r = parse_nvidia_smi_topo(&text);
        check_error_line(&text, &r);
        let _ = inc_topo::parse_topology(&text);
    }

    #[test]
    fn token_soup_never_panics(toks in prop::collection::vec(prop_oneof![
        Just("GPU0"), Just("GPU1"), Just("GPU2"), Just("GPU17"), Just("GPU"), Just(" X "), Just("NV1"),
        Just("NV0"), Just("NV12"), Just("NV"), Just("SYS"), Just("\t"), Just(" "), Just("\n"),
        Just("\r\n"), Just("\x1b[4m"), Just("\x1b["), Just("NIC0"), Just("CPU Affinity"),
        Just("Legend:"), Just("mlx5_0"), Just("{"), Just("é"),
    ], 0..120)) {
        let text: String = toks.concat();
        let r = parse_nvidia_smi_topo(&text);
        check_error_line(&text, &r);
        if let Ok(t) = r {
            prop_assert_eq!(Topology::from_json(&t.to_json().unwrap()).unwrap(), t);
        }
    }

    #[test]
    fn mutated_capture_never_panics(edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, "[ \tXNV0-9GPUSY\n]{0,3}"), 1..6)) {
        let base = include_str!("fixtures/dgx1-v100-8x-hcm-nic0-numa-vastai.txt");
        let mut text: Vec<char> = base.chars().collect();
        for (at, op, ins) in edits {
            let i = at.index(text.len() + 1);
            match op {
                0 => { if i < text.len() { text.remove(i); } }
                1 => { for (k, c) in ins.chars().enumerate() { text.insert((i + k).min(text.len()), c); } }
                _ => { if i < text.len() { text[i] = ins.chars().next().unwrap_or('\t'); } }
            }
        }
        let text: String = text.into_iter().collect();
        let r = parse_nvidia_smi_topo(&text);
        check_error_line(&text, &r);
        if let Ok(t) = r {
            prop_assert_eq!(t.class, classify(&t.mesh));
        }
    }
}
