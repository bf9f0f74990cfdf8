//! The push one-shot (LL protocol) on the CPU backend (PROTOCOL.md "push one-shot"): block
//! 0 writes the header line `{sig, e, sig, e}` into `hdr[e % 2][me]` of every peer; every
//! block stores its chunks as tagged lines `{w0, e, w1, e}`, `{w2, e, w3, e}` into
//! `slot[e % 2][me]` of every peer, polls its own slots until all four tags of a chunk read
//! `e`, folds in rank order (its own chunk straight from its input), then waits for every
//! peer's header line and compares the signature.
//!
//! Each 8-byte half `{data, tag}` is one `AtomicU64` stored and loaded with `Relaxed`: the
//! 8-byte single-copy atomicity the protocol relies on (the GPU stores a whole 16-byte line
//! with one `st.volatile.v4.u32` and gets at least that). No fence and no release/acquire
//! pair is needed for the data: a half is consumed only when its own tag says it belongs to
//! this call, and the tag travels in the same atomic word as the data.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{chunk_of, decode, finish, fold, CallCtx, Chunks, CpuRank, Failed};
use crate::error::SimError;
use crate::push::{
    chunk_lines, pack_half, push_call_sig, step, tag_is_newer, unpack_half, PushLayout,
};
use crate::types::{
    abort_rank, flag_word, DType, ErrorRecord, PadLayout, ReduceOp, CHUNK_BYTES, ERR_CALL_MISMATCH,
    ERR_PEER_ABORT, ERR_SEQ_MISMATCH, ERR_TIMEOUT, MAX_RANKS,
};

/// Polls between two reads of the slow-path words (header line, abort word, clock).
pub(super) const SLOW_PATH_EVERY: u32 = 16;

fn words_of(chunk: &[u8; CHUNK_BYTES]) -> [u32; 4] {
    let mut w = [0u32; 4];
    for (o, c) in w.iter_mut().zip(chunk.chunks_exact(4)) {
        *o = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
    }
    w
}

fn bytes_of_words(w: &[u32; 4]) -> [u8; CHUNK_BYTES] {
    let mut out = [0u8; CHUNK_BYTES];
    for (c, v) in out.chunks_exact_mut(4).zip(w) {
        c.copy_from_slice(&v.to_ne_bytes());
    }
    out
}

/// Spin, then yield, then sleep: keeps many block threads on 2 cores moving.
pub(super) fn backoff(spins: u32) {
    if spins < 64 {
        std::hint::spin_loop();
    } else if spins < 4096 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// What the two halves of a header line say about call `(e, sig)`.
enum Hdr {
    /// Both halves carry `(sig, e)`.
    Match,
    /// Not written for call e yet.
    Absent,
    /// The block must fail with this code.
    Bad(u32),
}

impl CpuRank {
    /// Largest input (bytes) the push one-shot accepts with these regions (half a slot).
    pub fn push_max_bytes(&self) -> usize {
        PushLayout::payload_bytes(self.own().layout().push_slot_bytes)
    }

    /// Out-of-place push one-shot allreduce (PROTOCOL.md "push one-shot"); same contract
    /// and bit-identical results as [`CpuRank::allreduce`] with the one-shot (rank-order
    /// f32 fold; `-0.0` preserved).
    pub fn push_allreduce(
        &self,
        dtype: DType,
        op: ReduceOp,
        blocks: usize,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), SimError> {
        super::same_len(input, output)?;
        for (c, chunk) in self.run_push(dtype, op, blocks, input)? {
            super::put_chunk(output, c, &chunk);
        }
        Ok(())
    }

    /// In-place push one-shot allreduce of `data`.
    pub fn push_allreduce_in_place(
        &self,
        dtype: DType,
        op: ReduceOp,
        blocks: usize,
        data: &mut [u8],
    ) -> Result<(), SimError> {
        for (c, chunk) in self.run_push(dtype, op, blocks, data)? {
            super::put_chunk(data, c, &chunk);
        }
        Ok(())
    }

    pub(super) fn run_push(
        &self,
        dtype: DType,
        op: ReduceOp,
        blocks: usize,
        input: &[u8],
    ) -> Result<Chunks, SimError> {
        super::check_call_shape(dtype, blocks, input)?;
        if input.len() > self.push_max_bytes() {
            return Err(SimError::Config(format!(
                "{} bytes exceeds push-one-shot's limit of {} bytes",
                input.len(),
                self.push_max_bytes()
            )));
        }
        if self.is_aborted() {
            return Err(self.poisoned_error());
        }
        if input.is_empty() {
            return Ok(Vec::new());
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
            sig: push_call_sig(dtype, op, count),
            input,
            chunks,
            partial_off: 0,
            sym: None,
            // every slot's lines below chunks x 32 bytes are this call's
            push_used: chunks * PushLayout::line(1, 0),
        };
        ctx.run_blocks(|c, b| c.run_push_block(b))
    }
}

impl CallCtx<'_> {
    /// The 8-byte word at `off` inside rank r's push region.
    fn push_word(&self, r: usize, off: usize) -> Result<&AtomicU64, Failed> {
        let reg = self.me.region(r).map_err(|_| Failed)?;
        reg.u64_at(reg.layout().push_offset() + off)
            .map_err(|_| Failed)
    }

    /// Offset of line A of chunk c in `slot[p][writer]`.
    fn chunk_off(&self, writer: usize, c: usize) -> usize {
        let slot = self.me.own().layout().push_slot_bytes;
        PushLayout::slot(self.parity, writer, slot) + PushLayout::line(c, 0)
    }

    /// The error record of block `b` failing with `code` in `phase` while waiting on
    /// `peer` (expected: this call's flag word; `seen`: what the wait read).
    pub(super) fn rec(
        &self,
        b: usize,
        phase: u32,
        code: u32,
        peer: usize,
        seen: u64,
    ) -> ErrorRecord {
        ErrorRecord {
            code,
            rank: self.me.rank as u32,
            block: b as u32,
            peer: peer as u32,
            phase,
            _pad: 0,
            expected: flag_word(self.epoch, self.sig),
            seen,
        }
    }

    /// The slow path of every LL and lines wait of block `b` (waiting on `q`, having read
    /// `seen`): a raised abort word fails the block with PEER_ABORT (recorded on my pad
    /// only: whoever raised it told everyone), a passed deadline with TIMEOUT (recorded,
    /// abort raised on every pad).
    pub(super) fn check_wait(
        &self,
        b: usize,
        phase: u32,
        q: usize,
        seen: u64,
        abort: &AtomicU32,
        deadline: Instant,
    ) -> Result<(), Failed> {
        let a = abort.load(Ordering::Acquire);
        if a != 0 {
            let r = self.rec(b, phase, ERR_PEER_ABORT, abort_rank(a) as usize, seen);
            return Err(self.fail(r, false));
        }
        if Instant::now() > deadline {
            return Err(self.fail(self.rec(b, phase, ERR_TIMEOUT, q, seen), true));
        }
        Ok(())
    }

    /// Reads writer q's header line in my region (two relaxed 8-byte loads) and judges it
    /// with the barrier's rules; also returns the value seen as `flag(epoch, sig)`.
    fn read_hdr(&self, q: usize) -> Result<(Hdr, u64), Failed> {
        let off = PushLayout::hdr(self.parity, q);
        let h0 = unpack_half(self.push_word(self.me.rank, off)?.load(Ordering::Relaxed));
        let h1 = unpack_half(
            self.push_word(self.me.rank, off + 8)?
                .load(Ordering::Relaxed),
        );
        let seen = |h: (u32, u32)| flag_word(h.1, h.0);
        for h in [h0, h1] {
            if tag_is_newer(h.1, self.epoch) {
                return Ok((Hdr::Bad(ERR_SEQ_MISMATCH), seen(h)));
            }
        }
        if h0.1 != self.epoch || h1.1 != self.epoch {
            return Ok((Hdr::Absent, seen(h0)));
        }
        for h in [h0, h1] {
            if h.0 != self.sig {
                return Ok((Hdr::Bad(ERR_CALL_MISMATCH), seen(h)));
            }
        }
        Ok((Hdr::Match, seen(h0)))
    }

    fn run_push_block(&self, b: usize) -> Result<Chunks, Failed> {
        let me = self.me.rank;
        let world = self.me.world;
        let e = self.epoch;
        let own = self.me.own();
        let abort = own.u32_at(PadLayout::ABORT).map_err(|_| Failed)?;
        let deadline = Instant::now() + self.me.cfg.timeout;
        let mut out = Vec::new();
        // The slow path of every wait: the abort word and the deadline.
        let check_abort = |phase: u32, q: usize, seen: u64| -> Result<(), Failed> {
            self.check_wait(b, phase, q, seen, abort, deadline)
        };

        // STEP 0 Prologue (the kernel reads epoch and abort in one 64-bit load)
        if abort.load(Ordering::Acquire) != 0 {
            return Err(Failed);
        }

        // STEP 1 PushData
        if b == 0 {
            let line = pack_half(self.sig, e);
            for q in (0..world).filter(|&q| q != me) {
                let off = PushLayout::hdr(self.parity, me);
                self.push_word(q, off)?.store(line, Ordering::Relaxed);
                self.push_word(q, off + 8)?.store(line, Ordering::Relaxed);
            }
        }
        for c in self.my_chunks(b) {
            let halves = chunk_lines(&words_of(&chunk_of(self.input, c)), e);
            let off = self.chunk_off(me, c);
            for q in (0..world).filter(|&q| q != me) {
                for (i, h) in halves.iter().enumerate() {
                    self.push_word(q, off + 8 * i)?.store(*h, Ordering::Relaxed);
                }
            }
        }

        // STEP 2 PollReduce
        for c in self.my_chunks(b) {
            let got = self.poll_chunk(b, c, &check_abort)?;
            let mut acc = [0f32; 8];
            for (q, theirs) in got.iter().take(self.me.world).enumerate() {
                let words = match theirs {
                    Some(w) => *w,
                    None => words_of(&chunk_of(self.input, c)),
                };
                let v = decode(self.dtype, &bytes_of_words(&words));
                for (x, y) in acc.iter_mut().zip(v) {
                    *x = if q == 0 { y } else { fold(self.op, *x, y) };
                }
            }
            for a in acc.iter_mut() {
                *a = finish(self.op, *a, world);
            }
            out.push((c, super::encode(self.dtype, &acc)));
        }

        // STEP 3 HdrCheck
        for q in (0..world).filter(|&q| q != me) {
            let mut spins: u32 = 0;
            loop {
                let (hdr, seen) = self.read_hdr(q)?;
                match hdr {
                    Hdr::Match => break,
                    Hdr::Bad(code) => {
                        return Err(self.fail(self.rec(b, step::HDR_CHECK, code, q, seen), true))
                    }
                    Hdr::Absent => {}
                }
                spins = spins.wrapping_add(1);
                check_abort(step::HDR_CHECK, q, seen)?;
                backoff(spins);
            }
        }

        // STEP 4 Epilogue
        self.advance_epoch(b)?;
        Ok(out)
    }

    /// Spins on the four halves of chunk c from every peer at once, as the kernel does:
    /// each spin rereads every peer whose chunk is still missing, and a chunk once
    /// accepted is not read again (PROTOCOL.md "push one-shot", PollReduce). Returns the
    /// four data words of each peer's chunk (`None` at my own rank and past the world).
    /// No allocation: the peers still missing are a bit mask, as in the kernel.
    fn poll_chunk(
        &self,
        b: usize,
        c: usize,
        check_abort: &dyn Fn(u32, usize, u64) -> Result<(), Failed>,
    ) -> Result<[Option<[u32; 4]>; MAX_RANKS], Failed> {
        let mut got: [Option<[u32; 4]>; MAX_RANKS] = [None; MAX_RANKS];
        let mut pending: u32 = ((1u32 << self.me.world) - 1) & !(1u32 << self.me.rank);
        let mut spins: u32 = 0;
        loop {
            for (q, slot) in got.iter_mut().enumerate().take(self.me.world) {
                if pending & (1 << q) != 0 {
                    if let Some(words) = self.try_chunk(b, q, c)? {
                        *slot = Some(words);
                        pending &= !(1 << q);
                    }
                }
            }
            if pending == 0 {
                return Ok(got);
            }
            spins = spins.wrapping_add(1);
            if spins % SLOW_PATH_EVERY == 0 {
                let q = pending.trailing_zeros() as usize;
                // Slow path, for the lowest peer still missing: a peer that sends fewer
                // chunks never fills this one; its header line says why.
                let (hdr, seen) = self.read_hdr(q)?;
                if let Hdr::Bad(code) = hdr {
                    return Err(self.fail(self.rec(b, step::POLL_REDUCE, code, q, seen), true));
                }
                check_abort(step::POLL_REDUCE, q, seen)?;
            }
            backoff(spins);
        }
    }

    /// One read of the four halves of chunk c from writer q: its data words when every
    /// tag is this call's epoch, `None` while one is older; a newer tag fails the call.
    fn try_chunk(&self, b: usize, q: usize, c: usize) -> Result<Option<[u32; 4]>, Failed> {
        let e = self.epoch;
        let off = self.chunk_off(q, c);
        let mut words = [0u32; 4];
        let mut ready = true;
        for (i, w) in words.iter_mut().enumerate() {
            let (d, t) = unpack_half(
                self.push_word(self.me.rank, off + 8 * i)?
                    .load(Ordering::Relaxed),
            );
            if tag_is_newer(t, e) {
                let seen = flag_word(t, 0);
                let r = self.rec(b, step::POLL_REDUCE, ERR_SEQ_MISMATCH, q, seen);
                return Err(self.fail(r, true));
            }
            ready &= t == e;
            *w = d;
        }
        Ok(ready.then_some(words))
    }
}
