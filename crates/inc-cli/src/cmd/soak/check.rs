//! The soak's inputs and their expected results, and the check of a batch's outputs.
//!
//! Each rank's input for dtype `d` is one pattern of [`Geometry::pattern_len`] elements,
//! made once from (seed, rank, dtype, element) and uploaded once; call `c` reads elements
//! `c.in_off..c.in_off + c.n` of it. Every value is k/8 with |k| <= 127, exact in bf16,
//! f16 and f32, and every partial sum of up to 8 of them is exact in f32, so the result
//! does not depend on the fold order. The expected output of every call is therefore a
//! slice of one table per (dtype, op): the CPU reference (inc-sim's rank-order f32 fold)
//! of the whole patterns of all ranks, computed once at start.

use inc_comm::{DType, ReduceOp};
use inc_sim::cpu::reference_allreduce;

use super::plan::{mix, sample_indices, Batch, Call, Geometry};

/// Pattern element `j` of `rank` for `dtype`, as f32 (k/8, |k| <= 127).
pub fn pattern_value(seed: u64, rank: usize, dtype: DType, j: usize) -> f32 {
    let d = DType::ALL.iter().position(|x| *x == dtype).unwrap_or(0) as u64;
    let h = mix(seed ^ mix(((rank as u64) << 48) ^ (d << 40) ^ 0xA11) ^ (j as u64));
    ((h % 255) as f32 - 127.0) / 8.0
}

/// Encodes an f32 as one element of `dtype` (round to nearest even; exact here).
fn encode(dtype: DType, v: f32, out: &mut Vec<u8>) {
    match dtype {
        DType::Bf16 => out.extend_from_slice(&half::bf16::from_f32(v).to_ne_bytes()),
        DType::F16 => out.extend_from_slice(&half::f16::from_f32(v).to_ne_bytes()),
        DType::F32 => out.extend_from_slice(&v.to_ne_bytes()),
    }
}

/// The whole pattern of `rank` for `dtype`, native-endian bytes.
pub fn pattern(seed: u64, rank: usize, dtype: DType, geo: &Geometry) -> Vec<u8> {
    let len = geo.pattern_len(dtype);
    let mut out = Vec::with_capacity(len * dtype.size());
    for j in 0..len {
        encode(dtype, pattern_value(seed, rank, dtype, j), &mut out);
    }
    out
}

fn op_index(op: ReduceOp) -> usize {
    ReduceOp::ALL.iter().position(|o| *o == op).unwrap_or(0)
}

fn dtype_index(dtype: DType) -> usize {
    DType::ALL.iter().position(|d| *d == dtype).unwrap_or(0)
}

/// The expected outputs: for every (dtype, op), the reference allreduce of the patterns
/// of all ranks, element by element.
pub struct Reference {
    tables: Vec<Vec<u8>>,
}

impl Reference {
    /// Computes every table for `world` ranks (the patterns of all ranks are made here).
    pub fn new(seed: u64, world: usize, geo: &Geometry) -> Result<Self, String> {
        let mut tables = Vec::with_capacity(DType::ALL.len() * ReduceOp::ALL.len());
        for dtype in DType::ALL {
            let pats: Vec<Vec<u8>> = (0..world).map(|r| pattern(seed, r, dtype, geo)).collect();
            let views: Vec<&[u8]> = pats.iter().map(Vec::as_slice).collect();
            for op in ReduceOp::ALL {
                let t = reference_allreduce(inc_sim::Algo::OneShot, dtype, op, &views, None)
                    .map_err(|e| format!("reference: {e}"))?;
                tables.push(t);
            }
        }
        Ok(Self { tables })
    }

    /// The expected output bytes of `c`.
    pub fn expected(&self, c: &Call) -> &[u8] {
        let es = c.dtype.size();
        self.tables
            .get(dtype_index(c.dtype) * ReduceOp::ALL.len() + op_index(c.op))
            .and_then(|t| t.get(c.in_off * es..(c.in_off + c.n) * es))
            .unwrap_or(&[])
    }
}

/// A fast 64-bit digest of `bytes` (four independent multiply-rotate lanes, then a
/// bijective finaliser): outputs that differ in one 8-byte word always differ in it.
pub fn digest(bytes: &[u8]) -> u64 {
    const P: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h: [u64; 4] = [
        0x243F_6A88_85A3_08D3,
        0x1319_8A2E_0370_7344,
        0xA409_3822_299F_31D0,
        0x082E_FA98_EC4E_6C89,
    ];
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    };
    let mut blocks = bytes.chunks_exact(32);
    for b in &mut blocks {
        for (l, hl) in h.iter_mut().enumerate() {
            *hl = (*hl ^ word(&b[l * 8..l * 8 + 8]))
                .wrapping_mul(P)
                .rotate_left(29);
        }
    }
    for (l, w) in blocks.remainder().chunks(8).enumerate() {
        h[l] = (h[l] ^ word(w)).wrapping_mul(P).rotate_left(29);
    }
    let mut x = mix(bytes.len() as u64 ^ h[3]);
    x = mix(x ^ h[2]);
    x = mix(x ^ h[1]);
    mix(x ^ h[0])
}

/// What the check of one batch found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// Calls checked in full (every element).
    pub full_calls: u64,
    /// Calls checked at sampled elements.
    pub sampled_calls: u64,
    /// Output elements of all calls.
    pub elements: u64,
    /// Elements compared with the reference.
    pub checked: u64,
    /// Compared elements that differed.
    pub wrong: u64,
    /// Calls with at least one wrong element.
    pub wrong_calls: u64,
    /// One digest per call (of every output byte), for the cross-rank comparison.
    pub digests: Vec<u64>,
    /// The first wrong call, described.
    pub first_wrong: Option<String>,
}

/// Wrong elements of `got` against `want` (same length, `es`-byte elements) and the
/// first wrong element index.
fn count_wrong(got: &[u8], want: &[u8], es: usize) -> (u64, Option<usize>) {
    if got == want {
        return (0, None);
    }
    let mut wrong = 0;
    let mut first = None;
    for (i, (g, w)) in got.chunks(es).zip(want.chunks(es)).enumerate() {
        if g != w {
            wrong += 1;
            first.get_or_insert(i);
        }
    }
    (wrong, first)
}

fn show(dtype: DType, b: &[u8]) -> String {
    match (dtype, b.len()) {
        (DType::Bf16, 2) => format!("{}", half::bf16::from_ne_bytes([b[0], b[1]])),
        (DType::F16, 2) => format!("{}", half::f16::from_ne_bytes([b[0], b[1]])),
        (DType::F32, 4) => format!("{}", f32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
        _ => format!("{b:02x?}"),
    }
}

/// Checks the calls of `batch` against the reference: `out` is the batch's arena
/// (each call's output at its `out_off`). A full batch compares every element; otherwise
/// each call is compared at [`sample_indices`]. Every call's output is digested.
pub fn check_calls(
    seed: u64,
    reference: &Reference,
    batch: &Batch,
    calls: &[Call],
    out: &[u8],
) -> Checked {
    let mut r = Checked {
        digests: Vec::with_capacity(calls.len()),
        ..Checked::default()
    };
    for c in calls {
        let es = c.dtype.size();
        let got = out.get(c.out_off..c.out_off + c.bytes()).unwrap_or(&[]);
        let want = reference.expected(c);
        r.elements += c.n as u64;
        r.digests.push(digest(got));
        let (wrong, first) = if got.len() != c.bytes() || want.len() != c.bytes() {
            r.checked += c.n as u64;
            (c.n as u64, Some(0))
        } else if batch.full {
            r.full_calls += 1;
            r.checked += c.n as u64;
            count_wrong(got, want, es)
        } else {
            r.sampled_calls += 1;
            let idx = sample_indices(seed, c);
            r.checked += idx.len() as u64;
            let mut wrong = 0;
            let mut first = None;
            for &i in &idx {
                if got.get(i * es..(i + 1) * es) != want.get(i * es..(i + 1) * es) {
                    wrong += 1;
                    first.get_or_insert(i);
                }
            }
            (wrong, first)
        };
        if wrong > 0 {
            r.wrong += wrong;
            r.wrong_calls += 1;
            if r.first_wrong.is_none() {
                let i = first.unwrap_or(0);
                let g = got.get(i * es..(i + 1) * es).unwrap_or(&[]);
                let w = want.get(i * es..(i + 1) * es).unwrap_or(&[]);
                r.first_wrong = Some(format!(
                    "{}: {wrong} wrong element(s), first at {i}: got {} want {}",
                    c.describe(),
                    show(c.dtype, g),
                    show(c.dtype, w),
                ));
            }
        }
    }
    r
}

/// [`check_calls`] over the whole batch, split over `threads` threads (the digests stay
/// in call order).
pub fn check_batch(
    seed: u64,
    reference: &Reference,
    batch: &Batch,
    out: &[u8],
    threads: usize,
) -> Checked {
    let threads = threads.clamp(1, batch.calls.len().max(1));
    if threads == 1 {
        return check_calls(seed, reference, batch, &batch.calls, out);
    }
    // split by bytes, not by calls, so the threads get similar work
    let total: usize = batch.calls.iter().map(Call::bytes).sum();
    let per = total.div_ceil(threads).max(1);
    let mut parts: Vec<&[Call]> = Vec::with_capacity(threads);
    let (mut start, mut acc) = (0, 0);
    for (i, c) in batch.calls.iter().enumerate() {
        acc += c.bytes();
        if acc >= per && parts.len() + 1 < threads {
            parts.push(&batch.calls[start..=i]);
            start = i + 1;
            acc = 0;
        }
    }
    parts.push(&batch.calls[start..]);
    let results: Vec<Checked> = std::thread::scope(|s| {
        let hs: Vec<_> = parts
            .iter()
            .map(|p| s.spawn(move || check_calls(seed, reference, batch, p, out)))
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| Checked {
                    first_wrong: Some("a check thread panicked".into()),
                    wrong: 1,
                    wrong_calls: 1,
                    ..Checked::default()
                })
            })
            .collect()
    });
    let mut r = Checked::default();
    for p in results {
        r.full_calls += p.full_calls;
        r.sampled_calls += p.sampled_calls;
        r.elements += p.elements;
        r.checked += p.checked;
        r.wrong += p.wrong;
        r.wrong_calls += p.wrong_calls;
        r.digests.extend(p.digests);
        if r.first_wrong.is_none() {
            r.first_wrong = p.first_wrong;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::super::plan::Planner;
    use super::*;
    use inc_comm::AlgoPath as Path;

    #[test]
    fn pattern_values_are_exact_and_vary() {
        let mut seen = std::collections::HashSet::new();
        for j in 0..10_000 {
            for dtype in DType::ALL {
                let v = pattern_value(5, 1, dtype, j);
                assert!(v.abs() <= 127.0 / 8.0 && (v * 8.0).fract() == 0.0);
                assert_eq!(half::bf16::from_f32(v).to_f32(), v);
                assert_eq!(half::f16::from_f32(v).to_f32(), v);
                seen.insert((v * 8.0) as i32);
            }
        }
        assert_eq!(seen.len(), 255);
        // ranks, dtypes and seeds differ
        let a: Vec<f32> = (0..64)
            .map(|j| pattern_value(5, 0, DType::F32, j))
            .collect();
        let b: Vec<f32> = (0..64)
            .map(|j| pattern_value(5, 1, DType::F32, j))
            .collect();
        let c: Vec<f32> = (0..64)
            .map(|j| pattern_value(5, 0, DType::F16, j))
            .collect();
        let d: Vec<f32> = (0..64)
            .map(|j| pattern_value(6, 0, DType::F32, j))
            .collect();
        assert!(a != b && a != c && a != d);
    }

    /// The reference is the same in any fold order for these inputs: here the hcm fold
    /// (two quads, then across) against the rank-order fold, at 8 ranks.
    #[test]
    fn the_reference_does_not_depend_on_the_fold_order() {
        let geo = Geometry::new(4096);
        let table = [
            [1, 2, 3, 4],
            [0, 2, 3, 5],
            [0, 1, 3, 6],
            [0, 1, 2, 7],
            [5, 6, 7, 0],
            [4, 6, 7, 1],
            [4, 5, 7, 2],
            [4, 5, 6, 3],
        ];
        for dtype in DType::ALL {
            let pats: Vec<Vec<u8>> = (0..8).map(|r| pattern(2, r, dtype, &geo)).collect();
            let views: Vec<&[u8]> = pats.iter().map(Vec::as_slice).collect();
            for op in ReduceOp::ALL {
                let a = reference_allreduce(inc_sim::Algo::OneShot, dtype, op, &views, None);
                let b = reference_allreduce(inc_sim::Algo::Hcm, dtype, op, &views, Some(&table));
                assert_eq!(a.unwrap(), b.unwrap(), "{dtype:?} {op:?}");
            }
        }
    }

    #[test]
    fn expected_is_the_reference_of_the_inputs_at_the_offset() {
        let geo = Geometry::new(2048);
        let world = 3;
        let reference = Reference::new(11, world, &geo).unwrap();
        let planner = Planner {
            seed: 11,
            paths: vec![],
            geo,
            batch_calls: 64,
            full_every: 1,
            graphs: false,
            symmetric: false,
        };
        let b = planner.batch(0, 0, 64, |_, _, _| true);
        for c in &b.calls {
            let es = c.dtype.size();
            let ins: Vec<Vec<u8>> = (0..world)
                .map(|r| {
                    pattern(11, r, c.dtype, &geo)[c.in_off * es..(c.in_off + c.n) * es].to_vec()
                })
                .collect();
            let views: Vec<&[u8]> = ins.iter().map(Vec::as_slice).collect();
            let want = reference_allreduce(inc_sim::Algo::OneShot, c.dtype, c.op, &views, None);
            assert_eq!(reference.expected(c), want.unwrap().as_slice(), "{c:?}");
        }
    }

    #[test]
    fn digest_sees_any_one_changed_byte() {
        let data: Vec<u8> = (0..1000u32)
            .map(|i| (mix(u64::from(i)) & 0xff) as u8)
            .collect();
        for len in [0, 1, 7, 8, 31, 32, 33, 100, 1000] {
            let d = digest(&data[..len]);
            for i in 0..len {
                let mut x = data[..len].to_vec();
                x[i] ^= 1 << (i % 8);
                assert_ne!(digest(&x), d, "len {len} byte {i}");
            }
        }
        // length matters (zeros of two lengths differ)
        assert_ne!(digest(&[0; 16]), digest(&[0; 17]));
    }

    fn arena_of(reference: &Reference, b: &Batch) -> Vec<u8> {
        let mut out = vec![0xffu8; b.bytes];
        for c in &b.calls {
            out[c.out_off..c.out_off + c.bytes()].copy_from_slice(reference.expected(c));
        }
        out
    }

    #[test]
    fn full_and_sampled_checks_count_wrong_elements() {
        let geo = Geometry::new(8192);
        let reference = Reference::new(1, 2, &geo).unwrap();
        let mut planner = Planner {
            seed: 1,
            paths: vec![Path::OneShot],
            geo,
            batch_calls: 100,
            full_every: 1,
            graphs: false,
            symmetric: false,
        };
        let b = planner.batch(0, 0, 100, |_, _, _| true);
        let good = arena_of(&reference, &b);
        let ok = check_batch(1, &reference, &b, &good, 1);
        assert_eq!((ok.wrong, ok.wrong_calls, ok.full_calls), (0, 0, 100));
        assert_eq!(ok.checked, ok.elements);
        assert_eq!(ok.digests.len(), 100);
        // one wrong element in the middle of the largest call
        let big = b.calls.iter().max_by_key(|c| c.n).unwrap();
        let mut bad = good.clone();
        let at = big.out_off + (big.n / 2) * big.dtype.size();
        bad[at] ^= 0x40;
        let r = check_batch(1, &reference, &b, &bad, 1);
        assert_eq!((r.wrong, r.wrong_calls), (1, 1));
        assert!(r
            .first_wrong
            .unwrap()
            .contains(&format!("call {}", big.index)));
        let k = b.calls.iter().position(|c| c.index == big.index).unwrap();
        assert_ne!(r.digests[k], ok.digests[k]);
        assert_eq!(
            r.digests
                .iter()
                .zip(&ok.digests)
                .filter(|(a, b)| a != b)
                .count(),
            1
        );
        // sampled: the first element is always checked, most middle ones are not
        planner.full_every = 2;
        let b1 = planner.batch(1, 100, 200, |_, _, _| true);
        assert!(!b1.full);
        let good1 = arena_of(&reference, &b1);
        let r = check_batch(1, &reference, &b1, &good1, 1);
        assert_eq!((r.wrong, r.sampled_calls, r.full_calls), (0, 100, 0));
        assert!(r.checked < r.elements);
        let mut bad1 = good1.clone();
        bad1[b1.calls[3].out_off] ^= 1;
        let r = check_batch(1, &reference, &b1, &bad1, 1);
        assert_eq!((r.wrong, r.wrong_calls), (1, 1));
        // an unwritten (poisoned) output is wrong everywhere
        let mut bad2 = good;
        let c = &b.calls[0];
        bad2[c.out_off..c.out_off + c.bytes()].fill(0xff);
        let r = check_batch(1, &reference, &b, &bad2, 1);
        assert_eq!(r.wrong, c.n as u64);
    }

    #[test]
    fn threads_give_the_same_result() {
        let geo = Geometry::new(1 << 16);
        let reference = Reference::new(3, 4, &geo).unwrap();
        let planner = Planner {
            seed: 3,
            paths: vec![],
            geo,
            batch_calls: 77,
            full_every: 1,
            graphs: false,
            symmetric: false,
        };
        let b = planner.batch(0, 0, 77, |_, _, _| true);
        let mut out = arena_of(&reference, &b);
        out[b.calls[40].out_off] ^= 2;
        let one = check_batch(3, &reference, &b, &out, 1);
        for t in [2, 3, 8, 200] {
            assert_eq!(check_batch(3, &reference, &b, &out, t), one, "{t} threads");
        }
    }
}
