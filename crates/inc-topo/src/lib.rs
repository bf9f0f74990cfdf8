//! inc-topo: NVLink topology of the GPUs of one machine (from NVML or `nvidia-smi topo -m`
//! text), its classification, and the hybrid-cube-mesh solver. Knows nothing of CUDA.
//!
//! - [`NvlMesh`]: square, symmetric matrix of NVLink counts (1..=16 GPUs), serde as rows.
//! - [`parse_nvidia_smi_topo`]: reads `nvidia-smi topo -m` output (tabs/spaces, CRLF, ANSI
//!   codes, NIC rows/columns, affinity columns, legend or not); errors name the line.
//! - [`Topology`]: GPUs ([`GpuInfo`]) + mesh + [`TopologyClass`]; JSON in/out
//!   ([`Topology::to_json`], [`Topology::to_summary_json`], [`Topology::from_json`],
//!   validated on load); [`parse_topology`] auto-detects text or JSON.
//! - [`classify`]: [`TopologyClass::FullyConnected`] (every pair NVLinked, or one GPU),
//!   [`TopologyClass::HybridCubeMesh`] (8 GPUs, two NVLinked quads + a matching), or
//!   [`TopologyClass::None`]; [`classify_explained`] also says why a mesh is not an HCM.
//! - [`solve_hcm`]: complete solver (every numbering of a valid HCM is found) returning an
//!   [`Hcm`] table `[n0, n1, n2, relay]` per GPU with the balance property
//!   (`hcm[x][k] == y` implies `hcm[y][k] == x`), or [`NotHcm`] saying why not.
//! - `from_nvml()` (feature `nvml`): reads this machine through NVML at run time,
//!   counting NVSwitch links as `min(switch links of i, switch links of j)`.
//!
//! ```
//! use inc_topo::{parse_nvidia_smi_topo, TopologyClass};
//!
//! let text = "\tGPU0\tGPU1\tGPU2\tGPU3\tCPU Affinity\n\
//!             GPU0\t X \tNV4\tNV4\tNV4\t0-31\n\
//!             GPU1\tNV4\t X \tNV4\tNV4\t0-31\n\
//!             GPU2\tNV4\tNV4\t X \tNV4\t32-63\n\
//!             GPU3\tNV4\tNV4\tNV4\t X \t32-63\n";
//! let topo = parse_nvidia_smi_topo(text)?;
//! assert_eq!(topo.class, TopologyClass::FullyConnected);
//! let json = topo.to_summary_json()?;
//! assert!(json.starts_with(r#"{"gpus":4,"class":"fully_connected","mesh":[[0,4,4,4],"#));
//!
//! // The DGX-1 shape, numbered arbitrarily, is still found.
//! let dgx1 = inc_topo::NvlMesh::from_edges(8, &[
//!     (0, 1, 1), (0, 2, 1), (0, 3, 2), (1, 2, 2), (1, 3, 1), (2, 3, 2), // quad {0,1,2,3}
//!     (4, 5, 1), (4, 6, 1), (4, 7, 2), (5, 6, 2), (5, 7, 1), (6, 7, 2), // quad {4,5,6,7}
//!     (0, 4, 2), (1, 5, 2), (2, 6, 1), (3, 7, 1),                       // relays
//! ])?;
//! let hcm = inc_topo::solve_hcm(&dgx1.permuted(&[5, 2, 7, 0, 1, 6, 3, 4])?)?;
//! assert_eq!(hcm.quads(), [[0, 2, 5, 7], [1, 3, 4, 6]]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod classify;
mod error;
mod hcm;
mod json;
mod mesh;
#[cfg(feature = "nvml")]
mod nvml;
mod parse;
mod topology;

pub use classify::{classify, classify_explained, is_fully_connected, TopologyClass};
pub use error::TopoError;
pub use hcm::{solve_hcm, Hcm, NotHcm, HCM_GPUS};
pub use json::{parse_topology, MAX_JSON_BYTES};
pub use mesh::{NvlMesh, MAX_GPUS};
#[cfg(feature = "nvml")]
pub use nvml::{from_nvml, MAX_NVLINKS};
pub use parse::{parse_nvidia_smi_topo, MAX_TEXT_LINKS};
pub use topology::{GpuInfo, Topology};

/// Whether this build can read the machine through NVML (cargo feature `nvml`).
pub const HAS_NVML: bool = cfg!(feature = "nvml");
