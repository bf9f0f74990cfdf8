//! Every real `nvidia-smi topo -m` capture in tests/fixtures must parse and classify as
//! tests/fixtures/expected.tsv says; every adversarial variant in
//! tests/fixtures/adversarial must give the outcome its expected.tsv says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use inc_topo::{parse_nvidia_smi_topo, parse_topology, solve_hcm, TopoError, Topology};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn rows(tsv: &str) -> Vec<Vec<String>> {
    tsv.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

#[test]
fn real_fixtures_classify_as_expected() {
    let expected = std::fs::read_to_string(dir().join("expected.tsv")).unwrap();
    let rows = rows(&expected);
    assert_eq!(rows.len(), 10, "expected.tsv lists 10 captures");
    let mut txt_files: Vec<_> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".txt"))
        .collect();
    txt_files.sort();
    let mut listed: Vec<_> = rows.iter().map(|r| r[0].clone()).collect();
    listed.sort();
    assert_eq!(
        txt_files, listed,
        "every capture is listed in expected.tsv and vice versa"
    );
    for r in &rows {
        let (file, gpus, class) = (&r[0], r[1].parse::<usize>().unwrap(), &r[2]);
        let text = std::fs::read_to_string(dir().join(file)).unwrap();
        let topo = parse_nvidia_smi_topo(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(topo.num_gpus(), gpus, "{file}");
        assert_eq!(topo.class.name(), class, "{file}");
        assert_eq!(parse_topology(&text).unwrap(), topo, "{file}: auto-detect");
        // JSON round trip (both forms).
        assert_eq!(
            Topology::from_json(&topo.to_json().unwrap()).unwrap(),
            topo,
            "{file}"
        );
        assert_eq!(
            Topology::from_json(&topo.to_summary_json().unwrap()).unwrap(),
            topo
        );
        if let Some(h) = topo.class.hcm() {
            h.validate(&topo.mesh).unwrap();
        }
    }
}

#[test]
fn dgx1_captures_agree_and_have_the_known_links() {
    let files = [
        "dgx1-v100-8x-hcm-mlx5-msccl.txt",
        "dgx1-v100-8x-hcm-mlx5-pytorch-ddp.txt",
        "dgx1-v100-8x-hcm-nic0-numa-vastai.txt",
    ];
    let topos: Vec<Topology> = files
        .iter()
        .map(|f| parse_nvidia_smi_topo(&std::fs::read_to_string(dir().join(f)).unwrap()).unwrap())
        .collect();
    assert_eq!(topos[0], topos[1]);
    assert_eq!(topos[0], topos[2]);
    let m = &topos[0].mesh;
    // GPU0: NV1 -> 1, 2; NV2 -> 3, 4; SYS -> 5, 6, 7 (SOURCES.md).
    assert_eq!(
        (0..8).map(|j| m.links(0, j)).collect::<Vec<_>>(),
        [0, 1, 1, 2, 2, 0, 0, 0]
    );
    assert!((0..8).all(|i| m.total_links(i) == 6 && m.degree(i) == 4));
    let h = solve_hcm(m).unwrap();
    assert_eq!(h.quads(), [[0, 1, 2, 3], [4, 5, 6, 7]]);
    assert_eq!(
        (0..8).map(|x| h.relay(x).unwrap()).collect::<Vec<_>>(),
        [4, 5, 6, 7, 0, 1, 2, 3]
    );
    let a100 = parse_nvidia_smi_topo(
        &std::fs::read_to_string(dir().join("a100-8x-sxm4-nv12-17nic-xuesong.txt")).unwrap(),
    )
    .unwrap();
    assert!((0..8).all(|i| (0..8).all(|j| a100.mesh.links(i, j) == if i == j { 0 } else { 12 })));
}

#[test]
fn adversarial_variants() {
    let adv = dir().join("adversarial");
    let expected = std::fs::read_to_string(adv.join("expected.tsv")).unwrap();
    let rows = rows(&expected);
    assert!(rows.len() >= 20);
    for r in &rows {
        let file = &r[0];
        let bytes = std::fs::read(adv.join(file)).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let got = parse_nvidia_smi_topo(&text);
        match r[1].as_str() {
            "ok" => {
                let t = got.unwrap_or_else(|e| panic!("{file}: {e}"));
                assert_eq!(t.num_gpus(), r[2].parse::<usize>().unwrap(), "{file}");
                assert_eq!(t.class.name(), r[3], "{file}");
            }
            "err" => match got {
                Err(TopoError::Parse { line, reason }) => {
                    assert_eq!(line, r[2].parse::<usize>().unwrap(), "{file}: {reason}");
                    assert!(
                        reason.contains(&r[3]),
                        "{file}: '{reason}' lacks '{}'",
                        r[3]
                    );
                }
                other => panic!("{file}: expected a parse error, got {other:?}"),
            },
            k => panic!("{file}: bad expectation {k}"),
        }
    }
}

#[test]
fn every_prefix_and_mangling_of_a_capture_is_handled() {
    // Truncating anywhere or deleting any single line never panics and gives a line
    // number inside the input (or one past a trailing newline) on error.
    let text =
        std::fs::read_to_string(dir().join("dgx1-v100-8x-hcm-nic0-numa-vastai.txt")).unwrap();
    let n_lines = text.split('\n').count();
    for cut in (0..text.len()).filter(|&c| text.is_char_boundary(c)) {
        if let Err(TopoError::Parse { line, .. }) = parse_nvidia_smi_topo(&text[..cut]) {
            assert!(line >= 1 && line <= n_lines, "cut {cut}: line {line}");
        }
    }
    let lines: Vec<&str> = text.split('\n').collect();
    for skip in 0..lines.len() {
        let t: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, l)| *l)
            .collect();
        let r = parse_nvidia_smi_topo(&t.join("\n"));
        if (1..=8).contains(&skip) {
            assert!(r.is_err(), "deleting GPU row line {skip} must fail");
        } else if skip >= 10 {
            assert_eq!(
                r.unwrap().class.name(),
                "hybrid_cube_mesh",
                "legend lines don't matter"
            );
        }
    }
}
