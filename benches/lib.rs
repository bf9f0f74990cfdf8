//! Criterion benchmarks of inc's CPU-side costs live in `benches/benches/`; see README.md.
