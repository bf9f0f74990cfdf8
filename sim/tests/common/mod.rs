//! Helpers shared by inc-sim's integration tests (`mod common;` in each test file).

use std::sync::Arc;
use std::time::Duration;

use inc_sim::cpu::{CpuConfig, CpuRank, Region, RegionLayout};
use inc_sim::program::CUBE_MESH_8;
use inc_sim::{
    check, Algo, DType, Fault, ReduceOp, Report, SimConfig, SimError, ERR_PEER_ABORT, ERR_TIMEOUT,
};

/// A surviving rank's two calls after a peer died.
#[allow(dead_code)]
pub type TwoCalls = (Result<(), SimError>, Result<(), SimError>);

/// The outcome of the surviving ranks' two calls after a peer died: every first call ends
/// in TIMEOUT or PEER_ABORT (at least one of them TIMEOUT: someone noticed), and every
/// second call fails too (the communicator is poisoned).
#[allow(dead_code)]
pub fn assert_dead_peer_outcome(res: &[TwoCalls]) {
    let mut timeouts = 0;
    for (first, second) in res {
        let code = first.as_ref().unwrap_err().code().unwrap();
        assert!(code == ERR_TIMEOUT || code == ERR_PEER_ABORT, "code {code}");
        timeouts += usize::from(code == ERR_TIMEOUT);
        assert!(second.is_err());
    }
    assert!(timeouts >= 1);
}

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

/// [`clean`] under every fault of the matrix on `base` (3 calls at least): a kill of the
/// last rank and a mismatched call of rank 0 at each of calls 0..3, and an epoch skew of
/// rank 1. Every fault ends every affected call with the expected error on every rank,
/// and every other call is correct.
#[allow(dead_code)]
pub fn faults_clean(base: &SimConfig) {
    let world = base.world;
    for call in 0..3 {
        let mut c = base.clone();
        c.fault = Some(Fault::Kill {
            rank: world - 1,
            call,
        });
        clean(&c, 20, 3);
        c.fault = Some(Fault::Mismatch { rank: 0, call });
        clean(&c, 20, 4);
    }
    let mut c = base.clone();
    c.fault = Some(Fault::EpochSkew { rank: 1, delta: 1 });
    clean(&c, 20, 5);
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

/// One in-process region per rank, with parity halves of `half` bytes.
#[allow(dead_code)]
pub fn local_regions(world: usize, half: usize) -> Vec<Arc<Region>> {
    (0..world)
        .map(|_| Arc::new(Region::new_local(RegionLayout::new(half))))
        .collect()
}

/// One CPU rank per region (with the DGX-1 hcm table when `hcm`).
#[allow(dead_code)]
pub fn cpu_ranks(regions: &[Arc<Region>], cfg: CpuConfig, hcm: bool) -> Vec<CpuRank> {
    let world = regions.len();
    (0..world)
        .map(|r| {
            if hcm {
                CpuRank::with_hcm_table(r, regions.to_vec(), cfg, &CUBE_MESH_8).unwrap()
            } else {
                CpuRank::new(r, world, regions.to_vec(), cfg, None).unwrap()
            }
        })
        .collect()
}

/// One call of [`run_all`]: algorithm, dtype, op, blocks, every rank's input.
#[allow(dead_code)]
pub type Call = (Algo, DType, ReduceOp, usize, Vec<Vec<u8>>);

/// Runs `calls` on every rank (one thread per rank; with `delay_seed`, a random pause of
/// up to 300 us before each call); returns per rank per call results.
#[allow(dead_code)]
pub fn run_all(
    ranks: &[CpuRank],
    calls: &[Call],
    delay_seed: Option<u64>,
) -> Vec<Vec<Result<Vec<u8>, SimError>>> {
    std::thread::scope(|s| {
        let hs: Vec<_> = ranks
            .iter()
            .enumerate()
            .map(|(r, rank)| {
                s.spawn(move || {
                    let mut rng = Rng(delay_seed.unwrap_or(1) * 31 + r as u64 + 7);
                    calls
                        .iter()
                        .map(|(algo, dtype, op, blocks, inputs)| {
                            if delay_seed.is_some() {
                                std::thread::sleep(Duration::from_micros(rng.below(300)));
                            }
                            let mut out = vec![0u8; inputs[r].len()];
                            rank.allreduce(*algo, *dtype, *op, *blocks, &inputs[r], &mut out)
                                .map(|()| out)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}
