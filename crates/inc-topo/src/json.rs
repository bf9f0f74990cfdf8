//! JSON form of a [`Topology`], validated on load.
//!
//! ```json
//! {"gpus": 2, "class": "fully_connected", "mesh": [[0, 4], [4, 0]], "hcm": null,
//!  "devices": [{"index": 0, "name": "GPU0", "pci_bus_id": null, "uuid": null}, ...]}
//! ```
//! `devices` is written by [`Topology::to_json`] and left out by
//! [`Topology::to_summary_json`] (the `inc topo --json` form). On load only `mesh` is
//! required; `gpus`, `class` and `hcm` are checked against it when present.

use serde::{Deserialize, Serialize};

use crate::classify::{classify, TopologyClass};
use crate::hcm::Hcm;
use crate::topology::check_gpus;
use crate::{GpuInfo, NvlMesh, TopoError, Topology};

/// Largest JSON document [`Topology::from_json`] reads (a 16-GPU topology needs ~4 KiB).
pub const MAX_JSON_BYTES: usize = 1 << 20;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    #[serde(default)]
    gpus: Option<usize>,
    #[serde(default)]
    class: Option<String>,
    mesh: Vec<Vec<u32>>,
    #[serde(default)]
    hcm: Option<Vec<[usize; 4]>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    devices: Option<Vec<GpuInfo>>,
}

impl Topology {
    fn doc(&self, with_devices: bool) -> Doc {
        Doc {
            gpus: Some(self.num_gpus()),
            class: Some(self.class.name().to_owned()),
            mesh: self.mesh.rows(),
            hcm: self.class.hcm().map(|h| h.rows().to_vec()),
            devices: with_devices.then(|| self.gpus.clone()),
        }
    }

    /// Full JSON (one line): `gpus`, `class`, `mesh`, `hcm`, `devices`.
    pub fn to_json(&self) -> Result<String, TopoError> {
        serde_json::to_string(&self.doc(true)).map_err(|e| TopoError::Json(e.to_string()))
    }

    /// Exactly `{"gpus": N, "class": "...", "mesh": [[..]], "hcm": [[n0,n1,n2,relay],..] | null}`
    /// (one line), as `inc topo --json` prints it.
    pub fn to_summary_json(&self) -> Result<String, TopoError> {
        serde_json::to_string(&self.doc(false)).map_err(|e| TopoError::Json(e.to_string()))
    }

    /// Reads either JSON form and validates it: the mesh (square, symmetric, zero diagonal,
    /// 1..=16 GPUs), `gpus` equal to its size, `class` equal to the mesh's class, an `hcm`
    /// table only for a hybrid cube mesh and valid for it (computed when absent), and one
    /// `devices` entry per GPU in index order.
    pub fn from_json(text: &str) -> Result<Self, TopoError> {
        if text.len() > MAX_JSON_BYTES {
            return Err(TopoError::Json(format!(
                "document is {} bytes; at most {MAX_JSON_BYTES} accepted",
                text.len()
            )));
        }
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let doc: Doc = serde_json::from_str(text).map_err(|e| TopoError::Json(e.to_string()))?;
        let mesh = NvlMesh::new(doc.mesh)?;
        let n = mesh.num_gpus();
        if let Some(g) = doc.gpus {
            if g != n {
                return Err(TopoError::Json(format!(
                    "\"gpus\" is {g} but the mesh has {n} rows"
                )));
            }
        }
        let computed = classify(&mesh);
        if let Some(c) = &doc.class {
            if c != computed.name() {
                return Err(TopoError::Json(format!(
                    "\"class\" is \"{c}\" but the mesh is \"{}\"",
                    computed.name()
                )));
            }
        }
        let class = match (&computed, doc.hcm) {
            (TopologyClass::HybridCubeMesh(_), Some(rows)) => {
                TopologyClass::HybridCubeMesh(Hcm::from_slice(&rows, &mesh)?)
            }
            (_, Some(_)) => {
                return Err(TopoError::Json(format!(
                    "\"hcm\" given but the mesh is \"{}\", not a hybrid cube mesh",
                    computed.name()
                )))
            }
            (_, None) => computed,
        };
        let gpus = match doc.devices {
            Some(d) => {
                check_gpus(&d, &mesh).map_err(|e| TopoError::Json(format!("\"devices\": {e}")))?;
                d
            }
            None => (0..n).map(GpuInfo::unnamed).collect(),
        };
        Ok(Self { gpus, mesh, class })
    }
}

/// Reads a topology from `nvidia-smi topo -m` text or JSON, whichever `text` is (JSON when
/// the first non-blank character is `{`).
pub fn parse_topology(text: &str) -> Result<Topology, TopoError> {
    if text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('{')
    {
        Topology::from_json(text)
    } else {
        crate::parse_nvidia_smi_topo(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DGX-1 (V100) topology built from the shared NVLink mesh fixture.
    fn dgx1() -> Topology {
        Topology::from_mesh(crate::hcm::tests::dgx1())
    }

    #[test]
    fn round_trips() {
        let t = dgx1();
        assert_eq!(Topology::from_json(&t.to_json().unwrap()).unwrap(), t);
        let s = t.to_summary_json().unwrap();
        assert!(
            s.starts_with("{\"gpus\":8,\"class\":\"hybrid_cube_mesh\",\"mesh\":[[0,1,1,2,2,0,0,0]"),
            "{s}"
        );
        assert!(s.contains("\"hcm\":[[1,2,3,4],"), "{s}");
        assert!(!s.contains("devices"));
        assert_eq!(Topology::from_json(&s).unwrap(), t);
        assert_eq!(parse_topology(&format!("\u{feff}  {s}")).unwrap(), t);
        let two = Topology::from_json("{\"mesh\": [[0,0],[0,0]]}").unwrap();
        assert_eq!(two.class, TopologyClass::None);
        assert!(two.to_summary_json().unwrap().contains("\"hcm\":null"));
    }

    #[test]
    fn rejects_inconsistent_documents() {
        let bad = [
            ("{\"mesh\": [[0,1],[2,0]]}", "symmetric"),
            ("{\"mesh\": []}", "at least one"),
            ("{\"mesh\": [[0,1,1],[1,0,1]]}", "square"),
            ("{\"gpus\": 3, \"mesh\": [[0,1],[1,0]]}", "\"gpus\""),
            (
                "{\"class\": \"none\", \"mesh\": [[0,1],[1,0]]}",
                "\"class\"",
            ),
            (
                "{\"class\": \"weird\", \"mesh\": [[0,1],[1,0]]}",
                "\"class\"",
            ),
            ("{\"mesh\": [[0,1],[1,0]], \"hcm\": [[1,1,1,1]]}", "\"hcm\""),
            ("{\"mesh\": [[0,1],[1,0]], \"extra\": 1}", "unknown field"),
            (
                "{\"mesh\": [[0,1],[1,0]], \"devices\": [{\"index\":0,\"name\":\"a\"}]}",
                "devices",
            ),
            ("{\"mesh\": [[0,1],[1,0]]", "EOF"),
        ];
        for (doc, want) in bad {
            let e = Topology::from_json(doc).unwrap_err().to_string();
            assert!(e.contains(want), "{doc}: {e}");
        }
        let mut rows = dgx1().class.hcm().copied().unwrap().rows().to_vec();
        rows.swap(0, 1);
        let doc = format!(
            "{{\"mesh\": {:?}, \"hcm\": {:?}}}",
            dgx1().mesh.rows(),
            rows
        );
        assert!(Topology::from_json(&doc)
            .unwrap_err()
            .to_string()
            .contains("hybrid cube mesh"));
        let big = " ".repeat(MAX_JSON_BYTES + 1);
        assert!(Topology::from_json(&big).is_err());
    }
}
