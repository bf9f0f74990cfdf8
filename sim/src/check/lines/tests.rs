//! Unit tests of the lines family: the cut and layout, config validation, and the
//! outcome of every rank of a mismatched call.

use super::*;
use inc_proto::lines::SLICE_LINES_ALIGN;

#[test]
fn cut_layout_and_step_names() {
    // The cut at the protocol's alignment is inc-proto's.
    for w in 2..=8 {
        for bytes in [4, 120, 124, 480, 1200, 7000] {
            let c = Cut::new(bytes, w, SLICE_LINES_ALIGN);
            assert_eq!(
                c.sl as u64,
                LinesLayout::slice_lines(bytes, w),
                "{bytes} {w}"
            );
            assert_eq!(c.n as u64, bytes.div_ceil(120));
        }
    }
    let cfg = LinesConfig::new(3, vec![720, 240]);
    let g = Geo::new(&cfg);
    assert_eq!(g.per_parity, 2 * 2 * 2);
    // Every recv and gath line of rank 1 is distinct and inside its parity.
    let mut seen = std::collections::BTreeSet::new();
    for other in [0, 2] {
        for j in 0..2 {
            assert!(seen.insert(g.recv(1, other, j, 2)));
            assert!(seen.insert(g.gath(1, other, j, 2)));
        }
    }
    assert_eq!(
        seen.iter().copied().collect::<Vec<_>>(),
        (0..8).collect::<Vec<_>>()
    );
    assert!(g.line(2, 1, 7, 0) < Lines::new(&cfg).unwrap().0.abort_loc(2));
    assert_eq!(Lines::new(&cfg).unwrap().0.abort_loc(0) + 1, g.per_rank);
    let names: Vec<&str> = PROGRAM.iter().map(|s| s.name()).collect();
    assert_eq!(names, inc_proto::lines::STEP_NAMES);
    let prog: Vec<&str> = crate::program::inc::two_shot_lines()
        .iter()
        .map(|s| s.name())
        .collect();
    assert_eq!(names, prog);
    assert_eq!(
        describe_prov(prov(2, 5, WHAT_GATH, 7)),
        "r2 call 5 reduced line 7"
    );
    assert_eq!(describe_prov(0), "initial zero (never written)");
    assert_ne!(input(0, 0, 0, 1), 0);
    assert_eq!(input(0, 0, 1, 1), 0);
    assert_ne!(fold(fold(1, 2), 3), fold(fold(2, 1), 3));
}

#[test]
fn bad_configs_are_rejected() {
    assert!(check_lines(&LinesConfig::new(1, vec![120]), 1, 0).is_err());
    assert!(check_lines(&LinesConfig::new(9, vec![120]), 1, 0).is_err());
    assert!(check_lines(&LinesConfig::new(2, vec![]), 1, 0).is_err());
    assert!(check_lines(&LinesConfig::new(2, vec![6]), 1, 0).is_err());
    assert!(check_lines(&LinesConfig::new(2, vec![120 * 64]), 1, 0).is_err());
    let mut c = LinesConfig::new(2, vec![120]);
    c.fault = Some(LinesFault::Mismatch {
        rank: 0,
        call: 0,
        more: false,
    });
    assert!(check_lines(&c, 1, 0).is_err(), "'less' on a one-line call");
    c.fault = Some(LinesFault::Kill { rank: 2, call: 0 });
    assert!(check_lines(&c, 1, 0).is_err());
    c.fault = Some(LinesFault::OtherDtype { rank: 0, call: 1 });
    assert!(check_lines(&c, 1, 0).is_err());
    c.fault = None;
    c.slice_align = 0;
    assert!(check_lines(&c, 1, 0).is_err());
}

/// A call one rank makes with another count (one line more or less: another signature,
/// and here another slice length) or another dtype (same bytes and cut) ends on every
/// rank with CALL_MISMATCH or PEER_ABORT — at least one CALL_MISMATCH, never a result,
/// never a hang (the run's own checks: no violation) — and every later call fails too.
#[test]
fn mismatched_calls_end_in_call_mismatch_or_peer_abort_everywhere() {
    use crate::check::oracle::CallOutcome;
    use crate::sched::{chooser_for, Dfs};
    use crate::types::{ERR_CALL_MISMATCH, ERR_PEER_ABORT};
    for world in 2..=5 {
        // The calls have `world` lines (slices of 1); one more or one less makes slices of
        // 2 or (world - 1 lines) still 1.
        let bytes = 120 * world as u64;
        let mut cfg = LinesConfig::new(world, vec![bytes; 4]);
        cfg.blocks = vec![2, 1];
        let faults = [
            LinesFault::Mismatch {
                rank: 0,
                call: 1,
                more: true,
            },
            LinesFault::Mismatch {
                rank: world - 1,
                call: 2,
                more: false,
            },
            LinesFault::OtherDtype {
                rank: world / 2,
                call: 1,
            },
        ];
        for fault in faults {
            let call = match fault {
                LinesFault::Mismatch { call, .. } | LinesFault::OtherDtype { call, .. } => call,
                _ => unreachable!(),
            };
            cfg.fault = Some(fault);
            assert!(cfg.validate().is_ok(), "{fault:?}");
            let (fam, set) = Lines::new(&cfg).unwrap();
            let mut run = Run::new(fam, set);
            let mut dfs = Dfs::default();
            let pct = super::super::pct_steps(&mut run);
            for seed in 0..20 {
                run.begin(chooser_for(&run.set, seed, &mut dfs, pct), None);
                let v = run.execute();
                assert!(v.is_empty(), "world {world} {fault:?} seed {seed}: {v:?}");
                let mut mismatch = 0;
                for (r, st) in run.ranks.iter().enumerate() {
                    assert_eq!(st.results.len(), 4, "r{r} finished every call");
                    for (k, res) in st.results.iter().enumerate().skip(call) {
                        let code = match res {
                            CallOutcome::Err(c) => *c,
                            CallOutcome::Ok(_) => panic!("r{r} call {k} completed: {fault:?}"),
                        };
                        assert!(
                            code == ERR_CALL_MISMATCH || code == ERR_PEER_ABORT,
                            "world {world} {fault:?} seed {seed}: r{r} call {k} code {code}"
                        );
                        mismatch += usize::from(k == call && code == ERR_CALL_MISMATCH);
                    }
                }
                assert!(mismatch >= 1, "world {world} {fault:?} seed {seed}");
            }
        }
    }
}
