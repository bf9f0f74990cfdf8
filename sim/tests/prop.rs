#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! proptest: the inc protocol shows zero violations over random scenarios and PCT
//! schedules (the default scheduler; depth 1..=4): world 2..8, sizes from one word to
//! 64 KB per rank with tails, 1..4 blocks changing between calls, 1..4 consecutive calls,
//! all pull algorithms incl. hcm on the 8-rank cube mesh; a few cases use the adversarial
//! scheduler. More cases:
//! `PROPTEST_CASES=500 cargo test --release -p inc-sim --test prop`.

use inc_sim::{check, Algo, Protocol, RandomMode, Scheduler, SimConfig};
use proptest::prelude::*;

/// Bytes per rank: small (tails, fewer chunks than blocks), medium, and up to 64 KB.
fn bytes() -> impl Strategy<Value = usize> {
    prop_oneof![
        2 => (1..=40usize).prop_map(|w| w * 4),
        1 => (41..=1024usize).prop_map(|w| w * 4),
        1 => (1025..=16384usize).prop_map(|w| w * 4),
    ]
}

fn scenario() -> impl Strategy<Value = SimConfig> {
    (
        0..3usize,
        2..=8usize,
        bytes(),
        proptest::collection::vec(1..=4usize, 1..4),
        1..=4usize,
        1..=2usize,
        0..6usize,
    )
        .prop_map(|(a, world, bytes, blocks, calls, tpb, sched)| {
            let algo = Algo::ALL[a];
            let world = if algo == Algo::Hcm { 8 } else { world };
            let mut c = SimConfig::new(Protocol::Inc, algo, world, bytes, calls);
            c.blocks = blocks;
            c.threads_per_block = tpb;
            match sched {
                0..=3 => c.random = RandomMode::Pct { depth: sched + 1 },
                4 => {
                    c.scheduler = Scheduler::Adversarial {
                        slow_rank: bytes % world,
                        stall: None,
                    }
                }
                _ => {
                    c.scheduler = Scheduler::Adversarial {
                        slow_rank: 0,
                        stall: Some((world - 1, 0)),
                    }
                }
            }
            c
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn inc_protocol_has_no_violations(c in scenario(), seed in any::<u64>()) {
        // Fewer schedules for large scenarios keep the default run to seconds.
        let n = if c.bytes * c.world * c.calls > 64 * 1024 { 3 } else { 10 };
        let r = check(&c, n, seed).unwrap();
        prop_assert!(r.violations.is_empty(), "{:?}\n{}", c, r.violations[0].render());
    }
}
