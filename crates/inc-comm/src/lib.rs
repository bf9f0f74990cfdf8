//! inc-comm: the facade users call: rendezvous, algorithm choice, NCCL fallback, Work
//! handles and counters.
