#![no_main]
//! Fuzz target topo_text: arbitrary bytes (lossy UTF-8) into the `nvidia-smi topo -m`
//! parser and the text/JSON auto-detecting reader. Neither may panic; a parsed topology
//! must survive both JSON forms unchanged, and its class must match a fresh
//! classification (HCM tables valid for their mesh).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(topo) = inc_topo::parse_nvidia_smi_topo(&text) {
        let json = topo.to_json().expect("a parsed topology serialises");
        let back = inc_topo::Topology::from_json(&json).expect("own JSON reads back");
        assert_eq!(back, topo);
        let summary = topo.to_summary_json().expect("summary serialises");
        let back = inc_topo::Topology::from_json(&summary).expect("summary reads back");
        assert_eq!(back.mesh, topo.mesh);
        assert_eq!(back.class, topo.class);
        assert_eq!(inc_topo::classify(&topo.mesh), topo.class);
        if let Some(h) = topo.class.hcm() {
            h.validate(&topo.mesh)
                .expect("solver output is a valid HCM");
        }
    }
    // The auto-detecting reader (JSON when it starts with '{') must not panic either.
    let _ = inc_topo::parse_topology(&text);
});
