//! inc-sim: a CPU simulator of the allreduce signal protocol (weak memory, chosen
//! interleavings), its race/deadlock checker, and a CPU data backend.
//!
//! - [`types`]: the workspace's shared vocabulary ([`DType`], [`ReduceOp`], [`Algo`],
//!   [`call_sig`], [`PadLayout`] byte offsets, `ERR_*` codes, [`ErrorRecord`]), used by
//!   inc-cuda, inc-comm and the kernels.
//! - [`program`]: every algorithm's protocol as a list of [`program::Step`]s;
//!   `program::inc::*` is PROTOCOL.md v1 (the kernels mark `// STEP <algo> <n> <Name>`,
//!   compared against [`program::step_names`]), `program::seed::*` is what the seed does.
//! - [`model`]: the weak-memory model (pending stores landing when the scheduler decides,
//!   release/acquire via vector clocks, `.nc` loads, fences, atomics). Its docs list what it
//!   does and does not capture.
//! - [`check()`]: runs N schedules (random seeded, exhaustive bounded-depth, adversarial
//!   slow rank / stalled block) of a [`SimConfig`] and checks each run: exact results vs the
//!   reference fold order (`wrong-result`), data tags on every peer read (`stale-read`),
//!   `deadlock`, `seq-mismatch` (injected mismatched calls / epoch skew must be detected),
//!   `timeout` (a killed rank must make all others stop with an error; the simulated timeout
//!   fires only when nothing else can move, plus a step budget against livelock).
//! - [`cpu`]: the same inc protocol on real f32/f16/bf16 data, one thread per block, real
//!   `AtomicU64` flags (Release/Acquire), wall-clock bounded waits and the abort word;
//!   ranks are threads ([`cpu::Region::new_local`]) or processes (`/dev/shm` +
//!   memmap2). inc-comm's `sim` backend.
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
//!   #8     r0 b0 call 0: 1 CopyIn done
//!   #10    r0 b0 call 0: signal r0: atomicAdd_system(+1)
//!   #11    r0 b0 call 0: signal r1: atomicAdd_system(+1)
//!   #13    r0 b0 call 0: wait r0: counter 1 -> CAS down, passed
//!   #22    r1 b0 call 0: 1 CopyIn done
//!   #24    r1 b0 call 0: signal r0: atomicAdd_system(+1)
//!   #25    r0 b0 call 0: wait r1: counter 1 -> CAS down, passed
//!   #26    r0 b0 call 0: 2 Barrier(start, all) done
//!   #31    r0 b0 call 0: 3 ReduceAll done
//!   #32    r0 b0 call 0: 4 Epilogue done
//!   #32    r0    call 0: kernel complete (ok)
//!   #32    r0    call 1: launch kernel (1 blocks)
//!   #40    r0 b0 call 1: 1 CopyIn done
//!   #41    r0 b0 call 1: signal r0: atomicAdd_system(+1)
//!   #42    r0 b0 call 1: signal r1: atomicAdd_system(+1)
//!   #44    r0 b0 call 1: wait r0: counter 1 -> CAS down, passed
//!   #45    r1 b0 call 0: signal r1: atomicAdd_system(+1)
//!   #47    r1 b0 call 0: wait r0: counter 2 -> CAS down, passed
//!   #48    r1 b0 call 0: wait r1: counter 1 -> CAS down, passed
//!   #49    r1 b0 call 0: 2 Barrier(start, all) done
//!   #50    r1 b0 call 0: !! ReduceAll read r0.buf chunk 0: found r0 call 1 input, expected r0 call 0 input (overwritten by a later call)
//!   reproduce with schedule seed 7
//! ```
//!
//! Rank 0 finished call 0, and its call-1 copy-in (a memcpy before the kernel in the seed)
//! overwrote the buffer that rank 1 had not read yet; the counting semaphore even lets
//! rank 1 pass its call-0 barrier on rank 0's call-1 signal (counter 2). Two-shot shows
//! the same race in its Gather. The inc protocol writes call e into parity half e % 2,
//! and a rank can only reach call e+2 after every reader passed a barrier of call e+1.
//!
//! Modelling choices: the seed's system-scope atomics are treated as acq_rel (what the
//! hardware gives in practice and what the seed relies on), so the seed's only reported
//! bug in fault-free runs is the end-barrier race; data is modelled per 16-byte chunk;
//! `epoch`/`done` are block-shared rank state; a kernel boundary lands all stores of that
//! rank (stream order). [`Weakening`] mutations (relaxed flags, no rotation) show the
//! checker catches a weakened inc protocol too.

pub mod check;
pub mod cpu;
pub mod error;
pub mod model;
pub mod program;
pub mod types;

pub use check::{check, Fault, Report, Scheduler, SimConfig, Violation, ViolationKind, Weakening};
pub use error::SimError;
pub use program::Protocol;
pub use types::*;
