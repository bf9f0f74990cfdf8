//! The report's columns of a cuda run: inc specs per mode, NCCL beside them, and the
//! world-1 floors with virtual ranks.

use super::super::report::{Mode, Source};
use super::super::Plan;

/// What one column measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ColKind {
    /// `plan.specs[k]` through its own communicator.
    Inc(usize),
    /// NCCL through inc's `Path::Nccl` on the same buffers.
    Nccl,
    /// NCCL on window-registered symmetric buffers.
    NcclSymm,
    /// NCCL with one rank on rank 0's GPU (measured by rank 0 alone, after the rest).
    Floor {
        /// On symmetric buffers.
        symm: bool,
    },
    /// Not measured, and why.
    Na(String),
}

/// One column of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Col {
    /// Series name.
    pub name: String,
    /// inc or NCCL.
    pub source: Source,
    /// eager or graph.
    pub mode: Mode,
    /// What it measures.
    pub kind: ColKind,
}

/// Name of the world-1 floor columns.
pub(crate) const FLOOR: &str = "nccl-w1";
/// Name of the symmetric world-1 floor column.
pub(crate) const FLOOR_SYMM: &str = "nccl-symm-w1";

/// The columns of a cuda run in report order: per mode the inc specs, then with
/// `--compare nccl` `nccl` and `nccl-symm` (n/a with the reason when they cannot run),
/// and with virtual ranks the world-1 floors. `nccl` is libnccl's version or why it is
/// unusable.
pub(crate) fn columns(plan: &Plan, virtual_ranks: bool, nccl: &Result<i32, String>) -> Vec<Col> {
    let mut cols = Vec::new();
    for &mode in &plan.modes {
        for (k, spec) in plan.specs.iter().enumerate() {
            cols.push(Col {
                name: spec.name.clone(),
                source: Source::Inc,
                mode,
                kind: ColKind::Inc(k),
            });
        }
    }
    if !plan.compare_nccl {
        return cols;
    }
    let col = |name: &str, mode, kind| Col {
        name: name.into(),
        source: Source::Nccl,
        mode,
        kind,
    };
    for &mode in &plan.modes {
        let (plain, symm) = match (virtual_ranks, nccl) {
            (true, _) => {
                let why = "n/a (needs a GPU per rank): this group has virtual ranks".to_string();
                (ColKind::Na(why.clone()), ColKind::Na(why))
            }
            (false, Err(e)) => (ColKind::Na(e.clone()), ColKind::Na(e.clone())),
            (false, Ok(v)) => (
                ColKind::Nccl,
                inc_comm::nccl::symm_unsupported(*v).map_or(ColKind::NcclSymm, ColKind::Na),
            ),
        };
        cols.push(col("nccl", mode, plain));
        cols.push(col("nccl-symm", mode, symm));
    }
    if virtual_ranks {
        for &mode in &plan.modes {
            let (plain, symm) = match nccl {
                Err(e) => (ColKind::Na(e.clone()), ColKind::Na(e.clone())),
                Ok(v) => (
                    ColKind::Floor { symm: false },
                    inc_comm::nccl::symm_unsupported(*v)
                        .map_or(ColKind::Floor { symm: true }, ColKind::Na),
                ),
            };
            cols.push(col(FLOOR, mode, plain));
            cols.push(col(FLOOR_SYMM, mode, symm));
        }
    }
    cols
}

#[cfg(test)]
mod tests {
    use inc_comm::{CommOptions, DType, ReduceOp};

    use super::super::super::{parse_algos, Launch};
    use super::*;

    fn plan(compare: bool, modes: Vec<Mode>) -> Plan {
        Plan {
            specs: parse_algos("auto,one-shot,two-shot").unwrap(),
            compare_nccl: compare,
            modes,
            dtype: DType::Bf16,
            op: ReduceOp::Sum,
            sizes: vec![1024, 2048],
            iters: 3,
            warmup: 1,
            graph_calls: 50,
            opts: CommOptions::default(),
            launch: Launch::Threads(2),
            notes: vec![],
        }
    }
    #[test]
    fn columns_without_compare_are_the_specs_per_mode() {
        let p = plan(false, vec![Mode::Graph, Mode::Eager]);
        let c = columns(&p, true, &Ok(22703));
        assert_eq!(c.len(), 6);
        assert!(c.iter().all(|c| c.source == Source::Inc));
        assert_eq!(c[0].mode, Mode::Graph);
        assert_eq!(c[3].kind, ColKind::Inc(0));
        assert_eq!(c[5].name, "two-shot");
    }

    #[test]
    fn nccl_columns_follow_the_group_and_the_library() {
        let p = plan(true, vec![Mode::Eager]);
        // A GPU per rank, NCCL 2.27: both measured, no floors.
        let c = columns(&p, false, &Ok(22703));
        let kinds: Vec<&ColKind> = c.iter().map(|c| &c.kind).collect();
        assert_eq!(kinds[3..], [&ColKind::Nccl, &ColKind::NcclSymm]);
        // Older NCCL: symm n/a with the version.
        let c = columns(&p, false, &Ok(22106));
        assert!(matches!(&c[4].kind, ColKind::Na(w) if w.contains("2.21.6")));
        assert_eq!(c[3].kind, ColKind::Nccl);
        // No libnccl: both n/a with the reason.
        let c = columns(&p, false, &Err("libnccl not found".into()));
        assert!(c[3..]
            .iter()
            .all(|c| matches!(&c.kind, ColKind::Na(w) if w.contains("libnccl"))));
        // Virtual ranks: n/a (needs a GPU per rank) + the world-1 floors.
        let c = columns(&p, true, &Ok(22703));
        assert_eq!(c.len(), 7);
        assert!(matches!(&c[3].kind, ColKind::Na(w) if w.contains("needs a GPU per rank")));
        assert_eq!(c[5].name, FLOOR);
        assert_eq!(c[5].kind, ColKind::Floor { symm: false });
        assert_eq!(c[6].kind, ColKind::Floor { symm: true });
        assert!(c[3..].iter().all(|c| c.source == Source::Nccl));
        // Virtual ranks, old NCCL: the symmetric floor is n/a.
        let c = columns(&p, true, &Ok(22106));
        assert!(matches!(&c[6].kind, ColKind::Na(_)));
    }
}
