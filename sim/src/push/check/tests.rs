//! Unit tests of the push checker's internals.

#[cfg(test)] // (the whole file is the parent's test module)
use super::*;
use crate::check::tag;

#[test]
fn bad_configs_are_rejected() {
    assert!(check_push(&PushConfig::new(0, vec![16]), 1, 0).is_err());
    assert!(check_push(&PushConfig::new(9, vec![16]), 1, 0).is_err());
    assert!(check_push(&PushConfig::new(2, vec![]), 1, 0).is_err());
    assert!(check_push(&PushConfig::new(2, vec![6]), 1, 0).is_err());
    let mut c = PushConfig::new(2, vec![16]);
    c.fault = Some(PushFault::Mismatch {
        rank: 0,
        call: 0,
        more: false,
    });
    assert!(check_push(&c, 1, 0).is_err(), "'less' on a one-chunk call");
    c.fault = Some(PushFault::Kill { rank: 2, call: 0 });
    assert!(check_push(&c, 1, 0).is_err());
    c.fault = Some(PushFault::OtherOp { rank: 0, call: 0 });
    c.barrier_calls = vec![0];
    assert!(check_push(&c, 1, 0).is_err(), "mismatch on a barrier call");
}

#[test]
fn one_rank_and_tags() {
    let r = check_push(&PushConfig::new(1, vec![64, 16, 48, 4]), 5, 3).unwrap();
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(describe_tag(tag(1, 2, WHAT_LINE)), "r1 call 2 line data");
    assert_ne!(half_value(0, 0, 0, 0), 0);
    // The location layout (`Geo`) is tested next to it, in `run`.
}
