//! The soak's call sequence, as a pure function of the seed: what each call is (dtype, op,
//! path, size, in place or not, where its input starts in the rank's pattern, how its
//! output is aligned), how calls are cut into batches and laid out in the output arena,
//! which batches are checked in full and which elements of the other calls are sampled.
//! Every rank computes the same plan, so the ranks make the same calls in the same order.

use inc_comm::{AlgoPath as Path, DType, ReduceOp};

/// Checked elements per sampled call besides the first and the last.
pub const SAMPLES: usize = 62;

/// Output regions in the arena start on this many bytes (like a fresh allocation).
pub const REGION_ALIGN: usize = 256;

/// Smallest output arena (bytes per slot); larger when `--max-bytes` needs it.
pub const MIN_ARENA_BYTES: usize = 64 << 20;

/// SplitMix64's finaliser: a bijective 64-bit mixer.
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Sizes every rank derives from the arguments alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Largest call in bytes per rank.
    pub max_bytes: usize,
    /// Bytes of one output arena (one per pipeline slot).
    pub arena_bytes: usize,
}

impl Geometry {
    /// The geometry for calls of at most `max_bytes` bytes.
    pub fn new(max_bytes: usize) -> Self {
        let need = max_bytes.saturating_add(2 * REGION_ALIGN);
        let arena_bytes = MIN_ARENA_BYTES.max(need.div_ceil(REGION_ALIGN) * REGION_ALIGN);
        Self {
            max_bytes,
            arena_bytes,
        }
    }

    /// Most elements of `dtype` in one call.
    pub fn max_count(&self, dtype: DType) -> usize {
        (self.max_bytes / dtype.size()).max(1)
    }

    /// Elements of `dtype` in each rank's input pattern: twice the largest call plus a
    /// margin, so that even the largest call has `max_count + 64` starting points.
    pub fn pattern_len(&self, dtype: DType) -> usize {
        2 * self.max_count(dtype) + 64
    }

    /// Bytes a call of `n` elements of `dtype` reserves in the arena (its region rounded
    /// up, plus room for a misaligned start).
    pub fn reserve(&self, dtype: DType, n: usize) -> usize {
        (n * dtype.size() + REGION_ALIGN).div_ceil(REGION_ALIGN) * REGION_ALIGN
    }
}

/// One call of the sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    /// Position in the sequence (0-based).
    pub index: u64,
    /// Element type.
    pub dtype: DType,
    /// Reduction.
    pub op: ReduceOp,
    /// Forced path; `None` = auto (the selector chooses).
    pub path: Option<Path>,
    /// Elements per rank.
    pub n: usize,
    /// In place (the input is first copied into the output region) or out of place
    /// (the input is read straight from the pattern).
    pub in_place: bool,
    /// On a symmetric tensor (cuda): the input is copied into the rank's symmetric tensor
    /// at `out_shift` elements, reduced there in place (`Comm::allreduce_symmetric`: the
    /// zero-copy two-shot at its sizes; a shifted start takes the copy-in path), and copied
    /// out into the output region. Overrides `in_place`.
    pub zero_copy: bool,
    /// First input element: rank r's input is its pattern's elements `in_off..in_off + n`.
    pub in_off: usize,
    /// Elements the output starts after its 256-byte aligned region start (0: aligned).
    pub out_shift: usize,
    /// Byte offset of the output in the batch's arena (set by [`Planner::batch`]).
    pub out_off: usize,
}

impl Call {
    /// Bytes of the output (and of each rank's input).
    pub fn bytes(&self) -> usize {
        self.n * self.dtype.size()
    }

    /// `call 12 (bf16 sum, 300 elements, path one-shot, in place, input at 64, output
    /// shift 0)`.
    pub fn describe(&self) -> String {
        format!(
            "call {} ({} {}, {} elements, path {}, {}, input at {}, output shift {})",
            self.index,
            self.dtype,
            self.op,
            self.n,
            self.path.map_or("auto", |p| p.name()),
            if self.zero_copy {
                "zero-copy (symmetric tensor)"
            } else if self.in_place {
                "in place"
            } else {
                "out of place"
            },
            self.in_off,
            self.out_shift
        )
    }
}

/// Draws call `index` of the sequence of `seed` (`paths`: the forced paths on offer;
/// the path is one of them or auto, auto twice as often as each).
pub fn draw(seed: u64, index: u64, paths: &[Path], geo: &Geometry) -> Call {
    let h = mix(seed.wrapping_mul(31) ^ index);
    let g = mix(h ^ 0x005e_ed0f_ca11);
    let dtype = DType::ALL[(h % 3) as usize];
    let op = ReduceOp::ALL[((h >> 8) % 4) as usize];
    let k = ((h >> 16) % (paths.len() as u64 + 2)) as usize;
    let path = paths.get(k).copied();
    let max_n = geo.max_count(dtype);
    // log-uniform in 1..=max_n, with exactly 1 and max_n now and then
    let u = ((h >> 24) % 1_000_000) as f64 / 1_000_000.0;
    let n = match (h >> 44) % 16 {
        0 => 1,
        1 => max_n,
        _ => ((max_n as f64).powf(u) as usize).clamp(1, max_n),
    };
    let es = dtype.size();
    let per16 = 16 / es;
    // input start: uniform over the pattern; 16-byte aligned three times in four
    let span = geo.pattern_len(dtype) - n + 1;
    let mut in_off = (g % span as u64) as usize;
    if (g >> 40) % 4 != 0 {
        in_off -= in_off % per16;
    }
    // output: aligned three times in four, else shifted by 1..16/es - 1 elements
    let out_shift = if (g >> 44) % 4 == 0 {
        1 + ((g >> 48) as usize) % (per16 - 1)
    } else {
        0
    };
    Call {
        index,
        dtype,
        op,
        path,
        n,
        in_place: (g >> 52) % 4 == 0,
        zero_copy: (g >> 56) % 4 == 0,
        in_off,
        out_shift,
        out_off: 0,
    }
}

/// Consecutive calls run together: eagerly, or captured into one CUDA graph; their
/// outputs lie side by side in one arena and are downloaded and checked together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Position of the batch in the run (0-based).
    pub number: u64,
    /// The calls, `out_off` set.
    pub calls: Vec<Call>,
    /// Arena bytes used (the end of the last output region).
    pub bytes: usize,
    /// Every element of every call is compared with the reference (else a sample).
    pub full: bool,
    /// Captured into a CUDA graph (cuda backend), else eager.
    pub graph: bool,
}

/// Cuts the sequence into batches.
pub struct Planner {
    /// Seed of the sequence.
    pub seed: u64,
    /// Forced paths on offer.
    pub paths: Vec<Path>,
    /// Sizes.
    pub geo: Geometry,
    /// Most calls per batch.
    pub batch_calls: usize,
    /// Every `full_every`-th batch is checked in full (1: all).
    pub full_every: u64,
    /// Whether batches alternate eager / graph (cuda backend).
    pub graphs: bool,
    /// Whether calls may be on symmetric tensors (cuda backend); else none is.
    pub symmetric: bool,
}

impl Planner {
    /// Whether batch `number` is checked element by element in full.
    pub fn is_full(&self, number: u64) -> bool {
        number % self.full_every.max(1) == 0
    }

    /// Batch `number`, starting at call `first`, taking calls while fewer than `total`
    /// were taken in all, the batch has fewer than `batch_calls` and the arena has room.
    /// `can(path, bytes, dtype)` says whether a forced path can take a call; one that
    /// cannot runs on auto (every rank decides the same).
    pub fn batch(
        &self,
        number: u64,
        first: u64,
        total: u64,
        can: impl Fn(Path, u64, DType) -> bool,
    ) -> Batch {
        let mut calls = Vec::new();
        let mut used = 0usize;
        let mut index = first;
        while index < total && calls.len() < self.batch_calls.max(1) {
            let mut c = draw(self.seed, index, &self.paths, &self.geo);
            c.zero_copy &= self.symmetric;
            if let Some(p) = c.path {
                if !can(p, c.bytes() as u64, c.dtype) {
                    c.path = None;
                }
            }
            let reserve = self.geo.reserve(c.dtype, c.n);
            if !calls.is_empty() && used + reserve > self.geo.arena_bytes {
                break;
            }
            c.out_off = used + c.out_shift * c.dtype.size();
            used += reserve;
            calls.push(c);
            index += 1;
        }
        let bytes = calls.last().map_or(0, |c| c.out_off + c.bytes());
        Batch {
            number,
            calls,
            bytes,
            full: self.is_full(number),
            graph: self.graphs && number % 2 == 1,
        }
    }

    /// The warm-up batch: one small out-of-place call per (forced path, dtype, op),
    /// eager and checked in full, so that every kernel is compiled before the first
    /// capture. Not part of the sequence (indices from `u64::MAX` down).
    pub fn warm_up(&self) -> Batch {
        let mut calls = Vec::new();
        let mut used = 0;
        let mut index = u64::MAX;
        for &p in &self.paths {
            for dtype in DType::ALL {
                for op in ReduceOp::ALL {
                    let n = self.geo.max_count(dtype).min(64);
                    calls.push(Call {
                        index,
                        dtype,
                        op,
                        path: Some(p),
                        n,
                        in_place: false,
                        zero_copy: false,
                        in_off: 0,
                        out_shift: 0,
                        out_off: used,
                    });
                    used += self.geo.reserve(dtype, n);
                    index -= 1;
                }
            }
        }
        let bytes = calls.last().map_or(0, |c| c.out_off + c.bytes());
        Batch {
            number: u64::MAX,
            calls,
            bytes,
            full: true,
            graph: false,
        }
    }
}

/// The elements of a sampled call that are compared with the reference: the first, the
/// last and [`SAMPLES`] drawn from the seed and the call (sorted, distinct).
pub fn sample_indices(seed: u64, c: &Call) -> Vec<usize> {
    let mut v = Vec::with_capacity(SAMPLES + 2);
    v.push(0);
    v.push(c.n - 1);
    for j in 0..SAMPLES as u64 {
        v.push((mix(seed ^ c.index.wrapping_mul(7919) ^ (j << 40)) % c.n as u64) as usize);
    }
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planner(paths: Vec<Path>, max_bytes: usize, batch: usize) -> Planner {
        Planner {
            seed: 7,
            paths,
            geo: Geometry::new(max_bytes),
            batch_calls: batch,
            full_every: 4,
            graphs: true,
            symmetric: true,
        }
    }

    #[test]
    fn draws_cover_every_dimension_and_stay_in_bounds() {
        let geo = Geometry::new(1 << 20);
        let paths = [Path::PushOneShot, Path::OneShot, Path::TwoShot];
        let (mut dt, mut ops, mut ps) = ([0; 3], [0; 4], [0; 4]);
        let (mut ones, mut maxes, mut inplace, mut shifted, mut odd_in) = (0, 0, 0, 0, 0);
        let (mut zc, mut zc_shifted) = (0, 0);
        for i in 0..20_000 {
            let c = draw(3, i, &paths, &geo);
            assert_eq!(c.index, i);
            let max_n = geo.max_count(c.dtype);
            assert!(c.n >= 1 && c.n <= max_n, "{c:?}");
            assert!(c.in_off + c.n <= geo.pattern_len(c.dtype), "{c:?}");
            assert!(c.out_shift * c.dtype.size() < 16, "{c:?}");
            dt[DType::ALL.iter().position(|d| *d == c.dtype).unwrap()] += 1;
            ops[ReduceOp::ALL.iter().position(|o| *o == c.op).unwrap()] += 1;
            ps[c.path
                .map_or(3, |p| paths.iter().position(|q| *q == p).unwrap())] += 1;
            ones += usize::from(c.n == 1);
            maxes += usize::from(c.n == max_n);
            inplace += usize::from(c.in_place);
            shifted += usize::from(c.out_shift != 0);
            odd_in += usize::from((c.in_off * c.dtype.size()) % 16 != 0);
            zc += usize::from(c.zero_copy);
            zc_shifted += usize::from(c.zero_copy && c.out_shift != 0);
        }
        assert!(dt.iter().all(|&x| x > 6000), "{dt:?}");
        assert!(ops.iter().all(|&x| x > 4500), "{ops:?}");
        // auto takes two shares of five
        assert!(ps[..3].iter().all(|&x| x > 3500) && ps[3] > 7000, "{ps:?}");
        assert!(ones > 1000 && maxes > 1000, "{ones} {maxes}");
        assert!((4000..6000).contains(&inplace), "{inplace}");
        assert!((4000..6000).contains(&shifted), "{shifted}");
        assert!(odd_in > 2000, "{odd_in}");
        // a quarter on symmetric tensors, a quarter of those at an unaligned start
        assert!((4000..6000).contains(&zc), "{zc}");
        assert!(zc_shifted > 800, "{zc_shifted}");
        // the same seed and index give the same call; another seed another sequence
        assert_eq!(draw(3, 5, &paths, &geo), draw(3, 5, &paths, &geo));
        let same = (0..100)
            .filter(|&i| draw(3, i, &paths, &geo) == draw(4, i, &paths, &geo))
            .count();
        assert!(same < 10, "{same}");
    }

    #[test]
    fn no_symmetric_calls_without_symmetric_tensors() {
        let mut p = planner(vec![Path::OneShot], 1 << 16, 512);
        assert!(p
            .batch(0, 0, 512, |_, _, _| true)
            .calls
            .iter()
            .any(|c| c.zero_copy));
        p.symmetric = false;
        assert!(!p
            .batch(0, 0, 512, |_, _, _| true)
            .calls
            .iter()
            .any(|c| c.zero_copy));
    }

    #[test]
    fn tiny_max_bytes_still_draws_valid_calls() {
        let geo = Geometry::new(4);
        for i in 0..1000 {
            let c = draw(1, i, &[Path::OneShot], &geo);
            assert!(c.n >= 1 && c.in_off + c.n <= geo.pattern_len(c.dtype));
            assert!(c.bytes() <= 4);
        }
    }

    #[test]
    fn batches_are_disjoint_in_the_arena_and_cover_the_sequence() {
        let p = planner(vec![Path::OneShot], 1 << 20, 256);
        let mut first = 0;
        let mut number = 0;
        while first < 3000 {
            let b = p.batch(number, first, 3000, |_, _, _| true);
            assert!(!b.calls.is_empty());
            assert_eq!(b.calls[0].index, first);
            assert!(b.calls.len() <= 256);
            assert!(b.bytes <= p.geo.arena_bytes);
            assert_eq!(b.full, number % 4 == 0);
            assert_eq!(b.graph, number % 2 == 1);
            let mut end = 0;
            for c in &b.calls {
                assert!(c.out_off >= end, "regions overlap");
                assert_eq!((c.out_off - c.out_shift * c.dtype.size()) % REGION_ALIGN, 0);
                assert_eq!(c.out_off % c.dtype.size(), 0, "element aligned");
                end = c.out_off + c.bytes();
            }
            first += b.calls.len() as u64;
            number += 1;
        }
        assert_eq!(first, 3000);
        // a batch ends at the requested total
        let b = p.batch(0, 10, 13, |_, _, _| true);
        assert_eq!(b.calls.len(), 3);
    }

    #[test]
    fn a_small_arena_cuts_batches_by_bytes() {
        let mut p = planner(vec![], 1 << 20, 10_000);
        p.geo.arena_bytes = 4 << 20;
        let b = p.batch(0, 0, 100_000, |_, _, _| true);
        assert!(b.calls.len() < 10_000 && b.bytes <= 4 << 20);
        // one call larger than the arena still runs alone
        p.geo.arena_bytes = 16;
        let b = p.batch(0, 0, 100, |_, _, _| true);
        assert_eq!(b.calls.len(), 1);
    }

    #[test]
    fn a_path_that_cannot_take_a_call_becomes_auto() {
        let p = planner(vec![Path::PushOneShot], 1 << 20, 512);
        let b = p.batch(0, 0, 512, |_, bytes, _| bytes <= 1024);
        for c in &b.calls {
            if c.bytes() > 1024 {
                assert_eq!(c.path, None);
            }
        }
        assert!(b.calls.iter().any(|c| c.path == Some(Path::PushOneShot)));
    }

    #[test]
    fn warm_up_has_every_path_dtype_and_op_once() {
        let p = planner(vec![Path::OneShot, Path::TwoShot], 1 << 20, 256);
        let w = p.warm_up();
        assert_eq!(w.calls.len(), 2 * 3 * 4);
        assert!(w.full && !w.graph);
        let mut end = 0;
        for c in &w.calls {
            assert!(c.out_off >= end && c.path.is_some() && !c.in_place);
            end = c.out_off + c.bytes();
        }
        assert!(w.bytes <= p.geo.arena_bytes);
    }

    #[test]
    fn samples_include_both_ends_and_stay_in_range() {
        let geo = Geometry::new(1 << 20);
        for i in 0..500 {
            let c = draw(9, i, &[], &geo);
            let s = sample_indices(9, &c);
            assert_eq!(s[0], 0);
            assert_eq!(*s.last().unwrap(), c.n - 1);
            assert!(s.len() <= SAMPLES + 2 && s.windows(2).all(|w| w[0] < w[1]));
            if c.n >= 1 << 16 {
                assert!(s.len() > SAMPLES - 4, "{} samples of {}", s.len(), c.n);
            }
        }
    }
}
