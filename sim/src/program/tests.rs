//! Unit tests of the programs: step names against PROTOCOL.md and inc-proto.

use super::*;

#[test]
fn inc_names_match_protocol_md() {
    assert_eq!(
        step_names(Algo::OneShot),
        ["Prologue", "PushIn", "Barrier", "ReduceRecv", "Epilogue"]
    );
    assert_eq!(
        step_names(Algo::TwoShot),
        [
            "Prologue",
            "Scatter",
            "Barrier",
            "ReduceSlice",
            "GatherPrev",
            "Barrier",
            "Gather",
            "Epilogue"
        ]
    );
    assert_eq!(
        step_names(Algo::Hcm),
        [
            "Prologue",
            "CopyIn",
            "Barrier",
            "QuadReduce",
            "Barrier",
            "RelayReduce",
            "Epilogue"
        ]
    );
}

#[test]
fn two_shot_zc_names_match_protocol_md() {
    assert_eq!(
        two_shot_zc_step_names(),
        [
            "Prologue",
            "Barrier",
            "ReduceStore",
            "EndBarrier",
            "Epilogue"
        ]
    );
    assert_eq!(
        zero_copy_steps(Protocol::Inc, Algo::TwoShot),
        inc::two_shot_zc()
    );
    assert_eq!(
        zero_copy_steps(Protocol::Inc, Algo::OneShot),
        inc::one_shot_zc()
    );
    assert_eq!(
        zero_copy_steps(Protocol::Seed, Algo::OneShot),
        seed::one_shot()
    );
    assert!(zero_copy_steps(Protocol::Inc, Algo::Hcm).is_empty());
    assert!(zero_copy_steps(Protocol::Seed, Algo::TwoShot).is_empty());
}

#[test]
fn one_shot_zc_names_match_protocol_md() {
    assert_eq!(
        one_shot_zc_step_names(),
        [
            "Prologue",
            "CopyIn",
            "Barrier",
            "ReduceAll",
            "EndBarrier",
            "Epilogue"
        ]
    );
    // The copy-in one-shot is the push form: its stores come before the start barrier,
    // its fold after it, and it has no end barrier (the parity halves stand in for it).
    let p = inc::one_shot();
    let at = |s: Step| p.iter().position(|&x| x == s);
    let start = Step::Barrier {
        kind: BarrierKind::Start,
        set: PeerSet::Others,
    };
    assert_eq!(at(Step::PushIn), Some(1));
    assert_eq!(at(start), Some(2));
    assert_eq!(at(Step::ReduceRecv), Some(3));
    assert!(!p.contains(&Step::EndBarrier) && !p.contains(&Step::CopyIn));
    assert!(inc::one_shot_zc().contains(&Step::EndBarrier));
    // The seed's one-shot is unchanged (pull, no end barrier).
    assert!(seed::one_shot().contains(&Step::ReduceAll));
    assert!(!seed::one_shot().contains(&Step::PushIn));
    assert_eq!(Step::PushIn.describe(), "PushIn");
    assert_eq!(Step::ReduceRecv.describe(), "ReduceRecv");
}

#[test]
fn two_shot_zcp_names_match_protocol_md() {
    assert_eq!(
        two_shot_zcp_step_names(),
        [
            "Prologue",
            "Scatter",
            "Barrier",
            "ReduceStore",
            "Forward",
            "EndBarrier",
            "Epilogue"
        ]
    );
    assert_eq!(ZcForm::Push.steps(), inc::two_shot_zcp());
    assert_eq!(ZcForm::default().steps(), inc::two_shot_zc());
    assert_eq!(
        inc::two_shot_zcp()[2],
        Step::Barrier {
            kind: BarrierKind::Start,
            set: PeerSet::Others
        }
    );
}

#[test]
fn programs_match_inc_proto_step_lists() {
    for a in Algo::ALL {
        assert_eq!(step_names(a), inc_proto::step_names(a), "{a}");
    }
    assert_eq!(one_shot_zc_step_names(), inc_proto::steps::ONE_SHOT_ZC);
    assert_eq!(two_shot_zc_step_names(), inc_proto::steps::TWO_SHOT_ZC);
    assert_eq!(two_shot_zcp_step_names(), inc_proto::steps::TWO_SHOT_ZCP);
}

#[test]
fn two_shot_with_gather_prev_matches_inc_proto() {
    let names: Vec<_> = inc::two_shot().iter().map(Step::name).collect();
    assert_eq!(names, inc_proto::steps::TWO_SHOT);
    // GatherPrev: after ReduceSlice, before the mid barrier (the latest place the
    // kernel allows: its copy blocks finish before every mid flag).
    let i = names.iter().position(|&n| n == "GatherPrev");
    assert_eq!(i, Some(4));
    assert_eq!(inc::two_shot()[3], Step::ReduceSlice);
    assert_eq!(
        inc::two_shot()[5],
        Step::Barrier {
            kind: BarrierKind::Mid,
            set: PeerSet::Others
        }
    );
    assert!(!seed::two_shot().contains(&Step::GatherPrev));
}

#[test]
fn push_program_matches_the_push_step_names() {
    assert_eq!(step_names(Algo::PushOneShot), crate::push::PUSH_STEP_NAMES);
}

#[test]
fn two_shot_lines_matches_inc_proto() {
    let names: Vec<_> = inc::two_shot_lines().iter().map(Step::name).collect();
    assert_eq!(names, inc_proto::lines::STEP_NAMES);
}

#[test]
fn seed_has_no_end_barrier() {
    for a in Algo::ALL {
        assert!(!seed_steps(a).contains(&Step::EndBarrier));
    }
    fn seed_steps(a: Algo) -> Vec<Step> {
        steps(Protocol::Seed, a)
    }
}

#[test]
fn peer_sets() {
    assert_eq!(PeerSet::Others.members(1, 3, None), [0, 2]);
    assert_eq!(PeerSet::All.members(1, 3, None), [0, 1, 2]);
    let row = [1, 2, 3, 4];
    assert_eq!(PeerSet::Quad.members(0, 8, Some(&row)), [1, 2, 3]);
    assert_eq!(PeerSet::Relay.members(0, 8, Some(&row)), [4]);
}
