//! The engine of `inc demo`: every algorithm x dtype x op at a few sizes, checked against
//! a CPU reference computed in the same fold order (so intra-node results must match bit
//! for bit; NCCL results within a tolerance).

use std::time::Instant;

use half::{bf16, f16};
use inc_sim::cpu::reference_allreduce;
use serde::Serialize;

use crate::element::Element;
use crate::error::{CommError, Result};
use crate::options::AlgoPath;
use crate::{Comm, DType, ReduceOp};

/// The demo's sizes in bytes (the first one is not a multiple of 16 bytes, to exercise the
/// partial tail chunk; it is a whole number of elements of every dtype).
pub const DEMO_BYTES: [usize; 3] = [4088, 64 << 10, 1 << 20];

/// Default largest demo size on the simulator (keeps `inc demo` to a few seconds).
pub const SIM_DEMO_MAX_BYTES: usize = 64 << 10;

/// Timed repetitions per case (after one warm-up call).
pub const DEMO_REPS: usize = 3;

/// One checked case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Case {
    /// AlgoPath name.
    pub algo: String,
    /// Dtype name.
    pub dtype: String,
    /// Op name.
    pub op: String,
    /// Bytes per rank.
    pub bytes: usize,
    /// Mean time per call in microseconds (this rank).
    pub time_us: f64,
    /// Elements that differ from the reference (this rank).
    pub wrong: usize,
}

/// The deterministic input of `rank` at element `i` (every rank can compute every rank's
/// input, so each rank checks its result locally).
pub fn input_value(rank: usize, i: usize) -> f32 {
    let a = ((i * 7 + rank * 13) % 29) as f32 - 14.0;
    let b = ((i + 3 * rank) % 8) as f32 * 0.125;
    a * 0.5 + b
}

fn inputs<T: Element>(world: usize, n: usize) -> Vec<Vec<T>> {
    (0..world)
        .map(|r| (0..n).map(|i| T::from_f32(input_value(r, i))).collect())
        .collect()
}

fn count_wrong<T: Element>(got: &[T], want: &[u8], exact: bool) -> usize {
    let want: Vec<T> = want
        .chunks_exact(std::mem::size_of::<T>())
        .map(bytemuck::pod_read_unaligned)
        .collect();
    if want.len() != got.len() {
        return got.len().max(want.len());
    }
    got.iter()
        .zip(&want)
        .filter(|(g, w)| {
            if exact {
                bytemuck::bytes_of(*g) != bytemuck::bytes_of(*w)
            } else {
                let (g, w) = (g.to_f32(), w.to_f32());
                (g - w).abs() > 0.02 * w.abs().max(1.0)
            }
        })
        .count()
}

fn run_case<T: Element>(comm: &Comm, path: AlgoPath, op: ReduceOp, bytes: usize) -> Result<Case> {
    let world = comm.world();
    let n = bytes / std::mem::size_of::<T>();
    let ins = inputs::<T>(world, n);
    let mine = ins
        .get(comm.rank())
        .ok_or_else(|| CommError::InvalidArgument {
            rank: comm.rank(),
            reason: "rank out of range".into(),
        })?;
    let mut out = vec![T::from_f32(0.0); n];
    comm.allreduce_host_using(path, mine, &mut out, op)?
        .wait()?;
    let start = Instant::now();
    for _ in 0..DEMO_REPS {
        comm.allreduce_host_using(path, mine, &mut out, op)?
            .wait()?;
    }
    let time_us = start.elapsed().as_secs_f64() * 1e6 / DEMO_REPS as f64;
    // The reference folds in the same order as the algorithm; NCCL's order is its own, so
    // it is checked against the one-shot order with a tolerance.
    let ref_algo = path.algo().unwrap_or(inc_sim::Algo::OneShot);
    let hcm_rows = comm.hcm_table().copied();
    let views: Vec<&[u8]> = ins
        .iter()
        .map(|v| bytemuck::cast_slice::<T, u8>(v))
        .collect();
    let want = reference_allreduce(ref_algo, T::DTYPE, op, &views, hcm_rows.as_ref())
        .map_err(|e| crate::backend::sim::sim_err(comm.rank(), e))?;
    let wrong = count_wrong(&out, &want, path != AlgoPath::Nccl);
    Ok(Case {
        algo: path.name().into(),
        dtype: T::DTYPE.name().into(),
        op: op.name().into(),
        bytes: n * std::mem::size_of::<T>(),
        time_us,
        wrong,
    })
}

/// The paths the demo runs on `comm`: every intra-node path its topology allows, and NCCL
/// when it is available.
pub fn demo_paths(comm: &Comm) -> Vec<AlgoPath> {
    AlgoPath::ALL
        .into_iter()
        .filter(|p| comm.check_path(*p, 16, DType::F32).is_ok())
        .collect()
}

/// Runs every case of the demo on one rank (all ranks must call it together, with the
/// same `paths`). Cases too large for the buffers are skipped (on every rank alike).
pub fn run_rank(comm: &Comm, paths: &[AlgoPath], max_bytes: usize) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    for &path in paths {
        for dtype in DType::ALL {
            for op in ReduceOp::ALL {
                for bytes in DEMO_BYTES.into_iter().filter(|b| *b <= max_bytes) {
                    let n = bytes / dtype.size();
                    if comm
                        .check_path(path, (n * dtype.size()) as u64, dtype)
                        .is_err()
                    {
                        continue;
                    }
                    let case = match dtype {
                        DType::Bf16 => run_case::<bf16>(comm, path, op, bytes)?,
                        DType::F16 => run_case::<f16>(comm, path, op, bytes)?,
                        DType::F32 => run_case::<f32>(comm, path, op, bytes)?,
                    };
                    cases.push(case);
                }
            }
        }
    }
    Ok(cases)
}

/// Formats cases as a table: one row per path x dtype x op, one column per size.
pub fn table(cases: &[Case]) -> String {
    use std::fmt::Write;
    let mut sizes: Vec<usize> = cases.iter().map(|c| c.bytes).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut s = String::new();
    let _ = write!(s, "{:<9} {:<5} {:<4}", "algo", "dtype", "op");
    for b in &sizes {
        let _ = write!(s, " {:>12}", format!("us@{}", human(*b)));
    }
    let _ = writeln!(s, " {:>6}", "wrong");
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for c in cases {
        let k = (c.algo.clone(), c.dtype.clone(), c.op.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    for (a, d, o) in keys {
        let _ = write!(s, "{a:<9} {d:<5} {o:<4}");
        let mut wrong = 0;
        for b in &sizes {
            match cases
                .iter()
                .find(|c| c.algo == a && c.dtype == d && c.op == o && c.bytes == *b)
            {
                Some(c) => {
                    wrong += c.wrong;
                    let _ = write!(s, " {:>12.1}", c.time_us);
                }
                None => {
                    let _ = write!(s, " {:>12}", "-");
                }
            }
        }
        let _ = writeln!(s, " {wrong:>6}");
    }
    s
}

fn human(b: usize) -> String {
    if b >= 1 << 20 && b % (1 << 20) == 0 {
        format!("{}M", b >> 20)
    } else if b >= 1 << 10 && b % (1 << 10) == 0 {
        format!("{}K", b >> 10)
    } else {
        format!("{b}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_counts() {
        let a = [1.0f32, 2.0, 3.0];
        let want: Vec<u8> = bytemuck::cast_slice(&[1.0f32, 2.5, 3.0]).to_vec();
        assert_eq!(count_wrong(&a, &want, true), 1);
        let want: Vec<u8> = bytemuck::cast_slice(&[1.0f32, 2.001, 3.0]).to_vec();
        assert_eq!(count_wrong(&a, &want, false), 0);
        assert_eq!(count_wrong(&a, &want, true), 1);
    }

    #[test]
    fn table_has_one_row_per_key() {
        let c = |op: &str, bytes, wrong| Case {
            algo: "one-shot".into(),
            dtype: "f32".into(),
            op: op.into(),
            bytes,
            time_us: 1.0,
            wrong,
        };
        let t = table(&[c("sum", 4088, 0), c("sum", 65536, 2), c("max", 4088, 0)]);
        assert_eq!(t.lines().count(), 3);
        assert!(t.contains("us@64K"));
        assert!(t.lines().nth(1).unwrap().trim_end().ends_with('2'));
    }
}
