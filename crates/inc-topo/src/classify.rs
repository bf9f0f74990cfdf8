//! [`TopologyClass`] and [`classify`]: which allreduce shapes a mesh allows.

use crate::hcm::{solve_hcm, Hcm, NotHcm};
use crate::NvlMesh;

/// The NVLink shape of a group of GPUs, as the allreduce algorithms see it.
// The HCM table is 256 bytes; a class is built once per communicator, boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopologyClass {
    /// Every pair of GPUs shares at least one NVLink (directly or through NVSwitch);
    /// a single GPU counts as fully connected.
    FullyConnected,
    /// 8 GPUs in the DGX-1 hybrid cube mesh shape, with its solved table.
    HybridCubeMesh(Hcm),
    /// Neither: the allreduce must fall back (e.g. to NCCL).
    None,
}

impl TopologyClass {
    /// Stable snake-case name: `fully_connected`, `hybrid_cube_mesh` or `none`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::FullyConnected => "fully_connected",
            Self::HybridCubeMesh(_) => "hybrid_cube_mesh",
            Self::None => "none",
        }
    }

    /// The HCM table when the class is [`TopologyClass::HybridCubeMesh`].
    pub fn hcm(&self) -> Option<&Hcm> {
        match self {
            Self::HybridCubeMesh(h) => Some(h),
            _ => None,
        }
    }
}

/// Whether every pair of distinct GPUs shares at least one NVLink.
pub fn is_fully_connected(mesh: &NvlMesh) -> bool {
    let n = mesh.num_gpus();
    (0..n).all(|i| ((i + 1)..n).all(|j| mesh.is_linked(i, j)))
}

/// Classifies a mesh of any size: fully connected first, then hybrid cube mesh, else none.
pub fn classify(mesh: &NvlMesh) -> TopologyClass {
    classify_explained(mesh).0
}

/// Like [`classify`], and when the class is [`TopologyClass::None`] also why the mesh is
/// not a hybrid cube mesh (the only non-trivial shape test).
pub fn classify_explained(mesh: &NvlMesh) -> (TopologyClass, Option<NotHcm>) {
    if is_fully_connected(mesh) {
        return (TopologyClass::FullyConnected, None);
    }
    match solve_hcm(mesh) {
        Ok(h) => (TopologyClass::HybridCubeMesh(h), None),
        Err(why) => (TopologyClass::None, Some(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_for_small_and_large_meshes() {
        let one = NvlMesh::new(vec![vec![0]]).unwrap();
        assert_eq!(classify(&one), TopologyClass::FullyConnected);
        let two_pcie = NvlMesh::from_fn(2, |_, _| 0).unwrap();
        let (c, why) = classify_explained(&two_pcie);
        assert_eq!(c, TopologyClass::None);
        assert_eq!(why, Some(NotHcm::WrongGpuCount { gpus: 2 }));
        for n in 2..=16 {
            let full = NvlMesh::from_fn(n, |i, j| if i == j { 0 } else { 12 }).unwrap();
            assert_eq!(classify(&full).name(), "fully_connected", "n={n}");
        }
        let mut rows = vec![vec![3u32; 16]; 16];
        for (i, r) in rows.iter_mut().enumerate() {
            r[i] = 0;
        }
        rows[3][9] = 0;
        rows[9][3] = 0;
        assert_eq!(classify(&NvlMesh::new(rows).unwrap()), TopologyClass::None);
        assert_eq!(TopologyClass::None.hcm(), None);
    }
}
