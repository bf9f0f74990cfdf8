//! Properties of the hybrid-cube-mesh solver and the classifier: every numbering of the
//! DGX-1 mesh solves with all invariants; non-HCM meshes are rejected; results agree with a
//! brute-force isomorphism check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::needless_range_loop)] // graph code reads clearer with indices

use inc_topo::{classify, solve_hcm, Hcm, NotHcm, NvlMesh, TopologyClass};
use proptest::prelude::*;

/// The DGX-1 template: quads {0,1,2,3} and {4,5,6,7}, relay i <-> i+4.
const TEMPLATE: [(usize, usize); 16] = [
    (0, 1),
    (0, 2),
    (0, 3),
    (1, 2),
    (1, 3),
    (2, 3),
    (4, 5),
    (4, 6),
    (4, 7),
    (5, 6),
    (5, 7),
    (6, 7),
    (0, 4),
    (1, 5),
    (2, 6),
    (3, 7),
];

fn template_masks() -> [u8; 8] {
    let mut m = [0u8; 8];
    for &(a, b) in &TEMPLATE {
        m[a] |= 1 << b;
        m[b] |= 1 << a;
    }
    m
}

fn masks_of(mesh: &NvlMesh) -> [u8; 8] {
    std::array::from_fn(|i| {
        (0..8)
            .filter(|&j| mesh.is_linked(i, j))
            .fold(0u8, |m, j| m | (1 << j))
    })
}

fn mesh_of_edges(edges: &[(usize, usize)], weights: &[u32]) -> NvlMesh {
    let e: Vec<_> = edges
        .iter()
        .zip(weights.iter().cycle())
        .map(|(&(a, b), &w)| (a, b, w))
        .collect();
    NvlMesh::from_edges(8, &e).unwrap()
}

/// Brute force: is the graph isomorphic to the template? Tries all 8! vertex maps.
fn is_hcm_bruteforce(g: [u8; 8]) -> bool {
    let t = template_masks();
    let mut perm: Vec<usize> = (0..8).collect();
    let map = |mask: u8, p: &[usize]| {
        (0..8)
            .filter(|&v| mask & (1 << v) != 0)
            .fold(0u8, |m, v| m | (1 << p[v]))
    };
    fn heap(k: usize, p: &mut Vec<usize>, f: &mut dyn FnMut(&[usize]) -> bool) -> bool {
        if k == 1 {
            return f(p);
        }
        for i in 0..k {
            if heap(k - 1, p, f) {
                return true;
            }
            let j = if k % 2 == 0 { i } else { 0 };
            p.swap(j, k - 1);
        }
        false
    }
    heap(8, &mut perm, &mut |p| {
        (0..8).all(|v| map(t[v], p) == g[p[v]])
    })
}

/// Every invariant of an HCM table, checked independently of `Hcm::validate`.
fn check_invariants(mesh: &NvlMesh, h: &Hcm) {
    let rows = h.rows();
    for x in 0..8 {
        let [n0, n1, n2, r] = rows[x];
        // Slots list exactly the real neighbours.
        let mut listed = vec![n0, n1, n2, r];
        listed.sort_unstable();
        let real: Vec<usize> = mesh.neighbors(x).collect();
        assert_eq!(listed, real, "GPU {x}: slots vs neighbours");
        // Quad is a 4-clique.
        let quad = [x, n0, n1, n2];
        for a in quad {
            for b in quad {
                assert!(a == b || mesh.is_linked(a, b), "quad {quad:?} not a clique");
            }
        }
        // Relay: a neighbour in the other quad, an involution.
        assert!(mesh.is_linked(x, r));
        assert!(!quad.contains(&r));
        assert!(
            [n0, n1, n2].iter().all(|&q| !mesh.is_linked(q, r)),
            "relay {r} of {x} is in x's quad"
        );
        assert_eq!(rows[r][3], x, "relay of relay of {x}");
        // Balance.
        for k in 0..4 {
            assert_eq!(rows[rows[x][k]][k], x, "balance slot {k} at {x}");
        }
        // Cube consistency: the relay's slot k partner is the relay of x's slot k partner.
        for k in 0..3 {
            assert_eq!(rows[r][k], rows[rows[x][k]][3]);
        }
    }
    let [q0, q1] = h.quads();
    assert!(q0.contains(&0));
    let mut all: Vec<usize> = q0.iter().chain(q1.iter()).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..8).collect::<Vec<_>>());
    h.validate(mesh).unwrap();
}

fn perm_strategy() -> impl Strategy<Value = Vec<usize>> {
    Just((0..8).collect::<Vec<usize>>()).prop_shuffle()
}

fn relabeled(perm: &[usize], weights: &[u32]) -> NvlMesh {
    mesh_of_edges(&TEMPLATE, weights).permuted(perm).unwrap()
}

fn edges_of(m: [u8; 8]) -> Vec<(usize, usize)> {
    (0..8)
        .flat_map(|a| ((a + 1)..8).map(move |b| (a, b)))
        .filter(|&(a, b)| m[a] & (1 << b) != 0)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn relabeled_dgx1_always_solves(perm in perm_strategy(), weights in prop::collection::vec(1u32..=2, 16)) {
        let mesh = relabeled(&perm, &weights);
        let h = solve_hcm(&mesh).unwrap();
        check_invariants(&mesh, &h);
        // Quads are the images of the template quads.
        let mut img0: Vec<usize> = (0..4).map(|v| perm[v]).collect();
        let mut img1: Vec<usize> = (4..8).map(|v| perm[v]).collect();
        img0.sort_unstable();
        img1.sort_unstable();
        let [q0, q1] = h.quads();
        prop_assert!((q0.to_vec(), q1.to_vec()) == (img0.clone(), img1.clone()) || (q0.to_vec(), q1.to_vec()) == (img1, img0));
        prop_assert_eq!(classify(&mesh), TopologyClass::HybridCubeMesh(h));
        // Deterministic and weight-independent.
        let unit = relabeled(&perm, &[1]);
        prop_assert_eq!(solve_hcm(&unit).unwrap(), h);
    }

    #[test]
    fn removing_an_edge_is_rejected(perm in perm_strategy(), drop in 0usize..16) {
        let edges: Vec<_> = TEMPLATE.iter().enumerate().filter(|(i, _)| *i != drop).map(|(_, e)| *e).collect();
        let mesh = mesh_of_edges(&edges, &[2]).permuted(&perm).unwrap();
        let res = solve_hcm(&mesh);
        let is_degree = matches!(res, Err(NotHcm::Degree { degree: 3, .. }));
        prop_assert!(is_degree, "{:?}", res);
        prop_assert_eq!(classify(&mesh), TopologyClass::None);
    }

    #[test]
    fn moving_an_edge_is_rejected(perm in perm_strategy(), drop in 0usize..16, add in 0usize..12) {
        let t = template_masks();
        let non_edges: Vec<(usize, usize)> = (0..8).flat_map(|a| ((a + 1)..8).map(move |b| (a, b)))
            .filter(|&(a, b)| t[a] & (1 << b) == 0).collect();
        prop_assert_eq!(non_edges.len(), 12);
        let mut edges: Vec<_> = TEMPLATE.iter().enumerate().filter(|(i, _)| *i != drop).map(|(_, e)| *e).collect();
        edges.push(non_edges[add]);
        let mesh = mesh_of_edges(&edges, &[1]).permuted(&perm).unwrap();
        prop_assert!(solve_hcm(&mesh).is_err());
        prop_assert!(!is_hcm_bruteforce(masks_of(&mesh)));
    }

    /// Degree-preserving double-edge swaps: 4-regular graphs, some HCM, most not.
    #[test]
    fn swapped_graphs_agree_with_bruteforce(perm in perm_strategy(), swaps in prop::collection::vec((0usize..64, 0usize..64, any::<bool>()), 1..4)) {
        let mut m = template_masks();
        for (e1, e2, flip) in swaps {
            let edges = edges_of(m);
            let (a, b) = edges[e1 % edges.len()];
            let (c, d) = edges[e2 % edges.len()];
            let (c, d) = if flip { (d, c) } else { (c, d) };
            // (a,b),(c,d) -> (a,c),(b,d) when that keeps the graph simple.
            let distinct = a != c && a != d && b != c && b != d;
            if distinct && m[a] & (1 << c) == 0 && m[b] & (1 << d) == 0 {
                m[a] &= !(1 << b); m[b] &= !(1 << a); m[c] &= !(1 << d); m[d] &= !(1 << c);
                m[a] |= 1 << c; m[c] |= 1 << a; m[b] |= 1 << d; m[d] |= 1 << b;
            }
        }
        let mesh = mesh_of_edges(&edges_of(m), &[1]).permuted(&perm).unwrap();
        let brute = is_hcm_bruteforce(masks_of(&mesh));
        let solved = solve_hcm(&mesh);
        prop_assert_eq!(solved.is_ok(), brute, "{:?}", solved);
        match solved {
            Ok(h) => check_invariants(&mesh, &h),
            Err(e) => prop_assert_eq!(e, NotHcm::NoQuadPartition),
        }
    }

    #[test]
    fn random_graphs_agree_with_bruteforce(bits in any::<u32>(), dense in any::<u32>()) {
        // Edge (a,b) present when its bit is set; `dense` raises the density to ~4/7.
        let pairs: Vec<(usize, usize)> = (0..8).flat_map(|a| ((a + 1)..8).map(move |b| (a, b))).collect();
        let edges: Vec<_> = pairs.iter().enumerate()
            .filter(|(i, _)| (bits >> i) & 1 == 1 || ((dense >> i) & 1 == 1 && (bits >> ((i + 3) % 28)) & 1 == 0))
            .map(|(_, e)| *e).collect();
        let mesh = mesh_of_edges(&edges, &[1]).permuted(&(0..8).collect::<Vec<_>>()).unwrap();
        let brute = is_hcm_bruteforce(masks_of(&mesh));
        prop_assert_eq!(solve_hcm(&mesh).is_ok(), brute);
        let full = edges.len() == 28;
        prop_assert_eq!(matches!(classify(&mesh), TopologyClass::FullyConnected), full);
    }

    #[test]
    fn other_sizes_classify_by_definition(n in 1usize..=16, bits in prop::collection::vec(any::<bool>(), 120)) {
        let mut k = 0;
        let mut edges = Vec::new();
        for a in 0..n {
            for b in (a + 1)..n {
                if bits[k % bits.len()] || k % 3 == 0 {
                    edges.push((a, b, 1 + (k as u32 % 18)));
                }
                k += 1;
            }
        }
        let mesh = NvlMesh::from_edges(n, &edges).unwrap();
        let full = edges.len() == n * (n - 1) / 2;
        let class = classify(&mesh);
        if full {
            prop_assert_eq!(class, TopologyClass::FullyConnected);
        } else if n != 8 {
            prop_assert_eq!(class, TopologyClass::None);
            prop_assert_eq!(solve_hcm(&mesh), Err(NotHcm::WrongGpuCount { gpus: n }));
        }
    }
}

/// Exhaustive: all 8! numberings of the DGX-1 mesh solve with every invariant.
#[test]
fn every_numbering_of_dgx1_solves() {
    let base = mesh_of_edges(&TEMPLATE, &[1, 2]);
    let mut perm: Vec<usize> = (0..8).collect();
    let mut count = 0usize;
    let mut greedy_failures = 0usize;
    let mut greedy_desc_ok = 0usize;
    loop {
        let mesh = base.permuted(&perm).unwrap();
        let h = solve_hcm(&mesh).unwrap_or_else(|e| panic!("{perm:?}: {e}"));
        check_invariants(&mesh, &h);
        if seed_greedy(&mesh, false).is_none() {
            greedy_failures += 1;
        }
        if let Some(g) = seed_greedy(&mesh, true) {
            greedy_desc_ok += 1;
            g.validate(&mesh).unwrap();
        }
        count += 1;
        if !next_permutation(&mut perm) {
            break;
        }
    }
    assert_eq!(count, 40320);
    // The seed's one-pass greedy slot filling depends on the hash-set iteration order:
    // visiting neighbours in descending order it succeeds, in ascending order it aborts or
    // breaks the balance property on valid meshes (DESIGN.md, "greedy HCM solver"). The
    // complete solver never depends on such an order.
    assert!(
        greedy_failures > 0,
        "expected the ascending greedy pass to fail somewhere"
    );
    eprintln!(
        "seed greedy: ascending order failed on {greedy_failures}/{count} numberings, \
         descending order succeeded on {greedy_desc_ok}/{count}"
    );
}

/// The seed's greedy HCM pass (re-implemented here; its `unordered_set` order is modelled
/// as ascending or descending):
/// `None` where it would abort or produce a table that breaks an invariant.
fn seed_greedy(mesh: &NvlMesh, descending: bool) -> Option<Hcm> {
    let masks = masks_of(mesh);
    let mut neighbors: Vec<Vec<usize>> = (0..8).map(|i| mesh.neighbors(i).collect()).collect();
    let mut hcm = [[usize::MAX; 4]; 8];
    for i in 0..8 {
        let relays: Vec<usize> = (0..8).filter(|&j| masks[i] & masks[j] == 0).collect();
        if neighbors[i].len() != 4 || relays.len() != 1 {
            return None;
        }
        neighbors[i].retain(|&j| j != relays[0]);
        hcm[i][3] = relays[0];
    }
    for i in 0..8 {
        for k in 0..3 {
            let mut filled = false;
            let order: Vec<usize> = if descending {
                neighbors[i].iter().rev().copied().collect()
            } else {
                neighbors[i].clone()
            };
            for j in order {
                if hcm[j][k] == usize::MAX {
                    hcm[i][k] = j;
                    hcm[j][k] = i;
                    filled = true;
                    break;
                }
            }
            if !filled && hcm[i][k] == usize::MAX {
                return None;
            }
            let v = hcm[i][k];
            neighbors[i].retain(|&j| j != v);
        }
    }
    Hcm::from_rows(hcm, mesh).ok()
}

fn next_permutation(p: &mut [usize]) -> bool {
    let Some(i) = (1..p.len()).rev().find(|&i| p[i - 1] < p[i]) else {
        return false;
    };
    let j = (i..p.len()).rev().find(|&j| p[j] > p[i - 1]).unwrap();
    p.swap(i - 1, j);
    p[i..].reverse();
    true
}

#[test]
fn bruteforce_reference_is_sane() {
    assert!(is_hcm_bruteforce(template_masks()));
    let full = [0xffu8; 8].map(|m| m);
    let full: [u8; 8] = std::array::from_fn(|i| full[i] & !(1 << i));
    assert!(!is_hcm_bruteforce(full));
    // C8(1,2) circulant: 4-regular, not HCM.
    let circ: [u8; 8] = std::array::from_fn(|i| {
        [1usize, 2, 6, 7]
            .iter()
            .fold(0u8, |m, d| m | (1 << ((i + d) % 8)))
    });
    assert!(!is_hcm_bruteforce(circ));
    // Cube product K4 x K2 with a twisted matching is still an HCM.
    let mut twisted = template_masks();
    // Replace matching 0-4,1-5 with 0-5,1-4.
    twisted[0] = (twisted[0] & !(1 << 4)) | (1 << 5);
    twisted[5] = (twisted[5] & !(1 << 1)) | 1;
    twisted[1] = (twisted[1] & !(1 << 5)) | (1 << 4);
    twisted[4] = (twisted[4] & !1) | (1 << 1);
    assert!(is_hcm_bruteforce(twisted));
    let mesh = mesh_of_edges(&edges_of(twisted), &[1]);
    check_invariants(&mesh, &solve_hcm(&mesh).unwrap());
}
