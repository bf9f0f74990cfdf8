//! The zero-copy two-shot on symmetric tensors on the CPU backend (PROTOCOL.md "two-shot,
//! zero-copy (symmetric tensors)", program [`crate::program::inc::two_shot_zc`]): every
//! rank's tensor lives in its own [`Region`] that every rank can read and write, and the
//! call is in place. Start barrier, each owner folds its slice from every rank's tensor in
//! rank order and stores the result into every rank's tensor, end barrier. The push form
//! ([`ZcForm::Push`], program [`crate::program::inc::two_shot_zcp`]) scatters first: each
//! rank stores its chunks of every peer's slice, read from its own tensor, into that
//! owner's receive area `R[me]` of the call's parity half (the comm's own regions), and
//! the owner folds its own tensor and its receive areas (local reads).
//!
//! Data words are relaxed atomics ([`Region::read_bytes`]/[`Region::write_bytes`]); the
//! barriers' `Release`/`Acquire` flags order them, exactly as in the other algorithms.
//! A partial tail chunk reads and writes its in-range bytes only.

use std::sync::Arc;

use super::{check_call_shape, chunk_of, CallCtx, CpuRank, Failed, Region};
use crate::error::SimError;
use crate::program::ZcForm;
use crate::types::{call_sig, Algo, DType, ReduceOp, CHUNK_BYTES};
use inc_proto::areas::area_index;

/// The symmetric tensors of one zero-copy call: `tensors[q]` is rank q's, the tensor at
/// byte `offset` of each region's data area, `bytes` long.
pub(super) struct Sym<'a> {
    tensors: &'a [Arc<Region>],
    offset: usize,
    bytes: usize,
    form: ZcForm,
}

impl CpuRank {
    /// In-place allreduce of symmetric tensors: the zero-copy two-shot (PROTOCOL.md
    /// "two-shot, zero-copy"). `tensors[q]` is rank q's allocation (one per rank, index =
    /// rank, the same list on every rank; normally not the comm's own regions, whose data
    /// areas other calls use); every rank's tensor is the `bytes` bytes at `offset` of its
    /// region's data area ([`Region::data_range`]), native-endian `dtype` elements. The
    /// result replaces every rank's tensor, bit-identical to [`CpuRank::allreduce`] with
    /// the two-shot. Between calls a rank may read and rewrite its own tensor (only its
    /// own) once its call has returned; see the protocol for why no peer touches it then.
    /// The pull form; [`CpuRank::allreduce_symmetric_form`] picks the form.
    pub fn allreduce_symmetric(
        &self,
        tensors: &[Arc<Region>],
        offset: usize,
        bytes: usize,
        dtype: DType,
        op: ReduceOp,
        blocks: usize,
    ) -> Result<(), SimError> {
        self.allreduce_symmetric_form(ZcForm::Pull, tensors, offset, bytes, dtype, op, blocks)
    }

    /// [`CpuRank::allreduce_symmetric`] in form `form`: [`ZcForm::Pull`] (program
    /// `inc::two_shot_zc`) or [`ZcForm::Push`] (`inc::two_shot_zcp`: the scatter fills
    /// the receive areas of the comm's own regions, so `bytes` is limited to
    /// [`CpuRank::zero_copy_push_max_bytes`]). Every rank of a call must use the same form.
    #[allow(clippy::too_many_arguments)]
    pub fn allreduce_symmetric_form(
        &self,
        form: ZcForm,
        tensors: &[Arc<Region>],
        offset: usize,
        bytes: usize,
        dtype: DType,
        op: ReduceOp,
        blocks: usize,
    ) -> Result<(), SimError> {
        if tensors.len() != self.world {
            return Err(SimError::Config(format!(
                "{} symmetric tensors for world {}",
                tensors.len(),
                self.world
            )));
        }
        if offset % CHUNK_BYTES != 0 {
            return Err(SimError::Config(format!(
                "symmetric tensor offset {offset} must be a multiple of {CHUNK_BYTES}"
            )));
        }
        if bytes % dtype.size() != 0 {
            return Err(SimError::Config(format!(
                "{bytes} bytes is not a whole number of {dtype} elements"
            )));
        }
        check_call_shape(dtype, blocks, &[])?;
        if form == ZcForm::Push && bytes > self.zero_copy_push_max_bytes() {
            return Err(SimError::Config(format!(
                "{bytes} bytes exceeds the push form's limit of {} bytes (its receive areas \
                 live in the comm's regions)",
                self.zero_copy_push_max_bytes()
            )));
        }
        for (q, t) in tensors.iter().enumerate() {
            let area = t.data_range();
            let start = area.start.saturating_add(offset);
            if start.checked_add(bytes).is_none_or(|end| end > area.end) {
                return Err(SimError::Config(format!(
                    "rank {q}'s symmetric tensor ({bytes} bytes at offset {offset}) exceeds its \
                     {}-byte data area",
                    area.end - area.start
                )));
            }
        }
        if self.is_aborted() {
            return Err(self.poisoned_error());
        }
        let epoch = self.next_epoch()?;
        let count = (bytes / dtype.size()) as u64;
        let ctx = CallCtx {
            me: self,
            dtype,
            op,
            grid: blocks,
            epoch,
            parity: (epoch % 2) as usize,
            sig: call_sig(Algo::TwoShot, dtype, op, count),
            input: &[],
            chunks: bytes.div_ceil(CHUNK_BYTES),
            partial_off: 0,
            sym: Some(Sym {
                tensors,
                offset,
                bytes,
                form,
            }),
            push_used: 0,
        };
        let steps = form.steps();
        ctx.run_blocks(|c, b| c.run_block(b, &steps)).map(|_| ())
    }
}

impl Sym<'_> {
    /// Rank `q`'s region, the byte offset of chunk `c` in it and the chunk's in-range
    /// bytes (16, or fewer for the tail chunk).
    fn extent(&self, q: usize, c: usize) -> Result<(&Region, usize, usize), Failed> {
        let t = self.tensors.get(q).ok_or(Failed)?;
        let start = c * CHUNK_BYTES;
        let off = t.data_range().start + self.offset + start;
        Ok((t, off, self.bytes.saturating_sub(start).min(CHUNK_BYTES)))
    }

    /// Chunk `c` of rank `q`'s tensor (bytes past the tensor's end read as zero).
    fn load(&self, q: usize, c: usize) -> Result<[u8; CHUNK_BYTES], Failed> {
        let (t, off, n) = self.extent(q, c)?;
        let mut out = [0u8; CHUNK_BYTES];
        t.read_bytes(off, out.get_mut(..n).ok_or(Failed)?)
            .map_err(|_| Failed)?;
        Ok(out)
    }

    /// Stores the in-range bytes of chunk `c` into rank `q`'s tensor.
    fn store(&self, q: usize, c: usize, chunk: &[u8; CHUNK_BYTES]) -> Result<(), Failed> {
        let (t, off, n) = self.extent(q, c)?;
        t.write_bytes(off, chunk.get(..n).ok_or(Failed)?)
            .map_err(|_| Failed)
    }
}

impl CallCtx<'_> {
    /// Chunk `c` of this call's input: my symmetric tensor's (push-form zero-copy
    /// two-shot, read now), else the caller's input.
    pub(super) fn input_chunk(&self, c: usize) -> Result<[u8; CHUNK_BYTES], Failed> {
        match &self.sym {
            Some(sym) => sym.load(self.me.rank, c),
            None => Ok(chunk_of(self.input, c)),
        }
    }

    /// My chunks of my slice under block `b`'s partition.
    fn my_slice_chunks(&self, b: usize) -> impl Iterator<Item = usize> + '_ {
        let me = self.me.rank;
        let world = self.me.world;
        let slice = self.chunks.div_ceil(world).max(1);
        self.my_chunks(b)
            .filter(move |c| (c / slice).min(world - 1) == me)
    }

    /// ReduceStore for block `b`: for my chunks c of my slice, fold chunk c of every
    /// rank's tensor in rank order (push form: my own receive area `R[q]` for every peer
    /// q, my own tensor for me), then store the result into every rank's tensor (mine
    /// included; push form: mine and rank me + 1's, the others in [`Self::forward`]).
    pub(super) fn reduce_store(&self, b: usize) -> Result<(), Failed> {
        let sym = self.sym.as_ref().ok_or(Failed)?;
        let me = self.me.rank;
        let world = self.me.world;
        let slice = self.chunks.div_ceil(world).max(1);
        let push = sym.form == ZcForm::Push;
        for c in self.my_slice_chunks(b) {
            let acc = self.fold_with(0..world, |q| {
                if push && q != me {
                    self.load_chunk(
                        me,
                        (area_index(q, me) * slice + c - me * slice) * CHUNK_BYTES,
                    )
                } else {
                    sym.load(q, c)
                }
            })?;
            let chunk = self.finish_chunk(acc);
            let stores = if push { world.min(2) } else { world };
            for i in 0..stores {
                sym.store((me + i) % world, c, &chunk)?;
            }
        }
        Ok(())
    }

    /// Forward for block `b` (push form): for my chunks c of my slice, chunk c of my own
    /// tensor (the result ReduceStore stored there) into every rank's tensor but mine and
    /// rank me + 1's.
    pub(super) fn forward(&self, b: usize) -> Result<(), Failed> {
        let sym = self.sym.as_ref().ok_or(Failed)?;
        let me = self.me.rank;
        let world = self.me.world;
        for c in self.my_slice_chunks(b) {
            let chunk = sym.load(me, c)?;
            for i in 2..world {
                sym.store((me + i) % world, c, &chunk)?;
            }
        }
        Ok(())
    }
}
