//! Hybrid cube mesh (HCM): the 8-GPU NVLink shape of the DGX-1 family, and a complete
//! solver for it.
//!
//! Shape: the 8 GPUs split into two *quads*, each a 4-clique (every pair NVLinked), plus
//! a perfect matching between the quads (each GPU's *relay*), and no other NVLink. So
//! every GPU has exactly 4 NVLinked peers: 3 in its own quad and its relay in the other.
//! (The cube's 12 edges plus the diagonals of its top and bottom faces.)
//!
//! The HCM allreduce reduces inside each quad, then swaps with the relay. Its per-GPU
//! table is `[n0, n1, n2, relay]`, balanced so that `hcm[x][k] == y` implies
//! `hcm[y][k] == x` (slot `k` of a quad is one of the three perfect matchings of K4).

use std::fmt;

use crate::NvlMesh;

/// Number of GPUs of a hybrid cube mesh.
pub const HCM_GPUS: usize = 8;

/// Why a mesh is not a hybrid cube mesh (or an HCM table does not fit a mesh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotHcm {
    /// An HCM has exactly 8 GPUs.
    WrongGpuCount {
        /// GPUs in the mesh.
        gpus: usize,
    },
    /// Every GPU of an HCM has exactly 4 NVLinked peers.
    Degree {
        /// The first GPU whose peer count is not 4.
        gpu: usize,
        /// Its number of NVLinked peers.
        degree: usize,
    },
    /// All degrees are 4, but no split into two 4-cliques joined by a perfect matching
    /// exists.
    NoQuadPartition,
    /// A given HCM table does not fit the mesh (only from [`Hcm::from_rows`]).
    BadTable {
        /// The GPU whose row is wrong.
        gpu: usize,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for NotHcm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongGpuCount { gpus } => {
                write!(f, "a hybrid cube mesh has 8 GPUs, this mesh has {gpus}")
            }
            Self::Degree { gpu, degree } => write!(
                f,
                "GPU {gpu} has {degree} NVLinked peers; every GPU of a hybrid cube mesh has 4"
            ),
            Self::NoQuadPartition => write!(
                f,
                "no partition into two 4-cliques with a perfect matching between them"
            ),
            Self::BadTable { gpu, reason } => write!(f, "HCM table row of GPU {gpu}: {reason}"),
        }
    }
}

impl std::error::Error for NotHcm {}

/// The hybrid-cube-mesh table: for every GPU `x`, `[n0, n1, n2, relay]` where `n0..n2` are
/// the 3 other GPUs of its quad and `relay` its NVLinked peer in the other quad.
///
/// Invariants (checked by [`Hcm::from_rows`], guaranteed by [`solve_hcm`]): quads are
/// 4-cliques; the relay is an NVLinked peer in the other quad; `relay(relay(x)) == x`;
/// each row lists exactly the NVLinked peers of its GPU; and the balance property
/// `hcm[x][k] == y  =>  hcm[y][k] == x` for every slot `k` (relay included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Hcm {
    rows: [[usize; 4]; HCM_GPUS],
}

impl Hcm {
    /// Checks a table against `mesh` and wraps it; the error says which row is wrong and why.
    pub fn from_rows(rows: [[usize; 4]; HCM_GPUS], mesh: &NvlMesh) -> Result<Self, NotHcm> {
        let hcm = Self { rows };
        hcm.validate(mesh)?;
        Ok(hcm)
    }

    /// Same as [`Hcm::from_rows`] from a slice of rows (must have exactly 8).
    pub fn from_slice(rows: &[[usize; 4]], mesh: &NvlMesh) -> Result<Self, NotHcm> {
        let arr: [[usize; 4]; HCM_GPUS] = rows
            .try_into()
            .map_err(|_| NotHcm::WrongGpuCount { gpus: rows.len() })?;
        Self::from_rows(arr, mesh)
    }

    /// All 8 rows `[n0, n1, n2, relay]`, indexed by GPU.
    pub fn rows(&self) -> &[[usize; 4]; HCM_GPUS] {
        &self.rows
    }

    /// Row of GPU `gpu`, or `None` when `gpu >= 8`.
    pub fn row(&self, gpu: usize) -> Option<[usize; 4]> {
        self.rows.get(gpu).copied()
    }

    /// Relay peer of GPU `gpu`, or `None` when `gpu >= 8`.
    pub fn relay(&self, gpu: usize) -> Option<usize> {
        self.row(gpu).map(|r| r[3])
    }

    /// The two quads, each sorted; the first one holds GPU 0.
    pub fn quads(&self) -> [[usize; 4]; 2] {
        let mut q0 = [0, self.rows[0][0], self.rows[0][1], self.rows[0][2]];
        q0.sort_unstable();
        let r = self.rows[0][3];
        let mut q1 = [
            r,
            self.rows[r % HCM_GPUS][0],
            self.rows[r % HCM_GPUS][1],
            self.rows[r % HCM_GPUS][2],
        ];
        q1.sort_unstable();
        [q0, q1]
    }

    /// Checks every invariant listed on [`Hcm`] against `mesh`.
    pub fn validate(&self, mesh: &NvlMesh) -> Result<(), NotHcm> {
        if mesh.num_gpus() != HCM_GPUS {
            return Err(NotHcm::WrongGpuCount {
                gpus: mesh.num_gpus(),
            });
        }
        let bad = |gpu: usize, reason: String| NotHcm::BadTable { gpu, reason };
        for (x, row) in self.rows.iter().enumerate() {
            let mut mask = 0u32;
            for &y in row {
                if y >= HCM_GPUS {
                    return Err(bad(x, format!("entry {y} is not a GPU of 0..8")));
                }
                if y == x {
                    return Err(bad(x, "lists the GPU itself".into()));
                }
                if !mesh.is_linked(x, y) {
                    return Err(bad(x, format!("GPU {y} is not NVLinked to GPU {x}")));
                }
                mask |= 1 << y;
            }
            if mask.count_ones() != 4 {
                return Err(bad(x, format!("entries {row:?} are not 4 distinct GPUs")));
            }
            if mask != mesh.neighbor_mask(x) {
                return Err(bad(x, "does not list exactly the NVLinked peers".into()));
            }
            // Balance (relay included: relay(relay(x)) == x).
            for (k, &y) in row.iter().enumerate() {
                let back = self.rows.get(y).and_then(|r| r.get(k)).copied();
                if back != Some(x) {
                    return Err(bad(
                        x,
                        format!("slot {k} holds GPU {y} but slot {k} of GPU {y} is not {x}"),
                    ));
                }
            }
            // Quad: x, n0, n1, n2 pairwise linked; relay linked to none of n0..n2.
            let quad = [x, row[0], row[1], row[2]];
            for (i, &a) in quad.iter().enumerate() {
                for &b in quad.iter().skip(i + 1) {
                    if !mesh.is_linked(a, b) {
                        return Err(bad(x, format!("quad {quad:?} is not a clique ({a}-{b})")));
                    }
                }
            }
            let relay = row[3];
            if row[..3].iter().any(|&q| mesh.is_linked(q, relay)) {
                return Err(bad(
                    x,
                    format!("relay {relay} is NVLinked into the own quad"),
                ));
            }
        }
        Ok(())
    }
}

/// Finds the hybrid-cube-mesh table of `mesh`, or says why it is not one.
///
/// Complete: every mesh whose NVLink graph is a hybrid cube mesh is solved, whatever the
/// GPU numbering and link counts (only "linked or not" matters). It tries each of the 35
/// ways to pick GPU 0's quad. The quads of an HCM are unique (a 4-clique cannot use a
/// matching edge), so the result is deterministic: quad A holds GPU 0; in quad A, sorted
/// `a0 < a1 < a2 < a3`, slot `k` pairs `a0` with `a(k+1)` (and the other two together);
/// quad B uses the image of those pairings under the relay map, so also
/// `hcm[relay(x)][k] == relay(hcm[x][k])`.
pub fn solve_hcm(mesh: &NvlMesh) -> Result<Hcm, NotHcm> {
    let n = mesh.num_gpus();
    if n != HCM_GPUS {
        return Err(NotHcm::WrongGpuCount { gpus: n });
    }
    let masks: [u32; HCM_GPUS] = std::array::from_fn(|i| mesh.neighbor_mask(i));
    for (gpu, m) in masks.iter().enumerate() {
        let degree = m.count_ones() as usize;
        if degree != 4 {
            return Err(NotHcm::Degree { gpu, degree });
        }
    }
    const ALL: u32 = (1 << HCM_GPUS) - 1;
    let is_clique = |set: u32| {
        (0..HCM_GPUS)
            .filter(|&v| set & (1 << v) != 0)
            .all(|v| masks[v] & set == set & !(1 << v))
    };
    // Candidate quads holding GPU 0: GPU 0 plus 3 of GPUs 1..8.
    for rest in 0u32..(1 << (HCM_GPUS - 1)) {
        if rest.count_ones() != 3 {
            continue;
        }
        let a = 1 | (rest << 1);
        let b = ALL & !a;
        if !is_clique(a) || !is_clique(b) {
            continue;
        }
        if let Some(hcm) = build_table(&masks, a, b) {
            debug_assert!(hcm.validate(mesh).is_ok());
            return Ok(hcm);
        }
    }
    Err(NotHcm::NoQuadPartition)
}

/// Table for the quad split `a | b` if the cross edges form a perfect matching.
fn build_table(masks: &[u32; HCM_GPUS], a: u32, b: u32) -> Option<Hcm> {
    let mut relay = [0usize; HCM_GPUS];
    for (x, &m) in masks.iter().enumerate() {
        let other = if a & (1 << x) != 0 { b } else { a };
        let cross = m & other;
        if cross.count_ones() != 1 {
            return None;
        }
        relay[x] = cross.trailing_zeros() as usize;
    }
    // Perfect matching: the relay map is an involution.
    if (0..HCM_GPUS).any(|x| relay.get(relay[x]) != Some(&x)) {
        return None;
    }
    let quad_a: Vec<usize> = (0..HCM_GPUS).filter(|&v| a & (1 << v) != 0).collect();
    let [a0, a1, a2, a3]: [usize; 4] = quad_a.try_into().ok()?;
    // The three perfect matchings of K4 on quad A; slot k uses matching k.
    let matchings = [
        [(a0, a1), (a2, a3)],
        [(a0, a2), (a1, a3)],
        [(a0, a3), (a1, a2)],
    ];
    let mut rows = [[usize::MAX; 4]; HCM_GPUS];
    for (k, matching) in matchings.iter().enumerate() {
        for &(p, q) in matching {
            let (rp, rq) = (relay[p], relay[q]);
            rows.get_mut(p)?[k] = q;
            rows.get_mut(q)?[k] = p;
            rows.get_mut(rp)?[k] = rq;
            rows.get_mut(rq)?[k] = rp;
        }
    }
    for (x, row) in rows.iter_mut().enumerate() {
        row[3] = relay[x];
    }
    Some(Hcm { rows })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// DGX-1 (V100) NVLink mesh as printed by `nvidia-smi topo -m`.
    pub(crate) fn dgx1() -> NvlMesh {
        let nv1 = [
            (0, 1),
            (0, 2),
            (1, 3),
            (2, 6),
            (3, 7),
            (4, 5),
            (4, 6),
            (5, 7),
        ];
        let nv2 = [
            (0, 3),
            (0, 4),
            (1, 2),
            (1, 5),
            (2, 3),
            (4, 7),
            (5, 6),
            (6, 7),
        ];
        let mut e: Vec<(usize, usize, u32)> = nv1.iter().map(|&(a, b)| (a, b, 1)).collect();
        e.extend(nv2.iter().map(|&(a, b)| (a, b, 2)));
        NvlMesh::from_edges(8, &e).unwrap()
    }

    #[test]
    fn solves_dgx1() {
        let m = dgx1();
        let h = solve_hcm(&m).unwrap();
        assert_eq!(h.quads(), [[0, 1, 2, 3], [4, 5, 6, 7]]);
        assert_eq!(h.row(0), Some([1, 2, 3, 4]));
        assert_eq!(h.row(1), Some([0, 3, 2, 5]));
        assert_eq!(h.row(4), Some([5, 6, 7, 0]));
        assert_eq!(h.relay(7), Some(3));
        assert_eq!(h.row(8), None);
        h.validate(&m).unwrap();
        assert_eq!(Hcm::from_rows(*h.rows(), &m), Ok(h));
    }

    #[test]
    fn explains_rejections() {
        let full = NvlMesh::from_fn(8, |i, j| u32::from(i != j)).unwrap();
        assert_eq!(solve_hcm(&full), Err(NotHcm::Degree { gpu: 0, degree: 7 }));
        let four = NvlMesh::from_fn(4, |i, j| u32::from(i != j)).unwrap();
        assert_eq!(solve_hcm(&four), Err(NotHcm::WrongGpuCount { gpus: 4 }));
        // 4-regular but not HCM: the circulant C8(1,2) (ring plus skip-one chords).
        let e: Vec<_> = (0..8)
            .flat_map(|i| [(i, (i + 1) % 8, 1), (i, (i + 2) % 8, 1)])
            .collect();
        let circ = NvlMesh::from_edges(8, &e).unwrap();
        assert_eq!(solve_hcm(&circ), Err(NotHcm::NoQuadPartition));
        assert!(NotHcm::NoQuadPartition.to_string().contains("4-cliques"));
    }

    #[test]
    fn validate_catches_bad_tables() {
        let m = dgx1();
        let good = *solve_hcm(&m).unwrap().rows();
        let mut swapped = good;
        swapped[0].swap(0, 1); // breaks balance
        assert!(matches!(
            Hcm::from_rows(swapped, &m),
            Err(NotHcm::BadTable { gpu: 0, .. })
        ));
        let mut relay_in_quad = good;
        relay_in_quad[0] = [4, 2, 3, 1];
        assert!(Hcm::from_rows(relay_in_quad, &m).is_err());
        let mut out_of_range = good;
        out_of_range[3][1] = 9;
        assert!(Hcm::from_rows(out_of_range, &m).is_err());
        assert!(Hcm::from_slice(&good[..7], &m).is_err());
        assert!(Hcm::from_slice(&good, &m).is_ok());
    }
}
