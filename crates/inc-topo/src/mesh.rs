//! [`NvlMesh`]: the square matrix of NVLink counts between the GPUs of one machine.

use serde::{Deserialize, Serialize};

use crate::TopoError;

/// Largest number of GPUs a mesh may describe.
pub const MAX_GPUS: usize = 16;

/// Square, symmetric matrix of NVLink counts: `links(i, j)` is the number of NVLinks
/// between GPU `i` and GPU `j` (0: no NVLink; the diagonal is always 0).
///
/// Holds 1..=[`MAX_GPUS`] GPUs. Every constructor validates; a value of this type is always
/// square, symmetric and has a zero diagonal. Serialises as a list of rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<Vec<u32>>", into = "Vec<Vec<u32>>")]
pub struct NvlMesh {
    n: usize,
    /// Row-major `n * n` link counts.
    links: Vec<u32>,
}

impl NvlMesh {
    /// Builds a mesh from its rows; checks size (1..=16), squareness, zero diagonal and
    /// symmetry.
    pub fn new(rows: Vec<Vec<u32>>) -> Result<Self, TopoError> {
        let n = rows.len();
        check_size(n)?;
        let mut links = Vec::with_capacity(n * n);
        for (i, row) in rows.iter().enumerate() {
            if row.len() != n {
                return Err(TopoError::InvalidMesh(format!(
                    "row {i} has {} entries but the mesh has {n} rows (it must be square)",
                    row.len()
                )));
            }
            links.extend_from_slice(row);
        }
        let mesh = Self { n, links };
        mesh.check()?;
        Ok(mesh)
    }

    /// Builds an `n`-GPU mesh whose entry `(i, j)` is `f(i, j)`; validated like [`Self::new`].
    pub fn from_fn(n: usize, mut f: impl FnMut(usize, usize) -> u32) -> Result<Self, TopoError> {
        check_size(n)?;
        let mut links = Vec::with_capacity(n * n);
        for i in 0..n {
            for j in 0..n {
                links.push(f(i, j));
            }
        }
        let mesh = Self { n, links };
        mesh.check()?;
        Ok(mesh)
    }

    /// Builds an `n`-GPU mesh from undirected edges `(a, b, count)`; counts of repeated
    /// edges add up. Fails on an out-of-range GPU, a self edge or a count overflow.
    pub fn from_edges(n: usize, edges: &[(usize, usize, u32)]) -> Result<Self, TopoError> {
        check_size(n)?;
        let mut links = vec![0u32; n * n];
        for &(a, b, c) in edges {
            if a >= n || b >= n {
                return Err(TopoError::InvalidMesh(format!(
                    "edge ({a}, {b}) names a GPU outside 0..{n}"
                )));
            }
            if a == b {
                return Err(TopoError::InvalidMesh(format!(
                    "edge ({a}, {b}) is a self link"
                )));
            }
            for idx in [a * n + b, b * n + a] {
                let slot = links
                    .get_mut(idx)
                    .ok_or_else(|| TopoError::InvalidMesh("edge index out of range".into()))?;
                *slot = slot.checked_add(c).ok_or_else(|| {
                    TopoError::InvalidMesh(format!("link count of ({a}, {b}) overflows"))
                })?;
            }
        }
        let mesh = Self { n, links };
        mesh.check()?;
        Ok(mesh)
    }

    fn check(&self) -> Result<(), TopoError> {
        for i in 0..self.n {
            let d = self.links(i, i);
            if d != 0 {
                return Err(TopoError::InvalidMesh(format!(
                    "diagonal entry ({i}, {i}) is {d}; a GPU has no NVLink to itself"
                )));
            }
            for j in (i + 1)..self.n {
                let (a, b) = (self.links(i, j), self.links(j, i));
                if a != b {
                    return Err(TopoError::InvalidMesh(format!(
                        "not symmetric: ({i}, {j}) is {a} but ({j}, {i}) is {b}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Number of GPUs (rows) of the mesh; always in 1..=[`MAX_GPUS`].
    pub fn num_gpus(&self) -> usize {
        self.n
    }

    /// Number of NVLinks between GPU `i` and GPU `j`; 0 when either is out of range.
    pub fn links(&self, i: usize, j: usize) -> u32 {
        if i >= self.n || j >= self.n {
            return 0;
        }
        self.links.get(i * self.n + j).copied().unwrap_or(0)
    }

    /// Whether GPU `i` and GPU `j` share at least one NVLink.
    pub fn is_linked(&self, i: usize, j: usize) -> bool {
        self.links(i, j) > 0
    }

    /// The GPUs that share at least one NVLink with GPU `i`, ascending.
    pub fn neighbors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.n).filter(move |&j| self.is_linked(i, j))
    }

    /// Bit `j` is set when GPU `i` and GPU `j` are NVLinked (fits: at most 16 GPUs).
    pub fn neighbor_mask(&self, i: usize) -> u32 {
        self.neighbors(i).fold(0u32, |m, j| m | (1u32 << j))
    }

    /// Number of NVLinked peers of GPU `i`.
    pub fn degree(&self, i: usize) -> usize {
        self.neighbors(i).count()
    }

    /// Total NVLinks of GPU `i` (sum of its row).
    pub fn total_links(&self, i: usize) -> u64 {
        (0..self.n).map(|j| u64::from(self.links(i, j))).sum()
    }

    /// The matrix as a list of rows.
    pub fn rows(&self) -> Vec<Vec<u32>> {
        self.links
            .chunks(self.n.max(1))
            .map(<[u32]>::to_vec)
            .collect()
    }

    /// The same mesh with GPU `i` renamed `perm[i]`: `out.links(perm[i], perm[j]) ==
    /// self.links(i, j)`. `perm` must be a permutation of `0..n`.
    pub fn permuted(&self, perm: &[usize]) -> Result<Self, TopoError> {
        let n = self.n;
        let mut seen = vec![false; n];
        if perm.len() != n {
            return Err(TopoError::InvalidMesh(format!(
                "permutation has {} entries, the mesh has {n} GPUs",
                perm.len()
            )));
        }
        let mut inverse = vec![0usize; n];
        for (i, &p) in perm.iter().enumerate() {
            match seen.get_mut(p) {
                Some(s) if !*s => *s = true,
                _ => {
                    return Err(TopoError::InvalidMesh(format!(
                        "{perm:?} is not a permutation of 0..{n}"
                    )))
                }
            }
            if let Some(slot) = inverse.get_mut(p) {
                *slot = i;
            }
        }
        Self::from_fn(n, |a, b| {
            let ia = inverse.get(a).copied().unwrap_or(0);
            let ib = inverse.get(b).copied().unwrap_or(0);
            self.links(ia, ib)
        })
    }
}

fn check_size(n: usize) -> Result<(), TopoError> {
    if n == 0 {
        return Err(TopoError::InvalidMesh(
            "a mesh needs at least one GPU".into(),
        ));
    }
    if n > MAX_GPUS {
        return Err(TopoError::InvalidMesh(format!(
            "{n} GPUs; at most {MAX_GPUS} are supported"
        )));
    }
    Ok(())
}

impl TryFrom<Vec<Vec<u32>>> for NvlMesh {
    type Error = TopoError;
    fn try_from(rows: Vec<Vec<u32>>) -> Result<Self, TopoError> {
        Self::new(rows)
    }
}

impl From<NvlMesh> for Vec<Vec<u32>> {
    fn from(m: NvlMesh) -> Self {
        m.rows()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_shape_diagonal_symmetry() {
        assert!(NvlMesh::new(vec![]).is_err());
        assert!(NvlMesh::new(vec![vec![0]]).is_ok());
        assert!(NvlMesh::new(vec![vec![0, 1], vec![1]]).is_err());
        assert!(NvlMesh::new(vec![vec![1, 0], vec![0, 0]]).is_err());
        let e = NvlMesh::new(vec![vec![0, 1], vec![2, 0]]).unwrap_err();
        assert!(e.to_string().contains("not symmetric"), "{e}");
        assert!(NvlMesh::from_fn(17, |_, _| 0).is_err());
        assert!(NvlMesh::from_fn(16, |i, j| u32::from(i != j)).is_ok());
    }

    #[test]
    fn edges_neighbors_and_permutation() {
        let m = NvlMesh::from_edges(4, &[(0, 1, 2), (1, 2, 1), (1, 2, 1)]).unwrap();
        assert_eq!(m.links(1, 0), 2);
        assert_eq!(m.links(2, 1), 2);
        assert_eq!(m.links(9, 9), 0);
        assert_eq!(m.neighbors(1).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(m.neighbor_mask(1), 0b101);
        assert_eq!(m.degree(3), 0);
        assert_eq!(m.total_links(1), 4);
        assert!(NvlMesh::from_edges(4, &[(0, 4, 1)]).is_err());
        assert!(NvlMesh::from_edges(4, &[(2, 2, 1)]).is_err());
        let p = m.permuted(&[3, 2, 1, 0]).unwrap();
        assert_eq!(p.links(3, 2), 2);
        assert_eq!(p.links(2, 1), 2);
        assert_eq!(p.links(0, 1), 0);
        assert!(m.permuted(&[0, 0, 1, 2]).is_err());
        assert!(m.permuted(&[0, 1, 2]).is_err());
        assert!(m.permuted(&[0, 1, 2, 7]).is_err());
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let m = NvlMesh::from_edges(3, &[(0, 2, 4)]).unwrap();
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(s, "[[0,0,4],[0,0,0],[4,0,0]]");
        let back: NvlMesh = serde_json::from_str(&s).unwrap();
        assert_eq!(back, m);
        assert!(serde_json::from_str::<NvlMesh>("[[0,1],[0,0]]").is_err());
        assert!(serde_json::from_str::<NvlMesh>("[]").is_err());
    }
}
