//! The topology a communicator runs on: NVML on GPUs, a declared mesh on the simulator.

use inc_topo::{NvlMesh, TopologyClass};

use crate::error::{CommError, Result};
use crate::options::SimTopology;

fn mesh_err(e: impl std::fmt::Display) -> CommError {
    CommError::Backend {
        rank: 0,
        reason: format!("building a topology mesh: {e}"),
    }
}

/// Every pair of the `world` devices linked once.
pub fn full_mesh(world: usize) -> Result<NvlMesh> {
    NvlMesh::from_fn(world, |i, j| u32::from(i != j)).map_err(mesh_err)
}

/// No pair linked.
pub fn disconnected_mesh(world: usize) -> Result<NvlMesh> {
    NvlMesh::from_fn(world, |_, _| 0).map_err(mesh_err)
}

/// The DGX-1 hybrid cube mesh: two fully connected quads {0,1,2,3} and {4,5,6,7}, and
/// GPU `i` linked to `i ^ 4` in the other quad.
pub fn hcm_mesh() -> Result<NvlMesh> {
    let quad = |i: usize| i / 4;
    NvlMesh::from_fn(8, |i, j| {
        u32::from(i != j && (quad(i) == quad(j) || j == i ^ 4))
    })
    .map_err(mesh_err)
}

/// The hybrid-cube-mesh table (`[n0, n1, n2, relay]` per rank) the hcm path runs with on
/// `class` at `world` ranks, or `None` where hcm cannot run:
/// - a true hybrid cube mesh of 8: the solver's table for that mesh;
/// - a fully connected group of exactly 8 (an NVSwitch machine contains every cube mesh
///   as a subgraph): the canonical DGX-1 table, [`inc_topo::solve_hcm`] applied to
///   [`hcm_mesh`]. Deterministic, so every rank computes the same table.
///
/// Only an explicit `INC_ALGO=hcm` or a pinned path runs hcm on a fully connected group;
/// the automatic choice never does.
pub fn hcm_table(class: &TopologyClass, world: usize) -> Result<Option<[[usize; 4]; 8]>> {
    if world != inc_topo::HCM_GPUS {
        return Ok(None);
    }
    match class {
        TopologyClass::HybridCubeMesh(h) => Ok(Some(*h.rows())),
        TopologyClass::FullyConnected => {
            let h = inc_topo::solve_hcm(&hcm_mesh()?).map_err(mesh_err)?;
            Ok(Some(*h.rows()))
        }
        TopologyClass::None => Ok(None),
    }
}

/// The mesh the sim backend declares for `world` ranks.
pub fn sim_mesh(topo: Option<SimTopology>, world: usize) -> Result<NvlMesh> {
    match topo.unwrap_or(SimTopology::FullyConnected) {
        SimTopology::FullyConnected => full_mesh(world),
        SimTopology::Disconnected => disconnected_mesh(world),
        SimTopology::HybridCubeMesh if world == 8 => hcm_mesh(),
        SimTopology::HybridCubeMesh => Err(CommError::option(
            "INC_SIM_TOPOLOGY",
            "hcm",
            format!("a hybrid cube mesh needs world 8, not {world}"),
        )),
    }
}

/// Classifies a mesh (world 1 counts as fully connected).
pub fn classify(mesh: &NvlMesh) -> TopologyClass {
    inc_topo::classify(mesh)
}

/// A one-number code of a class for the handshake.
pub fn class_code(c: &TopologyClass) -> u8 {
    match c {
        TopologyClass::FullyConnected => 1,
        TopologyClass::HybridCubeMesh(_) => 2,
        TopologyClass::None => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_meshes_classify_as_declared() {
        assert_eq!(
            classify(&full_mesh(4).unwrap()),
            TopologyClass::FullyConnected
        );
        assert_eq!(
            classify(&full_mesh(1).unwrap()),
            TopologyClass::FullyConnected
        );
        assert!(matches!(
            classify(&hcm_mesh().unwrap()),
            TopologyClass::HybridCubeMesh(_)
        ));
        assert_eq!(
            classify(&disconnected_mesh(3).unwrap()),
            TopologyClass::None
        );
        assert!(sim_mesh(Some(SimTopology::HybridCubeMesh), 4).is_err());
    }

    #[test]
    fn hcm_table_per_class() {
        let hcm = classify(&hcm_mesh().unwrap());
        let solved = *hcm.hcm().unwrap().rows();
        assert_eq!(hcm_table(&hcm, 8).unwrap(), Some(solved));
        // Fully connected 8: the canonical DGX-1 table, valid on the full mesh too.
        let full = hcm_table(&TopologyClass::FullyConnected, 8)
            .unwrap()
            .unwrap();
        assert_eq!(full, solved);
        // Every invariant holds on the DGX-1 mesh, whose links a fully connected 8 has too.
        inc_topo::Hcm::from_rows(full, &hcm_mesh().unwrap()).unwrap();
        let fc = full_mesh(8).unwrap();
        for (x, row) in full.iter().enumerate() {
            assert!(row.iter().all(|&y| fc.is_linked(x, y)));
        }
        assert_eq!(
            hcm_table(&TopologyClass::FullyConnected, 8).unwrap(),
            Some(full)
        );
        assert_eq!(hcm_table(&TopologyClass::FullyConnected, 4).unwrap(), None);
        assert_eq!(hcm_table(&TopologyClass::None, 8).unwrap(), None);
    }
}
