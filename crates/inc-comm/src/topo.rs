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
}
