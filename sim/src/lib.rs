//! inc-sim: a CPU simulator of the allreduce signal protocol (weak memory, chosen
//! interleavings), its race/deadlock checker, and a CPU data backend.
//!
//! - [`types`]: the workspace's shared vocabulary ([`DType`], [`ReduceOp`], [`Algo`],
//!   [`call_sig`], [`PadLayout`] byte offsets, `ERR_*` codes, [`ErrorRecord`]), defined in
//!   inc-proto (the one source of protocol constants) and re-exported here.
//! - [`program`]: every algorithm's protocol as a list of [`program::Step`]s;
//!   `program::inc::*` is PROTOCOL.md v1 (the kernels mark `// STEP <algo> <n> <Name>`,
//!   compared against [`program::step_names`]; the copy-in one-shot is a push form
//!   ([`program::inc::one_shot`]), the zero-copy one-shot keeps the pull form,
//!   [`program::inc::one_shot_zc`], compared against [`program::one_shot_zc_step_names`];
//!   the zero-copy two-shot for symmetric tensors, [`program::inc::two_shot_zc`], against
//!   [`program::two_shot_zc_step_names`], and its push form [`program::inc::two_shot_zcp`]
//!   against [`program::two_shot_zcp_step_names`]),
//!   `program::seed::*` is what the seed does.
//! - [`model`]: the weak-memory model (pending stores landing when the scheduler decides,
//!   release/acquire via vector clocks, `.nc` loads, fences, atomics). Its docs list what it
//!   does and does not capture.
//! - [`check()`]: runs N schedules (seeded PCT — the default —, uniform random walk,
//!   exhaustive bounded-depth, adversarial slow rank / stalled block) of a [`SimConfig`]
//!   on the one checker engine (the barrier protocols and the LL push protocol are its two
//!   protocol families) and checks each run: exact results vs the
//!   reference fold order (`wrong-result`), data tags on every peer read (`stale-read`),
//!   `deadlock`, `seq-mismatch` (injected mismatched calls / epoch skew must be detected),
//!   `timeout` (a killed rank must make all others stop with an error; the simulated timeout
//!   fires only when nothing else can move, plus a step budget against livelock).
//! - [`sched`]: scheduling strategies behind a small trait ([`sched::Strategy`]: pick one
//!   of the enabled events, one per block and per block's store buffer), PCT
//!   ([`sched::Pct`]), the default of [`Scheduler::Random`] ([`RandomMode`]), and the
//!   chooser every checker run consults (walk, adversarial, exhaustive, replay).
//! - [`push`]: the push one-shot, LL protocol (NCCL low-latency style, PROTOCOL.md "push
//!   one-shot"): its region layout ([`push::PushLayout`]: header lines and two parity
//!   buffers of `{data, epoch}` tagged lines), step names, and its checker
//!   [`push::check_push`] (the checker engine's push family, also reached through
//!   [`check()`] with `Algo::PushOneShot`; PCT by default; violations replay with
//!   [`push::replay_push`] and are shrunk): clean over world 2..8, varying sizes, v1
//!   calls in between, 8-byte halves landing separately, kill/mismatch/skew faults; one
//!   buffer instead of two, a skipped header check, 4-byte (not 8-byte) atomicity and a
//!   one-tag-per-line reader are each caught.
//!   The CPU backend runs it too ([`cpu::CpuRank::push_allreduce`]).
//! - [`lines`]: the two-shot of lines (PROTOCOL.md "two-shot of lines"): inc-proto's
//!   layout and step list re-exported, and its checker [`lines::check_lines`] (the checker
//!   engine's lines family, also reached through [`check()`] with `Algo::TwoShot` and
//!   [`SimConfig::lines`]; replay with [`lines::replay_lines`]): clean over world 2..5,
//!   slow ranks and mismatched calls; a line whose flag lands apart from its payload, one
//!   parity instead of two and flags left uncleared are each caught.
//! - [`cpu`]: the same inc protocol on real f32/f16/bf16 data, one thread per block, real
//!   `AtomicU64` flags (Release/Acquire), wall-clock bounded waits and the abort word;
//!   ranks are threads ([`cpu::Region::new_local`]) or processes (`/dev/shm` +
//!   memmap2). inc-comm's `sim` backend. The zero-copy two-shot on symmetric tensors runs
//!   there too ([`cpu::CpuRank::allreduce_symmetric`]).
//!
//! ```
//! use inc_sim::{check, Algo, Protocol, Scheduler, SimConfig, ViolationKind};
//! // The seed's one-shot: a slow peer still reads while the next call's copy-in lands.
//! let mut cfg = SimConfig::new(Protocol::Seed, Algo::OneShot, 2, 64, 2);
//! cfg.blocks = vec![1];
//! cfg.scheduler = Scheduler::Adversarial { slow_rank: 1, stall: None };
//! let report = check(&cfg, 1, 7)?;
//! assert_eq!(report.violations[0].kind, ViolationKind::StaleRead);
//! // Ours: no violation under the same schedule.
//! cfg.protocol = Protocol::Inc;
//! assert!(check(&cfg, 1, 7)?.violations.is_empty());
//! # Ok::<(), inc_sim::SimError>(())
//! ```
//!
//! ## The seed's missing end barrier, as found
//!
//! `inc sim --protocol seed --algo one-shot --world 2 --bytes 64 --calls 2 --blocks 1
//! --scheduler adversarial --slow-rank 1 --schedules 1 --seed 7` (rank 1 lags):
//!
//! ```text
//! stale-read: r1 b0 call 0: ReduceAll read r0.buf chunk 0: found r0 call 1 input, expected r0 call 0 input (overwritten by a later call)
//!   #0     r0    call 0: launch kernel (1 blocks)
//!   #0     r1    call 0: launch kernel (1 blocks)
//!   #6     r0 b0 call 0: 1 CopyIn done
//!   #7     r0 b0 call 0: signal r0: atomicAdd_system(+1)
//!   #13    r1 b0 call 0: 1 CopyIn done
//!   #14    r1 b0 call 0: signal r0: atomicAdd_system(+1)
//!   #15    r0 b0 call 0: signal r1: atomicAdd_system(+1)
//!   #17    r0 b0 call 0: wait r0: counter 1 -> CAS down, passed
//!   #18    r0 b0 call 0: wait r1: counter 1 -> CAS down, passed
//!   #19    r0 b0 call 0: 2 Barrier(start, all) done
//!   #24    r0 b0 call 0: 3 ReduceAll done
//!   #25    r0 b0 call 0: 4 Epilogue done
//!   #25    r0    call 0: kernel complete (ok)
//!   #25    r0    call 1: launch kernel (1 blocks)
//!   #31    r0 b0 call 1: 1 CopyIn done
//!   #32    r0 b0 call 1: signal r0: atomicAdd_system(+1)
//!   #33    r1 b0 call 0: signal r1: atomicAdd_system(+1)
//!   #35    r1 b0 call 0: wait r0: counter 1 -> CAS down, passed
//!   #36    r1 b0 call 0: wait r1: counter 1 -> CAS down, passed
//!   #37    r1 b0 call 0: 2 Barrier(start, all) done
//!   #38    r1 b0 call 0: !! ReduceAll read r0.buf chunk 0: found r0 call 1 input, expected r0 call 0 input (overwritten by a later call)
//!   shrunk from 23 to 21 events (50 -> 39 decisions, 85 replays)
//!   reproduce with schedule seed 7
//! ```
//!
//! Rank 0 finished call 0, and its call-1 copy-in (a memcpy before the kernel in the seed)
//! overwrote the buffer that rank 1 had not read yet: nothing in the seed's protocol makes
//! rank 0 wait for its readers before the next call (the counting semaphore can even let a
//! lagging rank pass its call-e barrier on a call-e+1 signal). Two-shot shows the same race
//! in its Gather. The inc protocol writes call e into parity half e % 2, and a rank can
//! only reach call e+2 after every reader passed a barrier of call e+1.
//!
//! ## Deep races at real sizes: PCT
//!
//! A uniform random walk over enabled actions finds the seed's race at 64 B per rank but
//! not at 4 KB: the race needs one rank to lag a whole call behind, and the lag a walk
//! builds up shrinks relative to the work as the message grows. The default scheduler is
//! PCT (probabilistic concurrency testing, Burckhardt et al., ASPLOS 2010) adapted to the
//! weak memory model ([`sched`]): every block *and every block's store buffer* is a
//! thread with a random priority, the highest-priority enabled one runs, and `depth - 1`
//! random steps demote the running thread. A low-priority block lags as long as anyone
//! else can move (the seed's race, depth 1); a low-priority store buffer keeps its stores
//! pending until its block waits or fences (stale reads, and relaxed stores overtaking
//! each other since a buffer lands its stores in random order). A depth-`d` bug is found
//! with probability `>= 1/(n k^(d-1))` per schedule, `n` = 2 x blocks, whatever the size.
//! `k` is the length of one deterministic schedule of the configuration, so a violation's
//! seed still reproduces it alone (`check(cfg, 1, seed)`).
//!
//! Schedules until the first stale read of the seed protocol (2 calls, 2 blocks, `check`
//! from seed `1 + 100000 i`, i = 0..9; median and worst of the 9 seeds; `>2000` = not
//! found in 2000 schedules; release build, one core):
//!
//! | algorithm, world | bytes/rank | PCT (depth 3): median / worst | random walk: median / worst |
//! |---|---|---|---|
//! | one-shot, 2 | 64 B  | 1 / 2 | 6 / 13 |
//! | one-shot, 2 | 4 KB  | 1 / 1 | >2000 (0 of 9 found) |
//! | one-shot, 2 | 64 KB | 1 / 1 | >2000 (0 of 9 found) |
//! | two-shot, 2 | 64 B  | 2 / 4 | 8 / 43 |
//! | two-shot, 2 | 4 KB  | 1 / 2 | >2000 (0 of 9 found) |
//! | two-shot, 2 | 64 KB | 1 / 1 | >2000 (0 of 9 found) |
//! | hcm, 8      | 64 B  | 1 / 1 | 63 / 258 |
//! | hcm, 8      | 4 KB  | 1 / 1 | >2000 (0 of 9 found) |
//! | hcm, 8      | 64 KB | 1 / 1 | not run (already >2000 at 4 KB) |
//!
//! Produced by `cargo test --release -p inc-sim --test pct -- --ignored --nocapture
//! figure` (`INC_SIM_ONLY=hcm-4096-walk.` runs one cell, `INC_SIM_SEEDS`, `INC_SIM_MAX`).
//! Under the same budget the inc protocols stay clean: 2000 PCT schedules of one-shot
//! (world 2), two-shot (world 3) and hcm (world 8), 3 calls with 2,1,3 blocks, at 4 KB and
//! 64 KB (`... --test pct -- --ignored --nocapture inc_clean`: 1.4 billion steps, no
//! violation, 13 minutes). The push one-shot is checked by the same engine, PCT by
//! default too. From the
//! command line: `inc sim --protocol seed --algo one-shot --world 2 --bytes 4096 --calls 2
//! --schedules 2000 --seed 7` reports 1954 of 2000 schedules failing; with `--scheduler
//! random` (the walk) 0 of 2000 (6.3 million steps).
//!
//! PCT also surfaced a checker expectation that the walk never reached: under an injected
//! mismatch or kill, a rank still a whole call behind may see the abort word of a faster
//! rank that already failed the faulty call, so its earlier, matched call ends with
//! PEER_ABORT. That is PROTOCOL.md's rule (the comm is poisoned) and is now accepted; the
//! originating error is still checked on its own rank.
//!
//! ## Minimal traces (shrinking)
//!
//! Every run records its decisions ([`Decision`]: which block acts, which pending store
//! lands, which stale value a load reads). The first violation of each kind in a
//! [`Report`] is shrunk by delta debugging over that list: chunks of decisions are deleted
//! (halving the chunk size down to one) and stale-value picks replaced by "newest", and a
//! change is kept only when the replay still shows the same kind of violation with no more
//! trace events. Replays stop at the violation; the budget is
//! [`SimConfig::shrink_runs`] replays and [`SimConfig::shrink_time`]. The violation then
//! carries the shrunk trace (all ranks when it fits in 60 lines), its message, the
//! decisions that replay it ([`Violation::schedule`], fed to [`replay()`]) and what the
//! seed's own run looked like ([`Shrink`]). `check(cfg, 1, seed)` finds and shrinks it
//! again identically (unless the time bound cut shrinking short). `inc sim --json` writes
//! each violation's schedule as one line ([`format_schedule`]) next to the configuration,
//! and `inc sim --replay FILE [--violation N]` re-runs it and prints its trace. Wrong results and
//! undetected mismatches are checked as each call completes, so their traces end there.
//!
//! ## Speed
//!
//! World 8, 4 blocks, 256 B, 2 calls: about 2200 (one-shot), 1400 (two-shot), 2200 (hcm)
//! schedules/s on one core in release, so 10^5 schedules of one algorithm take about a
//! minute (`cargo test --release -p inc-sim --test shrink -- --ignored --nocapture`). The
//! checker allocates nothing per step: one `Run` and one [`model::Memory`] are reset between
//! schedules, pending stores keep their landable subset up to date (store buffers are
//! slot arrays: landing is O(log n), forwarding O(1), and a step sees landable stores as
//! one group per buffer, so a low-priority buffer holding thousands of stores at 64 KB
//! costs nothing per step), and a waiting block's
//! "can a poll change anything" answer is re-derived only when it acts, its rank starts or
//! ends a call, or a write lands in its own flag/abort words.
//!
//! The push (LL) family takes more steps per call (every 16-byte line is two separately
//! landing halves, four per chunk per peer): world 8, 4 blocks, 256 B, 2 calls ran at
//! about 120 schedules/s (2.2 M steps/s) on a loaded 2-core machine; a waiting block's
//! answer is re-derived as above, a write landing anywhere in its own rank's memory
//! counting as one it polls. Its long run (`cargo test --release -p inc-sim --test push --
//! --ignored --nocapture`: 157,500 schedules over worlds 2..8 with v1 calls mixed in, and
//! 24,500 under faults) is clean.
//!
//! Modelling choices: the seed's system-scope atomics are treated as acq_rel (what the
//! hardware gives in practice and what the seed relies on), so the seed's only reported
//! bug in fault-free runs is the end-barrier race; data is modelled per 16-byte chunk;
//! `epoch`/`done` are block-shared rank state; a kernel boundary lands all stores of that
//! rank (stream order). [`Weakening`] mutations (relaxed flags, no rotation, no two-shot
//! mid barrier, no start or end barrier, a scatter after the start barrier) show the checker catches a weakened inc protocol
//! too.
//!
//! The zero-copy two-shot ([`SimConfig::zero_copy`] with `Algo::TwoShot`, program
//! [`program::inc::two_shot_zc`]) is checked with the user in the loop: at each launch a
//! rank's input is stored into its own buffer (after its previous kernel completed), and
//! when its kernel completes its buffer is read back and compared with the reference.
//! [`SimConfig::zc_form`] picks the form: pull (the default) or push
//! ([`program::inc::two_shot_zcp`]: the tensor is a region of its own next to the parity
//! halves, whose receive areas the scatter fills).
//!
//! The copy-in two-shot in pieces (PROTOCOL.md "Deferred gather") is
//! [`SimConfig::deferred_gather`]: the calls are the pieces of one call, every one but the
//! last skips its Gather, the next one's GatherPrev (between its ReduceSlice and its mid
//! barrier) reads its gather area in the other parity half, and its output is read from
//! there when its kernel completes. A GatherPrev of the current half
//! ([`Weakening::GatherPrevSameParity`]), a missing mid barrier and one buffer instead of
//! two ([`Weakening::NoRotation`]) are caught.

pub mod check;
pub mod cpu;
pub mod error;
pub mod model;

pub mod lines {
    //! The two-shot of lines (PROTOCOL.md "two-shot of lines"): inc-proto's layout, cut and
    //! step list ([`LinesLayout`], [`STEP_NAMES`], re-exported), and the protocol checker
    //! ([`check_lines`], [`replay_lines`]: the lines family of the checker engine,
    //! [`check`](mod@crate::check)).
    //!
    //! ```
    //! use inc_sim::lines::{check_lines, LinesConfig, LinesWeakening};
    //! // Clean: 4 consecutive calls on 3 ranks (slices of 1-2 lines), PCT schedules.
    //! let cfg = LinesConfig::new(3, vec![720, 240, 480, 720]);
    //! assert!(check_lines(&cfg, 10, 1)?.violations.is_empty());
    //! // The flag landing apart from the payload: a reader takes a line with old data.
    //! let mut bad = LinesConfig::new(2, vec![240; 4]);
    //! bad.weaken = Some(LinesWeakening::SplitLine);
    //! assert!(!check_lines(&bad, 200, 1)?.violations.is_empty());
    //! # Ok::<(), inc_sim::SimError>(())
    //! ```

    pub use crate::check::lines::{
        check_lines, replay_lines, LinesConfig, LinesFault, LinesScheduler, LinesWeakening,
    };
    pub use inc_proto::lines::*;
}
pub mod program;
pub mod push;
pub mod sched;
pub mod types;

pub use check::{
    check, format_schedule, parse_schedule, replay, Decision, Fault, RandomMode, Report, Scheduler,
    Shrink, SimConfig, Violation, ViolationKind, Weakening,
};
pub use error::SimError;
pub use program::{Protocol, ZcForm};
pub use types::*;
