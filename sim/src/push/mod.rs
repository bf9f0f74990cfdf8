//! The push one-shot for small messages, LL protocol (NCCL "low latency" style;
//! PROTOCOL.md "push one-shot"): the shared layout, line and tag helpers and the step list
//! (defined in inc-proto, re-exported here), the protocol checker ([`check_push`],
//! [`replay_push`]: the push family of the checker engine, [`check`](mod@crate::check));
//! the CPU data path is [`crate::cpu::CpuRank::push_allreduce`].
//!
//! Every 8 bytes of a receive slot carry 4 bytes of data and the call's 32-bit epoch as
//! a tag (`{data, e}`), so the data carries its own readiness: a writer stores its chunks
//! as tagged 16-byte lines straight into `slot[e % 2][me]` of every peer (one relaxed
//! 16-byte store per line, no fence, no flag), and a reader polls its own slots until
//! every tag of a chunk reads `e`, then folds in rank order. A header line
//! `{sig, e, sig, e}` per (parity, writer) carries the call signature, so ranks that make
//! different calls at the same epoch fail with `CALL_MISMATCH` instead of hanging or
//! finishing silently. Two parity buffers need no clearing: a stale line carries an older
//! tag. The protocol relies on 8-byte single-copy atomicity of each `{data, tag}` half.
//!
//! ```
//! use inc_sim::push::{check_push, PushConfig, PushWeakening};
//! // Clean: 4 consecutive calls of varying size on 3 ranks, random schedules.
//! let cfg = PushConfig::new(3, vec![64, 16, 48, 32]);
//! assert!(check_push(&cfg, 20, 1)?.violations.is_empty());
//! // One buffer instead of two parities: a fast peer's next call overwrites unread lines.
//! let mut bad = PushConfig::new(2, vec![32, 32, 32, 32]);
//! bad.weaken = Some(PushWeakening::OneBuffer);
//! assert!(!check_push(&bad, 200, 1)?.violations.is_empty());
//! # Ok::<(), inc_sim::SimError>(())
//! ```

pub use crate::check::push::{
    check_push, replay_push, PushConfig, PushFault, PushScheduler, PushWeakening,
};

pub use inc_proto::push::*;
