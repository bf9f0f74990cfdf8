//! inc-sim: a CPU simulator of the allreduce signal protocol (weak memory, chosen
//! interleavings), its race/deadlock checker, and a CPU data backend.
