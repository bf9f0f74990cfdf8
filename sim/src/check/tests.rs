//! Unit tests of the checker's internals.

use super::engine::replay_pick;
use super::oracle::*;
use super::shrink::units;
use super::*;
use crate::program::Protocol;
use crate::sched::{Chooser, Dfs};

#[test]
fn mix_is_order_sensitive() {
    assert_ne!(
        fold_over([1, 2, 3].into_iter()),
        fold_over([2, 1, 3].into_iter())
    );
    assert_eq!(describe_tag(tag(2, 5, WHAT_INPUT)), "r2 call 5 input");
    assert_eq!(describe_tag(0), "initial zero (never written)");
}

#[test]
fn dfs_enumerates_all_sequences() {
    let mut d = Dfs::default();
    let mut seen = Vec::new();
    loop {
        let s = d.next_script();
        // A fake run with two choice points of 2 and 3 options.
        let c0 = s.first().copied().unwrap_or(0);
        let c1 = s.get(1).copied().unwrap_or(0);
        seen.push((c0, c1));
        if !d.advance(vec![(c0, 2), (c1, 3)]) {
            break;
        }
    }
    assert_eq!(seen.len(), 6);
}

#[test]
fn replay_drops_decisions_that_are_not_enabled() {
    let b = |rank| Decision::Block { rank, block: 0 };
    let script = [b(1), Decision::Value(2), b(0), Decision::Value(1), b(2)];
    let units_of = units(&script);
    assert_eq!(units_of, [(0, 2), (2, 4), (4, 5)]);
    // Only rank 0 and 2 are enabled: b(1) and its value are dropped.
    let mut pos = 0;
    let enabled = |d: Decision| [b(0), b(2)].iter().position(|&x| x == d);
    assert_eq!(replay_pick(&script, &mut pos, enabled), Some(0));
    assert_eq!(pos, 3);
    let mut ch = Chooser::Replay {
        script: script.to_vec(),
        pos,
    };
    assert_eq!(ch.value(1), 0, "a single-valued load consumes nothing");
    assert_eq!(ch.value(5), 1);
    assert_eq!(ch.value(5), 0, "next is an action: newest");
    let Chooser::Replay { pos, .. } = ch else {
        unreachable!()
    };
    let mut pos = pos;
    assert_eq!(replay_pick(&script, &mut pos, enabled), Some(1));
    // Used up: the caller takes the first enabled action.
    assert_eq!(replay_pick(&script, &mut pos, enabled), None);
}

#[test]
fn schedule_text_round_trips() {
    let d = vec![
        Decision::Block { rank: 1, block: 2 },
        Decision::Value(3),
        Decision::Land {
            rank: 0,
            block: 1,
            store: 17,
        },
        Decision::Timeout { rank: 7, block: 0 },
    ];
    let t = format_schedule(&d);
    assert_eq!(t, "b1.2 v3 l0.1@17 t7.0");
    assert_eq!(parse_schedule(&t).ok(), Some(d));
    assert!(parse_schedule("b1").is_err());
    assert!(parse_schedule("x1.2").is_err());
    assert!(parse_schedule("l1.2@").is_err());
}

#[test]
fn bad_configs_are_rejected() {
    let mut c = SimConfig::new(Protocol::Inc, Algo::Hcm, 4, 64, 1);
    assert!(check(&c, 1, 0).is_err());
    c.world = 9;
    assert!(check(&c, 1, 0).is_err());
    let mut c = SimConfig::new(Protocol::Inc, Algo::OneShot, 2, 6, 1);
    assert!(check(&c, 1, 0).is_err());
    c.bytes = 64;
    c.blocks = vec![0];
    assert!(check(&c, 1, 0).is_err());
    c.blocks = vec![2];
    c.fault = Some(Fault::Kill { rank: 5, call: 0 });
    assert!(check(&c, 1, 0).is_err());
}
