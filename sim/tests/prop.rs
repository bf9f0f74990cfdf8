#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! proptest: the inc protocol shows zero violations over random scenarios and schedules
//! (world 2..8, sizes with tails, 1..4 blocks changing between calls, 1..4 calls, all
//! algorithms incl. hcm on the 8-rank cube mesh). More cases:
//! `PROPTEST_CASES=500 cargo test --release -p inc-sim --test prop`.

use inc_sim::{check, Algo, Protocol, Scheduler, SimConfig};
use proptest::prelude::*;

fn scenario() -> impl Strategy<Value = SimConfig> {
    (
        0..3usize,
        2..=8usize,
        1..=40usize,
        proptest::collection::vec(1..=4usize, 1..4),
        1..=4usize,
        1..=2usize,
        0..3usize,
    )
        .prop_map(|(a, world, words, blocks, calls, tpb, sched)| {
            let algo = Algo::ALL[a];
            let world = if algo == Algo::Hcm { 8 } else { world };
            let mut c = SimConfig::new(Protocol::Inc, algo, world, words * 4, calls);
            c.blocks = blocks;
            c.threads_per_block = tpb;
            c.scheduler = match sched {
                0 => Scheduler::Random,
                1 => Scheduler::Adversarial {
                    slow_rank: words % world,
                    stall: None,
                },
                _ => Scheduler::Adversarial {
                    slow_rank: 0,
                    stall: Some((world - 1, 0)),
                },
            };
            c
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn inc_protocol_has_no_violations(c in scenario(), seed in any::<u64>()) {
        let r = check(&c, 10, seed).unwrap();
        prop_assert!(r.violations.is_empty(), "{:?}\n{}", c, r.violations[0].render());
    }
}
