//! Element codecs (f32/f16/bf16 chunks), the reduction operators, the reference
//! allreduce in the inc fold order, and the hcm table check.

use half::{bf16, f16};

use crate::error::SimError;
use crate::types::{Algo, DType, ReduceOp, CHUNK_BYTES, MAX_RANKS};

/// Reduction helpers shared by the backend and the reference.
pub(super) fn fold(op: ReduceOp, acc: f32, x: f32) -> f32 {
    match op {
        ReduceOp::Sum | ReduceOp::Avg => acc + x,
        ReduceOp::Min => {
            if x < acc {
                x
            } else {
                acc
            }
        }
        ReduceOp::Max => {
            if x > acc {
                x
            } else {
                acc
            }
        }
    }
}

pub(super) fn finish(op: ReduceOp, acc: f32, world: usize) -> f32 {
    match op {
        ReduceOp::Avg => acc * (1.0 / world as f32),
        _ => acc,
    }
}

/// Lanes (elements) of one 16-byte chunk.
pub(super) fn lanes(dtype: DType) -> usize {
    CHUNK_BYTES / dtype.size()
}

pub(super) fn decode(dtype: DType, bytes: &[u8; CHUNK_BYTES]) -> [f32; 8] {
    let mut out = [0f32; 8];
    match dtype {
        DType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        DType::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_ne_bytes([c[0], c[1]]).to_f32();
            }
        }
        DType::Bf16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_ne_bytes([c[0], c[1]]).to_f32();
            }
        }
    }
    out
}

pub(super) fn encode(dtype: DType, vals: &[f32; 8]) -> [u8; CHUNK_BYTES] {
    let mut out = [0u8; CHUNK_BYTES];
    match dtype {
        DType::F32 => {
            for (c, v) in out.chunks_exact_mut(4).zip(vals) {
                c.copy_from_slice(&v.to_ne_bytes());
            }
        }
        DType::F16 => {
            for (c, v) in out.chunks_exact_mut(2).zip(vals) {
                c.copy_from_slice(&f16::from_f32(*v).to_ne_bytes());
            }
        }
        DType::Bf16 => {
            for (c, v) in out.chunks_exact_mut(2).zip(vals) {
                c.copy_from_slice(&bf16::from_f32(*v).to_ne_bytes());
            }
        }
    }
    out
}

/// Chunk `c` of `bytes`, zero-padded past the end.
pub(super) fn chunk_of(bytes: &[u8], c: usize) -> [u8; CHUNK_BYTES] {
    let mut out = [0u8; CHUNK_BYTES];
    let start = c * CHUNK_BYTES;
    if let Some(src) = bytes.get(start..) {
        let n = src.len().min(CHUNK_BYTES);
        out[..n].copy_from_slice(&src[..n]);
    }
    out
}

pub(super) fn put_chunk(bytes: &mut [u8], c: usize, chunk: &[u8; CHUNK_BYTES]) {
    let start = c * CHUNK_BYTES;
    if let Some(dst) = bytes.get_mut(start..) {
        let n = dst.len().min(CHUNK_BYTES);
        dst[..n].copy_from_slice(&chunk[..n]);
    }
}

/// Validates an hcm table: every row names 3 quad neighbours and a relay, quads are
/// consistent (each neighbour's quad is the same set) and relays are mutual.
pub fn validate_hcm(table: &[[usize; 4]; 8]) -> Result<(), SimError> {
    let quad = |r: usize| -> Result<Vec<usize>, SimError> {
        let row = table
            .get(r)
            .ok_or_else(|| SimError::Config(format!("hcm: rank {r} out of range")))?;
        let mut q = vec![r, row[0], row[1], row[2]];
        q.sort_unstable();
        Ok(q)
    };
    for (r, row) in table.iter().enumerate() {
        let mut seen = [false; 8];
        seen[r] = true;
        for &n in row {
            if n >= 8 || seen[n] {
                return Err(SimError::Config(format!(
                    "hcm row {r} = {row:?}: entries must be distinct ranks 0..8 other than {r}"
                )));
            }
            seen[n] = true;
        }
        let qr = quad(r)?;
        for &n in &row[..3] {
            if quad(n)? != qr {
                return Err(SimError::Config(format!(
                    "hcm: quad of rank {r} {qr:?} differs from quad of its neighbour {n}"
                )));
            }
        }
        let relay_row = table
            .get(row[3])
            .ok_or_else(|| SimError::Config("hcm relay out of range".into()))?;
        if relay_row[3] != r || qr.contains(&row[3]) {
            return Err(SimError::Config(format!(
                "hcm: relay of rank {r} is {} whose relay is {} (must be mutual, outside the quad)",
                row[3], relay_row[3]
            )));
        }
    }
    Ok(())
}

/// The "lo" quad first: (quad of `rank`, quad of its relay), each ascending, ordered so the
/// quad holding the smaller rank comes first.
fn hcm_quads(table_row: &[usize; 4], relay_row: &[usize; 4], rank: usize) -> [[usize; 4]; 2] {
    let mut mine = [rank, table_row[0], table_row[1], table_row[2]];
    let relay = table_row[3];
    let mut theirs = [relay, relay_row[0], relay_row[1], relay_row[2]];
    mine.sort_unstable();
    theirs.sort_unstable();
    if mine[0] < theirs[0] {
        [mine, theirs]
    } else {
        [theirs, mine]
    }
}

/// The allreduce of `inputs` (one per rank, native-endian `dtype` elements) computed in the
/// exact fold order of `algo` in the inc protocol, so it equals the backend's output bit
/// for bit. `hcm` is required for [`Algo::Hcm`] (8 ranks).
pub fn reference_allreduce(
    algo: Algo,
    dtype: DType,
    op: ReduceOp,
    inputs: &[&[u8]],
    hcm: Option<&[[usize; 4]; 8]>,
) -> Result<Vec<u8>, SimError> {
    let world = inputs.len();
    let len = inputs.first().map(|i| i.len()).unwrap_or(0);
    if world == 0 || world > MAX_RANKS || inputs.iter().any(|i| i.len() != len) {
        return Err(SimError::Config(format!(
            "reference: need 1..={MAX_RANKS} inputs of equal length"
        )));
    }
    if len % dtype.size() != 0 {
        return Err(SimError::Config(format!(
            "reference: {len} bytes is not a whole number of {dtype}"
        )));
    }
    let n = lanes(dtype);
    let chunks = len.div_ceil(CHUNK_BYTES);
    let mut out = vec![0u8; len];
    let dec: Vec<Vec<[f32; 8]>> = inputs
        .iter()
        .map(|i| {
            (0..chunks)
                .map(|c| decode(dtype, &chunk_of(i, c)))
                .collect()
        })
        .collect();
    let quads = match algo {
        Algo::Hcm => {
            let t = hcm.ok_or_else(|| SimError::Config("hcm needs a table".into()))?;
            if world != 8 {
                return Err(SimError::Config("hcm needs 8 ranks".into()));
            }
            validate_hcm(t)?;
            Some(hcm_quads(&t[0], &t[t[0][3]], 0))
        }
        _ => None,
    };
    for c in 0..chunks {
        let mut acc = [0f32; 8];
        for (l, a) in acc.iter_mut().enumerate().take(n) {
            let val = |r: usize| dec.get(r).and_then(|d| d.get(c)).map_or(0.0, |v| v[l]);
            *a = match &quads {
                None => {
                    let mut s = val(0);
                    for r in 1..world {
                        s = fold(op, s, val(r));
                    }
                    s
                }
                Some(qs) => {
                    let part = |q: &[usize; 4]| {
                        let mut s = val(q[0]);
                        for &r in &q[1..] {
                            s = fold(op, s, val(r));
                        }
                        s
                    };
                    fold(op, part(&qs[0]), part(&qs[1]))
                }
            };
            *a = finish(op, *a, world);
        }
        put_chunk(&mut out, c, &encode(dtype, &acc));
    }
    Ok(out)
}
