//! [`Topology`]: the GPUs of a machine, their NVLink mesh and its class.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::classify::{classify, classify_explained, TopologyClass};
use crate::{NvlMesh, TopoError};

/// One GPU of a topology.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuInfo {
    /// Position in the mesh (row/column), equal to the NVML / `nvidia-smi` index.
    pub index: usize,
    /// Product name from NVML (e.g. `NVIDIA H100 80GB HBM3`), or `GPU<i>` from text.
    pub name: String,
    /// PCI bus id (`00000000:07:00.0`), when known (NVML); `None` from `nvidia-smi` text.
    #[serde(default)]
    pub pci_bus_id: Option<String>,
    /// GPU UUID (`GPU-…`), when known (NVML); `None` from `nvidia-smi` text.
    #[serde(default)]
    pub uuid: Option<String>,
}

impl GpuInfo {
    /// A GPU known only by its index: name `GPU<index>`, no PCI id, no UUID.
    pub fn unnamed(index: usize) -> Self {
        Self {
            index,
            name: format!("GPU{index}"),
            pci_bus_id: None,
            uuid: None,
        }
    }
}

/// The GPUs of one machine, their NVLink mesh and its classification.
///
/// Invariant (kept by every constructor of this crate): `gpus.len() == mesh.num_gpus()`,
/// `gpus[i].index == i`, and `class == classify(&mesh)` (or an equivalent, validated HCM
/// table read from JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// One entry per GPU, in mesh order.
    pub gpus: Vec<GpuInfo>,
    /// NVLink counts between the GPUs.
    pub mesh: NvlMesh,
    /// Shape of the mesh.
    pub class: TopologyClass,
}

impl Topology {
    /// Builds a topology and classifies its mesh; `gpus` must have one entry per mesh row,
    /// with `gpus[i].index == i`.
    pub fn new(gpus: Vec<GpuInfo>, mesh: NvlMesh) -> Result<Self, TopoError> {
        check_gpus(&gpus, &mesh)?;
        let class = classify(&mesh);
        Ok(Self { gpus, mesh, class })
    }

    /// A topology from a mesh alone (GPUs named `GPU0..`).
    pub fn from_mesh(mesh: NvlMesh) -> Self {
        let gpus = (0..mesh.num_gpus()).map(GpuInfo::unnamed).collect();
        let class = classify(&mesh);
        Self { gpus, mesh, class }
    }

    /// Number of GPUs.
    pub fn num_gpus(&self) -> usize {
        self.mesh.num_gpus()
    }
}

pub(crate) fn check_gpus(gpus: &[GpuInfo], mesh: &NvlMesh) -> Result<(), TopoError> {
    if gpus.len() != mesh.num_gpus() {
        return Err(TopoError::InvalidMesh(format!(
            "{} GPU entries for a mesh of {} GPUs",
            gpus.len(),
            mesh.num_gpus()
        )));
    }
    if let Some((i, g)) = gpus.iter().enumerate().find(|(i, g)| g.index != *i) {
        return Err(TopoError::InvalidMesh(format!(
            "GPU entry {i} has index {}; entries must be in index order",
            g.index
        )));
    }
    Ok(())
}

/// Human-readable table: the link matrix (`NV<k>`, `X`, `-`), the class, and the HCM table
/// or the reason the mesh is not an HCM.
impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.num_gpus();
        write!(f, "{:<6}", "")?;
        for j in 0..n {
            write!(f, " {:>5}", format!("GPU{j}"))?;
        }
        writeln!(f)?;
        for i in 0..n {
            write!(f, "{:<6}", format!("GPU{i}"))?;
            for j in 0..n {
                let cell = match self.mesh.links(i, j) {
                    _ if i == j => "X".to_string(),
                    0 => "-".to_string(),
                    k => format!("NV{k}"),
                };
                write!(f, " {cell:>5}")?;
            }
            writeln!(f)?;
        }
        if self
            .gpus
            .iter()
            .any(|g| g.pci_bus_id.is_some() || g.uuid.is_some())
        {
            writeln!(f)?;
            for g in &self.gpus {
                writeln!(
                    f,
                    "GPU{}: {}  pci {}  uuid {}",
                    g.index,
                    g.name,
                    g.pci_bus_id.as_deref().unwrap_or("?"),
                    g.uuid.as_deref().unwrap_or("?")
                )?;
            }
        }
        writeln!(f)?;
        writeln!(f, "class: {}", self.class.name())?;
        match &self.class {
            TopologyClass::HybridCubeMesh(h) => {
                let [q0, q1] = h.quads();
                writeln!(f, "quads: {q0:?} {q1:?}")?;
                writeln!(f, "hcm [n0, n1, n2, relay]:")?;
                for (x, row) in h.rows().iter().enumerate() {
                    writeln!(f, "  GPU{x}: {row:?}")?;
                }
            }
            TopologyClass::None => {
                writeln!(f, "not fully connected: some GPU pairs have no NVLink")?;
                if let (_, Some(why)) = classify_explained(&self.mesh) {
                    writeln!(f, "not a hybrid cube mesh: {why}")?;
                }
            }
            TopologyClass::FullyConnected => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructor_checks_gpu_entries() {
        let m = NvlMesh::from_fn(2, |i, j| u32::from(i != j)).unwrap();
        assert!(Topology::new(vec![GpuInfo::unnamed(0)], m.clone()).is_err());
        assert!(Topology::new(vec![GpuInfo::unnamed(1), GpuInfo::unnamed(0)], m.clone()).is_err());
        let t = Topology::new(vec![GpuInfo::unnamed(0), GpuInfo::unnamed(1)], m).unwrap();
        assert_eq!(t.class, TopologyClass::FullyConnected);
        let s = t.to_string();
        assert!(
            s.contains("NV1") && s.contains("class: fully_connected"),
            "{s}"
        );
    }
}
