//! Helpers shared by inc-sim's integration tests (`mod common;` in each test file).

use inc_sim::{check, DType, Report, SimConfig};

/// Checks `c` over `schedules` schedules from `seed` and panics with the scenario and the
/// first violation's rendering if there is one; returns the report otherwise.
#[allow(dead_code)]
pub fn clean(c: &SimConfig, schedules: u64, seed: u64) -> Report {
    let r = check(c, schedules, seed).unwrap();
    if let Some(v) = r.violations.first() {
        panic!("{c:?}\n{}", v.render());
    }
    r
}

/// A xorshift64 generator for test inputs and delays (deterministic per seed, nonzero).
#[allow(dead_code)]
pub struct Rng(pub u64);

#[allow(dead_code)]
impl Rng {
    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `count` elements of `dtype` (native byte order) of value `k / div`, k random in
/// -1000..=1000.
#[allow(dead_code)]
pub fn random_input(rng: &mut Rng, dtype: DType, count: usize, div: f32) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * dtype.size());
    for _ in 0..count {
        let v = (rng.below(2001) as f32 - 1000.0) / div;
        match dtype {
            DType::F32 => out.extend_from_slice(&v.to_ne_bytes()),
            DType::F16 => out.extend_from_slice(&half::f16::from_f32(v).to_ne_bytes()),
            DType::Bf16 => out.extend_from_slice(&half::bf16::from_f32(v).to_ne_bytes()),
        }
    }
    out
}
