//! inc-benches: criterion benchmarks of inc's CPU-side costs (`benches/benches/*.rs`).
//!
//! * `topo`: topology classification, the complete HCM solver, `nvidia-smi topo -m` parsing.
//! * `store`: handshake encode/decode, `store_all_gather` of 8 ranks x 4 KiB over a
//!   loopback TCP store (and the in-memory store).
//! * `sim`: the protocol checker's schedules per second (world 8, one-shot, 4 blocks).
//! * `comm`: algorithm choice and a whole allreduce on the sim backend.
//!
//! Run them with `cargo bench -p inc-benches -- --quick --noplot`; README.md records the
//! figures and how to read them. GPU latency and bandwidth come from `inc bench`.
