//! CPU data backend: the `inc` protocol (PROTOCOL.md v1, `program::inc::*`) executed on
//! real f32/f16/bf16 data by real threads (one per block) with real atomics: flags are
//! `AtomicU64` written with `Release` and spun on with `Acquire`, data words are relaxed
//! atomics. Ranks may be threads of one process ([`Region::new_local`]) or separate
//! processes ([`Region::create_shm`]/[`Region::open_shm`]).
//!
//! inc-comm uses it as its `sim` backend, so the whole library runs without a GPU. The
//! copy-in one-shot is the push form (`inc::one_shot`: each rank stores its input into
//! every peer's receive areas, start barrier, local fold; the CPU backend has no
//! zero-copy one-shot). The zero-copy two-shot on symmetric tensors
//! ([`CpuRank::allreduce_symmetric`], program `inc::two_shot_zc`; its push form
//! `inc::two_shot_zcp` through [`CpuRank::allreduce_symmetric_form`]) works on tensors in
//! regions of their own, in place.
//!
//! Layout: this file holds the public API ([`CpuRank`], [`CpuConfig`]) and the call
//! set-up; `block` runs one block of a call (its thread, memory accesses, the bounded
//! barrier, the steps); `reduce` the element codecs, reductions and
//! [`reference_allreduce`]; `region` the memory; `push` the LL one-shot; `lines` the
//! two-shot of lines (the copy-in two-shot's form for a call that fits the lines region:
//! [`TwoShotForm`]); `symmetric` the zero-copy two-shot.

mod block;
mod lines;
mod push;
mod reduce;
mod region;
mod symmetric;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub use lines::TwoShotForm;
pub use region::{Region, RegionLayout, CPU_PUSH_SLOT_BYTES};

use crate::error::SimError;
use crate::program::{self, Protocol};
use crate::push::{scrub_window, PushLayout};
use crate::types::{
    abort_word, call_sig, Algo, DType, ErrorRecord, PadLayout, ReduceOp, CHUNK_BYTES,
    ERR_PEER_ABORT, MAX_BLOCKS, MAX_RANKS,
};
use inc_proto::areas;

use reduce::{chunk_of, decode, encode, finish, fold, lanes, put_chunk};
pub use reduce::{reference_allreduce, validate_hcm};

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
    /// An LL push call: the bytes of every slot its lines use (0 for every other call), which
    /// the epilogue's scrub leaves alone (PROTOCOL.md "Wrap", rule 5).
    push_used: usize,
}

impl CallCtx<'_> {
    /// EPILOGUE of block `b`: its own epoch word = e; block 0 also the words of the blocks
    /// this call did not launch (no counter joins the blocks).
    fn advance_epoch(&self, b: usize) -> Result<(), Failed> {
        let own = self.me.own();
        let set = |w: usize| -> Result<(), Failed> {
            own.u32_at(PadLayout::epoch(w))
                .map_err(|_| Failed)?
                .store(self.epoch, Ordering::Release);
            Ok(())
        };
        set(b)?;
        if b == 0 {
            for w in self.grid..MAX_BLOCKS {
                set(w)?;
            }
            self.scrub_push()?;
        }
        Ok(())
    }

    /// Block 0's window of its own push region in this call's parity, zeroed (PROTOCOL.md
    /// "Wrap", rule 5; `inc_proto::push::scrub_window`): the lines no peer writes in this
    /// call (an LL call's own lines below `push_used` are left alone) and, in a call of
    /// another algorithm, the parity's header lines. Relaxed stores: the next write of any
    /// of these words is a peer's in call e + 2 or later, after this call completed.
    fn scrub_push(&self) -> Result<(), Failed> {
        let own = self.me.own();
        let layout = own.layout();
        let (world, me) = (self.me.world, self.me.rank);
        let Some((s, lo, hi)) = scrub_window(self.epoch, world, me, layout.push_slot_bytes) else {
            return Ok(());
        };
        let zero = |off: usize| -> Result<(), Failed> {
            own.u64_at(layout.push_offset() + off)
                .map_err(|_| Failed)?
                .store(0, Ordering::Relaxed);
            Ok(())
        };
        let slot = PushLayout::slot(self.parity, s, layout.push_slot_bytes);
        for off in (lo.max(self.push_used)..hi).step_by(8) {
            zero(slot + off)?;
        }
        if self.push_used == 0 {
            for q in (0..world).filter(|&q| q != me) {
                let h = PushLayout::hdr(self.parity, q);
                zero(h)?;
                zero(h + 8)?;
            }
        }
        Ok(())
    }
}

/// Output chunks `(index, bytes)` produced by a block.
type Chunks = Vec<(usize, [u8; CHUNK_BYTES])>;

/// What a call produced: chunks (every form but lines) or lines.
enum Produced {
    Chunks(Chunks),
    Lines(lines::Lines),
}

impl Produced {
    /// Writes the result into `out` (the call's input length; bytes past it are dropped).
    fn write(self, out: &mut [u8]) {
        match self {
            Produced::Chunks(chunks) => {
                for (c, chunk) in chunks {
                    put_chunk(out, c, &chunk);
                }
            }
            Produced::Lines(lines) => {
                for (l, line) in lines {
                    lines::put_line(out, l, &line);
                }
            }
        }
    }
}

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

    /// Largest input (bytes) `algo` accepts with these regions (PROTOCOL.md "Areas": the
    /// one-shot keeps a receive area of the whole input per other rank, so a (W-1)-th of a
    /// half; the two-shot a receive slice and a gather slice per other rank; hcm keeps an
    /// f32 partial next to the input, so it takes a third of a half).
    pub fn max_bytes(&self, algo: Algo) -> usize {
        let half = (self.own().layout().half_bytes / CHUNK_BYTES) as u64;
        let chunks = match algo {
            Algo::OneShot => areas::one_shot_max_chunks(half, self.world),
            Algo::TwoShot => areas::two_shot_max_chunks(half, self.world),
            Algo::Hcm => half / 3,
            Algo::PushOneShot => return self.push_max_bytes(),
        };
        chunk_bytes(chunks)
    }

    /// Largest piece of a zero-copy push-form call (PROTOCOL.md "two-shot, zero-copy"): only
    /// its receive slices (one per other rank, `ceil(C / W)` chunks each) live in a parity
    /// half.
    pub fn zero_copy_push_max_bytes(&self) -> usize {
        let half = (self.own().layout().half_bytes / CHUNK_BYTES) as u64;
        chunk_bytes(areas::zero_copy_push_max_chunks(half, self.world))
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
        same_len(input, output)?;
        self.run_call(algo, None, dtype, op, blocks, input)?
            .write(output);
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
        let results = self.run_call(algo, None, dtype, op, blocks, data)?;
        results.write(data);
        Ok(())
    }

    fn own(&self) -> &Region {
        // `new` checked rank < regions.len().
        &self.regions[self.rank]
    }

    /// The epoch of this rank's next call: after block 0's epoch word ([`crate::types::next_epoch`]: + 1,
    /// never 0; after every call all `MAX_BLOCKS` words hold its epoch; PROTOCOL.md
    /// "Kernel prologue / epilogue").
    fn next_epoch(&self) -> Result<u32, SimError> {
        Ok(crate::types::next_epoch(
            self.own()
                .u32_at(PadLayout::epoch(0))?
                .load(Ordering::Acquire),
        ))
    }

    /// Every block's epoch word (tests: they all hold the last call's epoch).
    pub fn epoch_words(&self) -> Result<Vec<u32>, SimError> {
        (0..MAX_BLOCKS)
            .map(|b| {
                Ok(self
                    .own()
                    .u32_at(PadLayout::epoch(b))?
                    .load(Ordering::Acquire))
            })
            .collect()
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

    /// One call of `algo`; a copy-in two-shot runs in `form`, or in the form the rule picks
    /// ([`CpuRank::two_shot_form`]) when `form` is `None`.
    fn run_call(
        &self,
        algo: Algo,
        form: Option<TwoShotForm>,
        dtype: DType,
        op: ReduceOp,
        blocks: usize,
        input: &[u8],
    ) -> Result<Produced, SimError> {
        if algo == Algo::PushOneShot {
            return self
                .run_push(dtype, op, blocks, input)
                .map(Produced::Chunks);
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
        let lines = algo == Algo::TwoShot
            && form.unwrap_or_else(|| self.two_shot_form(input.len())) == TwoShotForm::Lines;
        if lines && !self.lines_fit(input.len()) {
            return Err(SimError::Config(format!(
                "{} bytes at world {} do not fit the lines region",
                input.len(),
                self.world
            )));
        }
        if self.is_aborted() {
            return Err(self.poisoned_error());
        }
        let epoch = self.next_epoch()?;
        let count = (input.len() / dtype.size()) as u64;
        let chunks = input.len().div_ceil(CHUNK_BYTES);
        let ctx = CallCtx {
            me: self,
            dtype,
            op,
            grid: blocks,
            epoch,
            parity: (epoch % 2) as usize,
            // the lines form keeps the two-shot's signature (PROTOCOL.md "two-shot of lines")
            sig: call_sig(algo, dtype, op, count),
            input,
            chunks,
            partial_off: chunks * CHUNK_BYTES,
            sym: None,
            push_used: 0,
        };
        if lines {
            return ctx.run_lines().map(Produced::Lines);
        }
        let steps = program::steps(Protocol::Inc, algo);
        ctx.run_blocks(|c, b| c.run_block(b, &steps))
            .map(Produced::Chunks)
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

/// An out-of-place call's output must be as long as its input.
fn same_len(input: &[u8], output: &[u8]) -> Result<(), SimError> {
    if output.len() != input.len() {
        return Err(SimError::Config(format!(
            "output has {} bytes, input {}",
            output.len(),
            input.len()
        )));
    }
    Ok(())
}

/// Bytes of `chunks` 16-byte chunks, saturating at `usize::MAX` (a capacity).
fn chunk_bytes(chunks: u64) -> usize {
    usize::try_from(chunks)
        .unwrap_or(usize::MAX)
        .saturating_mul(CHUNK_BYTES)
}
