//! CPU data backend: the `inc` protocol (PROTOCOL.md v1, `program::inc::*`) executed on
//! real f32/f16/bf16 data by real threads (one per block) with real atomics: flags are
//! `AtomicU64` written with `Release` and spun on with `Acquire`, data words are relaxed
//! atomics. Ranks may be threads of one process ([`Region::new_local`]) or separate
//! processes ([`Region::create_shm`]/[`Region::open_shm`]).
//!
//! inc-comm uses it as its `sim` backend, so the whole library runs without a GPU. The
//! zero-copy two-shot on symmetric tensors ([`CpuRank::allreduce_symmetric`], program
//! `inc::two_shot_zc`) works on tensors in regions of their own, in place.

mod push;
mod region;
mod symmetric;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use half::{bf16, f16};

pub use region::{Region, RegionLayout, CPU_PUSH_SLOT_BYTES};

use crate::error::SimError;
use crate::program::{self, PeerSet, Protocol, Step};
use crate::types::{
    abort_word, call_sig, flag_epoch, flag_sig, flag_word, Algo, BarrierKind, DType, ErrorRecord,
    PadLayout, ReduceOp, CHUNK_BYTES, ERR_CALL_MISMATCH, ERR_PEER_ABORT, ERR_SEQ_MISMATCH,
    ERR_TIMEOUT, MAX_BLOCKS, MAX_RANKS,
};

/// Launch configuration of the CPU backend.
#[derive(Clone, Copy, Debug)]
pub struct CpuConfig {
    /// Default block count (threads per call); 1..=MAX_BLOCKS.
    pub blocks: usize,
    /// Chunks per block in the grid-stride partition (`T` in PROTOCOL.md).
    pub threads_per_block: usize,
    /// Deadline of every bounded wait.
    pub timeout: Duration,
}

impl Default for CpuConfig {
    fn default() -> Self {
        CpuConfig {
            blocks: 2,
            threads_per_block: 4,
            timeout: Duration::from_secs(10),
        }
    }
}

/// One rank of a CPU communicator.
#[derive(Debug)]
pub struct CpuRank {
    rank: usize,
    world: usize,
    regions: Vec<Arc<Region>>,
    cfg: CpuConfig,
    hcm: Option<[usize; 4]>,
}

/// Reduction helpers shared by the backend and the reference.
fn fold(op: ReduceOp, acc: f32, x: f32) -> f32 {
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

fn finish(op: ReduceOp, acc: f32, world: usize) -> f32 {
    match op {
        ReduceOp::Avg => acc * (1.0 / world as f32),
        _ => acc,
    }
}

/// Lanes (elements) of one 16-byte chunk.
fn lanes(dtype: DType) -> usize {
    CHUNK_BYTES / dtype.size()
}

fn decode(dtype: DType, bytes: &[u8; CHUNK_BYTES]) -> [f32; 8] {
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

fn encode(dtype: DType, vals: &[f32; 8]) -> [u8; CHUNK_BYTES] {
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
fn chunk_of(bytes: &[u8], c: usize) -> [u8; CHUNK_BYTES] {
    let mut out = [0u8; CHUNK_BYTES];
    let start = c * CHUNK_BYTES;
    if let Some(src) = bytes.get(start..) {
        let n = src.len().min(CHUNK_BYTES);
        out[..n].copy_from_slice(&src[..n]);
    }
    out
}

fn put_chunk(bytes: &mut [u8], c: usize, chunk: &[u8; CHUNK_BYTES]) {
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

/// Everything one block needs for one call.
struct CallCtx<'a> {
    me: &'a CpuRank,
    dtype: DType,
    op: ReduceOp,
    grid: usize,
    epoch: u32,
    parity: usize,
    sig: u32,
    input: &'a [u8],
    chunks: usize,
    /// Byte offset of the hcm partial region inside a half.
    partial_off: usize,
    /// The symmetric tensors of a zero-copy two-shot call (None otherwise).
    sym: Option<symmetric::Sym<'a>>,
}

/// Output chunks `(index, bytes)` produced by a block.
type Chunks = Vec<(usize, [u8; CHUNK_BYTES])>;

/// A failure inside a block (already recorded in the pad).
struct Failed;

impl CpuRank {
    /// A rank of a `world`-rank communicator over `regions` (one per rank, index = rank).
    /// `hcm` is this rank's row `[n0, n1, n2, relay]`; pass the whole table through
    /// [`CpuRank::with_hcm_table`] to have it validated.
    pub fn new(
        rank: usize,
        world: usize,
        regions: Vec<Arc<Region>>,
        cfg: CpuConfig,
        hcm: Option<[usize; 4]>,
    ) -> Result<Self, SimError> {
        if world == 0 || world > MAX_RANKS || rank >= world {
            return Err(SimError::Config(format!(
                "rank {rank} of world {world}: need 1 <= world <= {MAX_RANKS}, rank < world"
            )));
        }
        if regions.len() != world {
            return Err(SimError::Config(format!(
                "{} regions for world {world}",
                regions.len()
            )));
        }
        let layout = regions[rank].layout();
        if regions.iter().any(|r| r.layout() != layout) {
            return Err(SimError::Config("regions have different layouts".into()));
        }
        if cfg.blocks == 0 || cfg.blocks > MAX_BLOCKS || cfg.threads_per_block == 0 {
            return Err(SimError::Config(format!(
                "blocks must be 1..={MAX_BLOCKS} and threads_per_block >= 1"
            )));
        }
        if let Some(row) = hcm {
            if world != 8 || row.iter().any(|&n| n >= 8 || n == rank) {
                return Err(SimError::Config(format!(
                    "hcm row {row:?} invalid for rank {rank} of world {world}"
                )));
            }
        }
        Ok(CpuRank {
            rank,
            world,
            regions,
            cfg,
            hcm,
        })
    }

    /// Like [`CpuRank::new`] with a whole (validated) hcm table.
    pub fn with_hcm_table(
        rank: usize,
        regions: Vec<Arc<Region>>,
        cfg: CpuConfig,
        table: &[[usize; 4]; 8],
    ) -> Result<Self, SimError> {
        validate_hcm(table)?;
        let row = table
            .get(rank)
            .copied()
            .ok_or_else(|| SimError::Config(format!("rank {rank} not in hcm table")))?;
        Self::new(rank, 8, regions, cfg, Some(row))
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// World size.
    pub fn world(&self) -> usize {
        self.world
    }

    /// Largest input (bytes) `algo` accepts with these regions (two-shot keeps W receive
    /// slices and a gather area, `2 x C + W` chunks of a half; hcm keeps an f32 partial
    /// next to the input, so it takes a third of a half).
    pub fn max_bytes(&self, algo: Algo) -> usize {
        let half = self.own().layout().half_bytes;
        match algo {
            Algo::OneShot => half,
            Algo::TwoShot => (half / CHUNK_BYTES).saturating_sub(self.world) / 2 * CHUNK_BYTES,
            Algo::Hcm => (half / 3) / CHUNK_BYTES * CHUNK_BYTES,
            Algo::PushOneShot => self.push_max_bytes(),
        }
    }

    /// Raises the abort word on every rank's pad: every pending and later call fails.
    pub fn abort(&self) {
        let word = abort_word(self.rank as u32, ERR_PEER_ABORT);
        for r in &self.regions {
            if let Ok(a) = r.u32_at(PadLayout::ABORT) {
                let _ = a.compare_exchange(0, word, Ordering::AcqRel, Ordering::Acquire);
            }
        }
    }

    /// Whether this rank's abort word is set.
    pub fn is_aborted(&self) -> bool {
        self.own()
            .u32_at(PadLayout::ABORT)
            .map(|a| a.load(Ordering::Acquire) != 0)
            .unwrap_or(true)
    }

    /// The error record stored in this rank's pad (code 0 when none).
    pub fn error_record(&self) -> ErrorRecord {
        let r = self.own();
        let u32v = |off| {
            r.u32_at(off)
                .map(|a| a.load(Ordering::Acquire))
                .unwrap_or(0)
        };
        let u64v = |off| {
            r.u64_at(off)
                .map(|a| a.load(Ordering::Acquire))
                .unwrap_or(0)
        };
        ErrorRecord {
            code: u32v(PadLayout::ERROR_CODE),
            rank: u32v(PadLayout::ERROR_RANK),
            block: u32v(PadLayout::ERROR_BLOCK),
            peer: u32v(PadLayout::ERROR_PEER),
            phase: u32v(PadLayout::ERROR_PHASE),
            _pad: 0,
            expected: u64v(PadLayout::ERROR_EXPECTED),
            seen: u64v(PadLayout::ERROR_SEEN),
        }
    }

    /// Out-of-place allreduce: `output = allreduce(input)`; bytes are native-endian
    /// elements of `dtype`; `blocks` threads (1..=MAX_BLOCKS) run the call.
    pub fn allreduce(
        &self,
        algo: Algo,
        dtype: DType,
        op: ReduceOp,
        blocks: usize,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), SimError> {
        if output.len() != input.len() {
            return Err(SimError::Config(format!(
                "output has {} bytes, input {}",
                output.len(),
                input.len()
            )));
        }
        let results = self.run_call(algo, dtype, op, blocks, input)?;
        for (c, chunk) in results {
            put_chunk(output, c, &chunk);
        }
        Ok(())
    }

    /// In-place allreduce of `data`.
    pub fn allreduce_in_place(
        &self,
        algo: Algo,
        dtype: DType,
        op: ReduceOp,
        blocks: usize,
        data: &mut [u8],
    ) -> Result<(), SimError> {
        let results = self.run_call(algo, dtype, op, blocks, data)?;
        for (c, chunk) in results {
            put_chunk(data, c, &chunk);
        }
        Ok(())
    }

    fn own(&self) -> &Region {
        // `new` checked rank < regions.len().
        &self.regions[self.rank]
    }

    fn region(&self, r: usize) -> Result<&Region, SimError> {
        self.regions
            .get(r)
            .map(|a| &**a)
            .ok_or_else(|| SimError::Config(format!("no region for rank {r}")))
    }

    /// The error a poisoned comm reports.
    fn poisoned_error(&self) -> SimError {
        let rec = self.error_record();
        if rec.code != 0 {
            return SimError::Protocol(rec);
        }
        let word = self
            .own()
            .u32_at(PadLayout::ABORT)
            .map(|a| a.load(Ordering::Acquire))
            .unwrap_or(0);
        SimError::Protocol(ErrorRecord {
            code: ERR_PEER_ABORT,
            rank: self.rank as u32,
            peer: crate::types::abort_rank(word),
            ..ErrorRecord::default()
        })
    }

    fn run_call(
        &self,
        algo: Algo,
        dtype: DType,
        op: ReduceOp,
        blocks: usize,
        input: &[u8],
    ) -> Result<Chunks, SimError> {
        if algo == Algo::PushOneShot {
            return self.run_push(dtype, op, blocks, input);
        }
        check_call_shape(dtype, blocks, input)?;
        if input.len() > self.max_bytes(algo) {
            return Err(SimError::Config(format!(
                "{} bytes exceeds {algo}'s limit of {} bytes",
                input.len(),
                self.max_bytes(algo)
            )));
        }
        if algo == Algo::Hcm && (self.world != 8 || self.hcm.is_none()) {
            return Err(SimError::Config(
                "hcm needs 8 ranks and a hybrid cube mesh table".into(),
            ));
        }
        if self.is_aborted() {
            return Err(self.poisoned_error());
        }
        let own = self.own();
        let epoch = own
            .u32_at(PadLayout::EPOCH)?
            .load(Ordering::Acquire)
            .wrapping_add(1);
        let count = (input.len() / dtype.size()) as u64;
        let chunks = input.len().div_ceil(CHUNK_BYTES);
        let ctx = CallCtx {
            me: self,
            dtype,
            op,
            grid: blocks,
            epoch,
            parity: (epoch % 2) as usize,
            sig: call_sig(algo, dtype, op, count),
            input,
            chunks,
            partial_off: chunks * CHUNK_BYTES,
            sym: None,
        };
        let steps = program::steps(Protocol::Inc, algo);
        ctx.run_blocks(|c, b| c.run_block(b, &steps))
    }
}

/// The checks every call makes first: a launchable grid and whole elements.
fn check_call_shape(dtype: DType, blocks: usize, input: &[u8]) -> Result<(), SimError> {
    if blocks == 0 || blocks > MAX_BLOCKS {
        return Err(SimError::Config(format!(
            "blocks = {blocks}, must be 1..={MAX_BLOCKS}"
        )));
    }
    if input.len() % dtype.size() != 0 {
        return Err(SimError::Config(format!(
            "{} bytes is not a whole number of {dtype} elements",
            input.len()
        )));
    }
    Ok(())
}

impl CallCtx<'_> {
    /// Runs `block` for every block of the grid on its own thread and gathers their
    /// chunks in block order; a failed (or panicked) block fails the call with the
    /// rank's poison error.
    fn run_blocks<F>(&self, block: F) -> Result<Chunks, SimError>
    where
        F: Fn(&Self, usize) -> Result<Chunks, Failed> + Sync,
    {
        let outcomes: Vec<Result<Chunks, Failed>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..self.grid)
                .map(|b| {
                    let block = &block;
                    s.spawn(move || block(self, b))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Err(Failed)))
                .collect()
        });
        let mut out = Vec::with_capacity(self.chunks);
        for o in outcomes {
            match o {
                Ok(v) => out.extend(v),
                Err(Failed) => return Err(self.me.poisoned_error()),
            }
        }
        Ok(out)
    }

    fn my_chunks(&self, b: usize) -> impl Iterator<Item = usize> + '_ {
        let t = self.me.cfg.threads_per_block;
        let g = self.grid;
        (0..self.chunks).filter(move |c| (c / t) % g == b)
    }

    fn half(&self, r: usize) -> Result<(&Region, usize), Failed> {
        let reg = self.me.region(r).map_err(|_| Failed)?;
        let off = reg.layout().half_offset(self.parity);
        Ok((reg, off))
    }

    fn load_chunk(&self, r: usize, byte_off: usize) -> Result<[u8; CHUNK_BYTES], Failed> {
        let (reg, half) = self.half(r)?;
        let w0 = reg.u64_at(half + byte_off).map_err(|_| Failed)?;
        let w1 = reg.u64_at(half + byte_off + 8).map_err(|_| Failed)?;
        let mut out = [0u8; CHUNK_BYTES];
        out[..8].copy_from_slice(&w0.load(Ordering::Relaxed).to_ne_bytes());
        out[8..].copy_from_slice(&w1.load(Ordering::Relaxed).to_ne_bytes());
        Ok(out)
    }

    /// Stores `chunk` at `byte_off` of rank `r`'s half of this call (my own, or a peer's:
    /// two-shot's remote stores), as two relaxed 8-byte words.
    fn store_chunk(
        &self,
        r: usize,
        byte_off: usize,
        chunk: &[u8; CHUNK_BYTES],
    ) -> Result<(), Failed> {
        let (reg, half) = self.half(r)?;
        for (i, w) in chunk.chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            reg.u64_at(half + byte_off + 8 * i)
                .map_err(|_| Failed)?
                .store(u64::from_ne_bytes(b), Ordering::Relaxed);
        }
        Ok(())
    }

    /// f32 partials of chunk `c` on rank `r` (hcm).
    fn load_partial(&self, r: usize, c: usize) -> Result<[f32; 8], Failed> {
        let n = lanes(self.dtype);
        let mut out = [0f32; 8];
        let (reg, half) = self.half(r)?;
        for (l, o) in out.iter_mut().enumerate().take(n) {
            let off = half + self.partial_off + (c * n + l) * 4;
            let bits = reg.u32_at(off).map_err(|_| Failed)?.load(Ordering::Relaxed);
            *o = f32::from_bits(bits);
        }
        Ok(out)
    }

    fn store_partial(&self, c: usize, vals: &[f32; 8]) -> Result<(), Failed> {
        let n = lanes(self.dtype);
        let (reg, half) = self.half(self.me.rank)?;
        for (l, v) in vals.iter().enumerate().take(n) {
            let off = half + self.partial_off + (c * n + l) * 4;
            reg.u32_at(off)
                .map_err(|_| Failed)?
                .store(v.to_bits(), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Records the first error on my pad and raises abort on every pad.
    fn fail(&self, rec: ErrorRecord, broadcast: bool) -> Failed {
        let own = self.me.own();
        let won = own
            .u32_at(PadLayout::ERROR_CODE)
            .map(|c| {
                c.compare_exchange(0, rec.code, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            })
            .unwrap_or(false);
        if won {
            let put32 = |off, v| {
                if let Ok(a) = own.u32_at(off) {
                    a.store(v, Ordering::Release);
                }
            };
            let put64 = |off, v| {
                if let Ok(a) = own.u64_at(off) {
                    a.store(v, Ordering::Release);
                }
            };
            put32(PadLayout::ERROR_RANK, rec.rank);
            put32(PadLayout::ERROR_BLOCK, rec.block);
            put32(PadLayout::ERROR_PEER, rec.peer);
            put32(PadLayout::ERROR_PHASE, rec.phase);
            put64(PadLayout::ERROR_EXPECTED, rec.expected);
            put64(PadLayout::ERROR_SEEN, rec.seen);
        }
        let word = abort_word(self.me.rank as u32, rec.code);
        let targets: Vec<usize> = if broadcast {
            (0..self.me.world).collect()
        } else {
            vec![self.me.rank]
        };
        for r in targets {
            if let Ok(a) = self.me.region(r).and_then(|g| g.u32_at(PadLayout::ABORT)) {
                let _ = a.compare_exchange(0, word, Ordering::AcqRel, Ordering::Acquire);
            }
        }
        Failed
    }

    fn barrier(
        &self,
        b: usize,
        phase: usize,
        kind: BarrierKind,
        set: PeerSet,
    ) -> Result<(), Failed> {
        let me = self.me.rank;
        let peers = set.members(me, self.me.world, self.me.hcm.as_ref());
        let want = flag_word(self.epoch, self.sig);
        let rec = |code, peer: usize, seen| ErrorRecord {
            code,
            rank: me as u32,
            block: b as u32,
            peer: peer as u32,
            phase: phase as u32,
            _pad: 0,
            expected: want,
            seen,
        };
        for &q in &peers {
            let slot = PadLayout::flag(kind, self.parity, b, me);
            let f = self
                .me
                .region(q)
                .and_then(|g| g.u64_at(slot))
                .map_err(|_| Failed)?;
            f.store(want, Ordering::Release);
        }
        let own = self.me.own();
        let abort = own.u32_at(PadLayout::ABORT).map_err(|_| Failed)?;
        let deadline = Instant::now() + self.me.cfg.timeout;
        for &q in &peers {
            let f = own
                .u64_at(PadLayout::flag(kind, self.parity, b, q))
                .map_err(|_| Failed)?;
            let mut spins: u32 = 0;
            loop {
                let v = f.load(Ordering::Acquire);
                if v == want {
                    break;
                }
                if flag_epoch(v) == self.epoch && flag_sig(v) != self.sig {
                    return Err(self.fail(rec(ERR_CALL_MISMATCH, q, v), true));
                }
                if (flag_epoch(v).wrapping_sub(self.epoch) as i32) > 0 {
                    return Err(self.fail(rec(ERR_SEQ_MISMATCH, q, v), true));
                }
                let a = abort.load(Ordering::Acquire);
                if a != 0 {
                    let who = crate::types::abort_rank(a) as usize;
                    return Err(self.fail(rec(ERR_PEER_ABORT, who, v), false));
                }
                spins = spins.wrapping_add(1);
                if spins % 64 == 0 && Instant::now() > deadline {
                    return Err(self.fail(rec(ERR_TIMEOUT, q, v), true));
                }
                if spins < 64 {
                    std::hint::spin_loop();
                } else if spins < 4096 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
        Ok(())
    }

    fn fold_peers(&self, c: usize, ranks: impl Iterator<Item = usize>) -> Result<[f32; 8], Failed> {
        let mut acc: Option<[f32; 8]> = None;
        for r in ranks {
            let v = decode(self.dtype, &self.load_chunk(r, c * CHUNK_BYTES)?);
            acc = Some(match acc {
                None => v,
                Some(mut a) => {
                    for (x, y) in a.iter_mut().zip(v) {
                        *x = fold(self.op, *x, y);
                    }
                    a
                }
            });
        }
        Ok(acc.unwrap_or([0.0; 8]))
    }

    fn finish_chunk(&self, mut acc: [f32; 8]) -> [u8; CHUNK_BYTES] {
        for a in acc.iter_mut() {
            *a = finish(self.op, *a, self.me.world);
        }
        encode(self.dtype, &acc)
    }

    /// Runs the inc program for block `b`; returns the output chunks this block produced.
    fn run_block(&self, b: usize, steps: &[Step]) -> Result<Chunks, Failed> {
        let me = self.me.rank;
        let world = self.me.world;
        let mut out = Vec::new();
        let slice = self.chunks.div_ceil(world).max(1);
        // two-shot: receive areas R[s] at s*S chunks, gather area G at W*S chunks.
        let gather = world * slice * CHUNK_BYTES;
        for (phase, step) in steps.iter().enumerate() {
            match *step {
                Step::Prologue => {
                    if self.me.is_aborted() {
                        return Err(Failed);
                    }
                }
                Step::CopyIn => {
                    for c in self.my_chunks(b) {
                        self.store_chunk(me, c * CHUNK_BYTES, &chunk_of(self.input, c))?;
                    }
                }
                Step::Barrier { kind, set } => self.barrier(b, phase, kind, set)?,
                Step::ReduceAll => {
                    for c in self.my_chunks(b) {
                        let acc = self.fold_peers(c, 0..world)?;
                        out.push((c, self.finish_chunk(acc)));
                    }
                }
                Step::Scatter => {
                    // Chunk c of slice q != me -> peer q's R[me][c - q*S].
                    for c in self.my_chunks(b) {
                        let q = (c / slice).min(world - 1);
                        if q != me {
                            let off = (me * slice + c - q * slice) * CHUNK_BYTES;
                            self.store_chunk(q, off, &chunk_of(self.input, c))?;
                        }
                    }
                }
                Step::ReduceSlice => {
                    // Fold my input and my own R[s] in rank order; the result goes to the
                    // output and into every peer's G[c].
                    for c in self.my_chunks(b).filter(|c| c / slice == me) {
                        let j = c - me * slice;
                        let mut acc: Option<[f32; 8]> = None;
                        for s in 0..world {
                            let raw = if s == me {
                                chunk_of(self.input, c)
                            } else {
                                self.load_chunk(me, (s * slice + j) * CHUNK_BYTES)?
                            };
                            let v = decode(self.dtype, &raw);
                            acc = Some(match acc {
                                None => v,
                                Some(mut a) => {
                                    for (x, y) in a.iter_mut().zip(v) {
                                        *x = fold(self.op, *x, y);
                                    }
                                    a
                                }
                            });
                        }
                        let chunk = self.finish_chunk(acc.unwrap_or([0.0; 8]));
                        for q in (0..world).filter(|&q| q != me) {
                            self.store_chunk(q, gather + c * CHUNK_BYTES, &chunk)?;
                        }
                        out.push((c, chunk));
                    }
                }
                Step::Gather => {
                    // Local reads of my G: the owners stored every other slice here.
                    for c in self.my_chunks(b) {
                        if (c / slice).min(world - 1) != me {
                            out.push((c, self.load_chunk(me, gather + c * CHUNK_BYTES)?));
                        }
                    }
                }
                Step::QuadReduce => {
                    let row = self.me.hcm.ok_or(Failed)?;
                    let mut quad = [me, row[0], row[1], row[2]];
                    quad.sort_unstable();
                    for c in self.my_chunks(b) {
                        let acc = self.fold_peers(c, quad.iter().copied())?;
                        self.store_partial(c, &acc)?;
                    }
                }
                Step::RelayReduce => {
                    let row = self.me.hcm.ok_or(Failed)?;
                    let relay = row[3];
                    let mut mine = [me, row[0], row[1], row[2]];
                    mine.sort_unstable();
                    // The relay's quad is the complement of mine (validated table).
                    let lo_is_mine = mine[0] == 0;
                    let (lo, hi) = if lo_is_mine { (me, relay) } else { (relay, me) };
                    for c in self.my_chunks(b) {
                        let a = self.load_partial(lo, c)?;
                        let h = self.load_partial(hi, c)?;
                        let mut acc = [0f32; 8];
                        for ((x, y), z) in acc.iter_mut().zip(a).zip(h) {
                            *x = fold(self.op, y, z);
                        }
                        out.push((c, self.finish_chunk(acc)));
                    }
                }
                Step::ReduceStore => self.reduce_store(b)?,
                Step::PushData | Step::PollReduce | Step::HdrCheck => {
                    // push-one-shot runs in cpu::push (run_call dispatches before this).
                    return Err(Failed);
                }
                Step::EndBarrier => {
                    // Only the zero-copy variants run it: the symmetric-tensor two-shot
                    // (the user rewrites that memory); the copy-in one-shot rotates parity
                    // halves instead (PROTOCOL.md "Why two parity halves").
                    if self.sym.is_some() {
                        self.barrier(b, phase, BarrierKind::End, PeerSet::Others)?;
                    }
                }
                Step::Epilogue => {
                    let own = self.me.own();
                    let done = own.u32_at(PadLayout::DONE).map_err(|_| Failed)?;
                    if done.fetch_add(1, Ordering::AcqRel) as usize == self.grid - 1 {
                        done.store(0, Ordering::Relaxed);
                        own.u32_at(PadLayout::EPOCH)
                            .map_err(|_| Failed)?
                            .store(self.epoch, Ordering::Release);
                    }
                }
            }
        }
        Ok(out)
    }
}
