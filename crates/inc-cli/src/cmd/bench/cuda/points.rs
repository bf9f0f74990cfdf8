//! Per-point arithmetic: calls per timing, the shifted host patterns and references, the
//! bitwise checker, and one point's result as exchanged between ranks.

use inc_comm::Element;

use super::super::measure::{fill, PERIOD, REP_STEP};
use super::super::report::Mode;

/// Calls per timing in `mode`.
pub(crate) fn calls_per_timing(mode: Mode, graph_calls: usize) -> usize {
    match mode {
        Mode::Eager => 1,
        Mode::Graph => graph_calls.max(1),
    }
}

/// Microseconds per call of a timing of `ms` milliseconds over `calls` calls.
pub(crate) fn per_call_us(ms: f32, calls: usize) -> f64 {
    f64::from(ms) * 1e3 / calls.max(1) as f64
}

/// Offset into [`pattern_buffer`] / [`expected_buffer`] of repetition `rep`.
pub(crate) fn rep_offset(rep: usize) -> usize {
    (rep * REP_STEP) % PERIOD
}

/// `len + PERIOD` elements of `rank`'s input pattern at repetition 0: repetition `rep`'s
/// input of `n` elements is `[rep_offset(rep)..][..n]` (no per-repetition generation).
pub(crate) fn pattern_buffer<T: Element>(rank: usize, len: usize) -> Vec<T> {
    let mut v = vec![T::from_f32(0.0); len + PERIOD];
    fill(&mut v, rank, 0);
    v
}

/// `len + PERIOD` elements of the expected output, laid out like [`pattern_buffer`].
pub(crate) fn expected_buffer<T: Element>(table: &[T], len: usize) -> Vec<T> {
    table.iter().copied().cycle().take(len + PERIOD).collect()
}

/// Elements of `out` whose bits differ from `want` (plus any length difference).
pub(crate) fn count_wrong_bits<T: Element>(out: &[T], want: &[T]) -> u64 {
    let a: &[u8] = bytemuck::cast_slice(out);
    let b: &[u8] = bytemuck::cast_slice(want);
    let extra = out.len().abs_diff(want.len()) as u64;
    if a == b {
        return 0;
    }
    let w = std::mem::size_of::<T>();
    extra
        + a.chunks_exact(w)
            .zip(b.chunks_exact(w))
            .filter(|(x, y)| x != y)
            .count() as u64
}

/// One rank's result of one point, as sent to the others: `ok` + #wrong (u64 LE) + the
/// times (f32 LE), or `err:` + why.
pub(crate) fn encode_point(r: &Result<(Vec<f32>, u64), String>) -> Vec<u8> {
    match r {
        Ok((times, wrong)) => {
            let mut v = b"ok".to_vec();
            v.extend_from_slice(&wrong.to_le_bytes());
            for t in times {
                v.extend_from_slice(&t.to_le_bytes());
            }
            v
        }
        Err(e) => format!("err:{e}").into_bytes(),
    }
}

/// Every rank's point combined: per repetition the slowest rank's time (µs), and #wrong
/// summed; the first rank's error if any failed (the same verdict on every rank).
pub(crate) fn combine_points(all: &[Vec<u8>]) -> Result<(Vec<f64>, u64), String> {
    if let Some(e) = all.iter().find_map(|m| m.strip_prefix(b"err:")) {
        return Err(String::from_utf8_lossy(e).into_owned());
    }
    let mut times: Option<Vec<f64>> = None;
    let mut wrong = 0u64;
    for (r, m) in all.iter().enumerate() {
        let body = m
            .strip_prefix(b"ok")
            .ok_or_else(|| format!("rank {r} sent a malformed result"))?;
        let (w, rest) = body
            .split_first_chunk::<8>()
            .ok_or_else(|| format!("rank {r} sent a short result"))?;
        wrong = wrong.saturating_add(u64::from_le_bytes(*w));
        let t: Vec<f64> = rest
            .chunks_exact(4)
            .map(|c| {
                let mut b = [0u8; 4];
                b.copy_from_slice(c);
                f64::from(f32::from_le_bytes(b))
            })
            .collect();
        times = Some(match times {
            None => t,
            Some(prev) if prev.len() == t.len() => {
                prev.iter().zip(&t).map(|(a, b)| a.max(*b)).collect()
            }
            Some(_) => return Err(format!("rank {r} timed a different number of repetitions")),
        });
    }
    Ok((times.unwrap_or_default(), wrong))
}

#[cfg(test)]
mod tests {
    use half::bf16;
    use inc_comm::ReduceOp;

    use super::super::super::measure::expected_table;
    use super::*;

    #[test]
    fn timing_arithmetic() {
        assert_eq!(calls_per_timing(Mode::Eager, 50), 1);
        assert_eq!(calls_per_timing(Mode::Graph, 50), 50);
        assert_eq!(calls_per_timing(Mode::Graph, 0), 1);
        assert!((per_call_us(1.0, 50) - 20.0).abs() < 1e-9);
        assert!((per_call_us(0.004, 1) - 4.0).abs() < 1e-6);
    }

    #[test]
    fn shifted_buffers_equal_the_per_repetition_pattern() {
        let len = 100;
        let base = pattern_buffer::<f32>(3, len);
        let table = expected_table::<f32>(4, ReduceOp::Sum).unwrap();
        let exp = expected_buffer(&table, len);
        for rep in 0..40 {
            let mut v = vec![0f32; len];
            fill(&mut v, 3, rep);
            let off = rep_offset(rep);
            assert_eq!(&base[off..off + len], &v[..], "rep {rep}");
            // The expected window agrees with measure's checker.
            assert_eq!(
                super::super::super::measure::count_wrong(&exp[off..off + len], &table, rep),
                0
            );
        }
    }

    #[test]
    fn bitwise_checker_counts_each_wrong_element() {
        let want = vec![bf16::from_f32(1.0); 64];
        let mut out = want.clone();
        assert_eq!(count_wrong_bits(&out, &want), 0);
        out[3] = bf16::from_f32(2.0);
        out[60] = bf16::from_bits(0xFFFF); // NaN: the poisoned output
        assert_eq!(count_wrong_bits(&out, &want), 2);
        // -0 and +0 differ in bits.
        let z = vec![0f32; 4];
        let nz = vec![-0f32; 4];
        assert_eq!(count_wrong_bits(&nz, &z), 4);
        assert_eq!(count_wrong_bits(&z[..3], &z), 1);
    }

    #[test]
    fn points_combine_to_the_slowest_rank() {
        let a = encode_point(&Ok((vec![1.0, 5.0, 3.0], 0)));
        let b = encode_point(&Ok((vec![2.0, 4.0, 3.5], 2)));
        let (t, w) = combine_points(&[a.clone(), b]).unwrap();
        assert_eq!(t, vec![2.0, 5.0, 3.5]);
        assert_eq!(w, 2);
        let e = encode_point(&Err("rank 1: timeout".into()));
        assert_eq!(
            combine_points(&[a.clone(), e]).unwrap_err(),
            "rank 1: timeout"
        );
        let short = encode_point(&Ok((vec![1.0], 0)));
        assert!(combine_points(&[a, short]).is_err());
        assert!(combine_points(&[b"ok".to_vec()]).is_err());
    }
}
