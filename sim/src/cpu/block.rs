//! One block of one call on the CPU backend: its thread, its memory accesses, the
//! bounded barrier and the inc program's steps.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::SimError;
use crate::program::{PeerSet, Step};
use crate::types::{
    abort_word, flag_epoch, flag_sig, flag_word, BarrierKind, ErrorRecord, PadLayout, CHUNK_BYTES,
    ERR_CALL_MISMATCH, ERR_PEER_ABORT, ERR_SEQ_MISMATCH, ERR_TIMEOUT,
};
use inc_proto::areas::area_index;

use super::{chunk_of, decode, encode, finish, fold, lanes, CallCtx, Chunks, Failed, Region};

impl CallCtx<'_> {
    /// Runs `block` for every block of the grid on its own thread and gathers their
    /// output pieces (chunks, or lines) in block order; a failed (or panicked) block
    /// fails the call with the rank's poison error.
    pub(super) fn run_blocks<F, T>(&self, block: F) -> Result<Vec<T>, SimError>
    where
        F: Fn(&Self, usize) -> Result<Vec<T>, Failed> + Sync,
        T: Send,
    {
        let outcomes: Vec<Result<Vec<T>, Failed>> = std::thread::scope(|s| {
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

    pub(super) fn my_chunks(&self, b: usize) -> impl Iterator<Item = usize> + '_ {
        let t = self.me.cfg.threads_per_block;
        let g = self.grid;
        (0..self.chunks).filter(move |c| (c / t) % g == b)
    }

    pub(super) fn half(&self, r: usize) -> Result<(&Region, usize), Failed> {
        let reg = self.me.region(r).map_err(|_| Failed)?;
        let off = reg.layout().half_offset(self.parity);
        Ok((reg, off))
    }

    pub(super) fn load_chunk(
        &self,
        r: usize,
        byte_off: usize,
    ) -> Result<[u8; CHUNK_BYTES], Failed> {
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
    pub(super) fn store_chunk(
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
    pub(super) fn load_partial(&self, r: usize, c: usize) -> Result<[f32; 8], Failed> {
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

    pub(super) fn store_partial(&self, c: usize, vals: &[f32; 8]) -> Result<(), Failed> {
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
    pub(super) fn fail(&self, rec: ErrorRecord, broadcast: bool) -> Failed {
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

    pub(super) fn barrier(
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
                    // The consumer clears the slot it took (PROTOCOL.md "Wrap"): q writes
                    // it next in call e + 2, after my kernel e + 1 started, i.e. after
                    // this call and this store completed. A slot untouched for 2^31 calls
                    // then holds 0, never an old epoch that reads as newer.
                    f.store(0, Ordering::Relaxed);
                    break;
                }
                // 0 (a cleared or fresh slot) is "not yet": the epoch is never 0, and a 0
                // tag is never newer
                if flag_epoch(v) == self.epoch && flag_sig(v) != self.sig {
                    return Err(self.fail(rec(ERR_CALL_MISMATCH, q, v), true));
                }
                if crate::push::tag_is_newer(flag_epoch(v), self.epoch) {
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

    pub(super) fn fold_peers(
        &self,
        c: usize,
        ranks: impl Iterator<Item = usize>,
    ) -> Result<[f32; 8], Failed> {
        self.fold_with(ranks, |r| self.load_chunk(r, c * CHUNK_BYTES))
    }

    /// Folds (f32, in the order of `ranks`) the chunk `load(r)` gives for every rank r.
    pub(super) fn fold_with(
        &self,
        ranks: impl Iterator<Item = usize>,
        mut load: impl FnMut(usize) -> Result<[u8; CHUNK_BYTES], Failed>,
    ) -> Result<[f32; 8], Failed> {
        let mut acc: Option<[f32; 8]> = None;
        for r in ranks {
            let v = decode(self.dtype, &load(r)?);
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

    pub(super) fn finish_chunk(&self, mut acc: [f32; 8]) -> [u8; CHUNK_BYTES] {
        for a in acc.iter_mut() {
            *a = finish(self.op, *a, self.me.world);
        }
        encode(self.dtype, &acc)
    }

    /// Runs the inc program for block `b`; returns the output chunks this block produced.
    pub(super) fn run_block(&self, b: usize, steps: &[Step]) -> Result<Chunks, Failed> {
        let me = self.me.rank;
        let world = self.me.world;
        let mut out = Vec::new();
        let slice = self.chunks.div_ceil(world).max(1);
        // two-shot: one receive slice per other rank s at area(s, me)*S chunks, then the
        // gather slices G at (W-1)*S chunks (PROTOCOL.md "Areas").
        let gather = (world - 1) * slice * CHUNK_BYTES;
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
                Step::PushIn => {
                    // One-shot push form: chunk c -> every peer q's R[me][c], at chunk
                    // offset area(me, q)*C + c of q's half of this call.
                    for c in self.my_chunks(b) {
                        let chunk = chunk_of(self.input, c);
                        for q in (0..world).filter(|&q| q != me) {
                            let off = (area_index(me, q) * self.chunks + c) * CHUNK_BYTES;
                            self.store_chunk(q, off, &chunk)?;
                        }
                    }
                }
                Step::ReduceRecv => {
                    // Fold my input and my own R[s][c] (chunk offset area(s, me)*C + c of
                    // my half) in rank order: local reads, output only.
                    for c in self.my_chunks(b) {
                        let acc = self.fold_with(0..world, |s| {
                            if s == me {
                                Ok(chunk_of(self.input, c))
                            } else {
                                let off = (area_index(s, me) * self.chunks + c) * CHUNK_BYTES;
                                self.load_chunk(me, off)
                            }
                        })?;
                        out.push((c, self.finish_chunk(acc)));
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
                    // Chunk c of slice q != me -> peer q's R[me][c - q*S] (the push-form
                    // zero-copy two-shot reads it from my own tensor).
                    for c in self.my_chunks(b) {
                        let q = (c / slice).min(world - 1);
                        if q != me {
                            let off = (area_index(me, q) * slice + c - q * slice) * CHUNK_BYTES;
                            self.store_chunk(q, off, &self.input_chunk(c)?)?;
                        }
                    }
                }
                Step::GatherPrev => {
                    // The CPU backend runs no call in pieces (each call is a kernel of its
                    // own, Gather included): there is never a previous piece to gather.
                }
                Step::ReduceSlice => {
                    // Fold my input and my own R[s] in rank order; the result goes to the
                    // output and into every peer's G[c].
                    for c in self.my_chunks(b).filter(|c| c / slice == me) {
                        let j = c - me * slice;
                        let acc = self.fold_with(0..world, |s| {
                            if s == me {
                                Ok(chunk_of(self.input, c))
                            } else {
                                self.load_chunk(me, (area_index(s, me) * slice + j) * CHUNK_BYTES)
                            }
                        })?;
                        let chunk = self.finish_chunk(acc);
                        for q in (0..world).filter(|&q| q != me) {
                            let off = gather + (area_index(me, q) * slice + j) * CHUNK_BYTES;
                            self.store_chunk(q, off, &chunk)?;
                        }
                        out.push((c, chunk));
                    }
                }
                Step::Gather => {
                    // Local reads of my G: the owners stored every other slice here.
                    for c in self.my_chunks(b) {
                        let q = (c / slice).min(world - 1);
                        if q != me {
                            let off =
                                gather + (area_index(q, me) * slice + c - q * slice) * CHUNK_BYTES;
                            out.push((c, self.load_chunk(me, off)?));
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
                Step::Forward => self.forward(b)?,
                Step::PushData | Step::PollReduce | Step::HdrCheck => {
                    // push-one-shot runs in cpu::push (run_call dispatches before this).
                    return Err(Failed);
                }
                Step::EndBarrier => {
                    // Only the zero-copy variants run it: the symmetric-tensor two-shot
                    // (the user rewrites that memory); the copy-in programs rotate parity
                    // halves instead (PROTOCOL.md "Why two parity halves").
                    if self.sym.is_some() {
                        self.barrier(b, phase, BarrierKind::End, PeerSet::Others)?;
                    }
                }
                Step::Epilogue => self.advance_epoch(b)?,
            }
        }
        Ok(out)
    }
}
