//! The push one-shot on the CPU backend (PROTOCOL.md "push one-shot"): block threads store
//! their chunks straight into every rank's `L[k].slot[me]` (`k = (last + 1) % 3`), release a signature word,
//! re-arm the buffer of the previous call, poll their own slots until no lane is the
//! sentinel, fold in rank order, and check the signature words (acquire).
//!
//! CPU limitation: a 16-byte chunk is stored as two relaxed `AtomicU64` halves, so it can
//! tear between the halves (x86-64 has no portable 128-bit atomic store in std). That is
//! exactly what the protocol tolerates: every 32-bit word of a cleared slot holds a
//! sentinel lane and the reader checks every lane of both halves, so only 4-byte (here
//! 8-byte) single-copy atomicity is relied on.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{chunk_of, decode, finish, fold, CallCtx, Chunks, CpuRank, Failed};
use crate::error::SimError;
use crate::push::{chunk_ready, push_call_sig, remap_neg_zero, step, PushLayout, SENTINEL_WORD};
use crate::types::{
    flag_epoch, flag_sig, flag_word, DType, ErrorRecord, PadLayout, ReduceOp, CHUNK_BYTES,
    ERR_CALL_MISMATCH, ERR_PEER_ABORT, ERR_SEQ_MISMATCH, ERR_TIMEOUT,
};

const SENTINEL_U64: u64 = ((SENTINEL_WORD as u64) << 32) | SENTINEL_WORD as u64;

fn words_of(chunk: &[u8; CHUNK_BYTES]) -> [u32; 4] {
    let mut w = [0u32; 4];
    for (o, c) in w.iter_mut().zip(chunk.chunks_exact(4)) {
        *o = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
    }
    w
}

fn halves_of(w: &[u32; 4]) -> [u64; 2] {
    let pack = |a: u32, b: u32| {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&a.to_ne_bytes());
        bytes[4..].copy_from_slice(&b.to_ne_bytes());
        u64::from_ne_bytes(bytes)
    };
    [pack(w[0], w[1]), pack(w[2], w[3])]
}

fn words_from_halves(h: [u64; 2]) -> [u32; 4] {
    let a = h[0].to_ne_bytes();
    let b = h[1].to_ne_bytes();
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
    ]
}

fn bytes_of_words(w: &[u32; 4]) -> [u8; CHUNK_BYTES] {
    let mut out = [0u8; CHUNK_BYTES];
    for (c, v) in out.chunks_exact_mut(4).zip(w) {
        c.copy_from_slice(&v.to_ne_bytes());
    }
    out
}

/// Spin, then yield, then sleep: keeps many block threads on 2 cores moving.
fn backoff(spins: u32) {
    if spins < 64 {
        std::hint::spin_loop();
    } else if spins < 4096 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(50));
    }
}

impl CpuRank {
    /// Largest input (bytes) the push one-shot accepts with these regions.
    pub fn push_max_bytes(&self) -> usize {
        self.own().layout().push_slot_bytes
    }

    /// Out-of-place push one-shot allreduce (PROTOCOL.md "push one-shot"); same contract as
    /// [`CpuRank::allreduce`]. A zero result is always `+0.0` (writers map `-0.0` to `+0.0`).
    pub fn push_allreduce(
        &self,
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
        let epoch = self
            .own()
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
            sig: push_call_sig(dtype, op, count),
            input,
            chunks,
            partial_off: 0,
        };
        ctx.run_blocks(|c, b| c.run_push_block(b))
    }
}

impl CallCtx<'_> {
    fn push_base(&self, r: usize) -> Result<(&super::Region, usize), Failed> {
        let reg = self.me.region(r).map_err(|_| Failed)?;
        let off = reg.layout().push_offset();
        Ok((reg, off))
    }

    fn slot_off(&self, k: usize, writer: usize, c: usize) -> usize {
        let slot = self.me.own().layout().push_slot_bytes;
        PushLayout::slot(k, writer, slot) + c * CHUNK_BYTES
    }

    fn store_slot(&self, r: usize, off: usize, h: [u64; 2]) -> Result<(), Failed> {
        let (reg, base) = self.push_base(r)?;
        for (i, v) in h.iter().enumerate() {
            reg.u64_at(base + off + 8 * i)
                .map_err(|_| Failed)?
                .store(*v, Ordering::Relaxed);
        }
        Ok(())
    }

    fn load_own_slot(&self, off: usize) -> Result<[u64; 2], Failed> {
        let (reg, base) = self.push_base(self.me.rank)?;
        let a = reg.u64_at(base + off).map_err(|_| Failed)?;
        let b = reg.u64_at(base + off + 8).map_err(|_| Failed)?;
        Ok([a.load(Ordering::Relaxed), b.load(Ordering::Relaxed)])
    }

    fn rec(&self, b: usize, phase: u32, code: u32, peer: usize, seen: u64) -> ErrorRecord {
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

    /// Classifies a signature word; `Some(err)` when the call must fail.
    fn sig_verdict(&self, v: u64) -> Option<u32> {
        if v == flag_word(self.epoch, self.sig) {
            None
        } else if flag_epoch(v) == self.epoch && flag_sig(v) != self.sig {
            Some(ERR_CALL_MISMATCH)
        } else if (flag_epoch(v).wrapping_sub(self.epoch) as i32) > 0 {
            Some(ERR_SEQ_MISMATCH)
        } else {
            None
        }
    }

    fn run_push_block(&self, b: usize) -> Result<Chunks, Failed> {
        let me = self.me.rank;
        let world = self.me.world;
        let p = self.parity;
        let flag = flag_word(self.epoch, self.sig);
        let own = self.me.own();
        let (own_reg, own_base) = self.push_base(me)?;
        // Buffers rotate per push call: last = buffer of the previous push call.
        let last_word = own_reg
            .u32_at(own_base + PushLayout::LAST)
            .map_err(|_| Failed)?;
        let kc = last_word.load(Ordering::Relaxed) as usize % 3;
        let k = (kc + 1) % 3;
        let abort = own.u32_at(PadLayout::ABORT).map_err(|_| Failed)?;
        let deadline = Instant::now() + self.me.cfg.timeout;
        let mut out = Vec::new();

        // STEP 0 Prologue
        if abort.load(Ordering::Acquire) != 0 {
            return Err(Failed);
        }
        own_reg
            .u32_at(own_base + PushLayout::used(k))
            .map_err(|_| Failed)?
            .store(self.chunks as u32, Ordering::Relaxed);

        // STEP 1 PushData
        for c in self.my_chunks(b) {
            let mut w = words_of(&chunk_of(self.input, c));
            remap_neg_zero(self.dtype, &mut w);
            let h = halves_of(&w);
            for q in 0..world {
                self.store_slot(q, self.slot_off(k, me, c), h)?;
            }
        }

        // STEP 2 PushSig
        for q in 0..world {
            let (reg, base) = self.push_base(q)?;
            reg.u64_at(base + PushLayout::sig(p, b, me))
                .map_err(|_| Failed)?
                .store(flag, Ordering::Release);
        }

        // STEP 3 ClearOld: re-arm L[last] (the previous push call's) over the chunks it used.
        let used = own_reg
            .u32_at(own_base + PushLayout::used(kc))
            .map_err(|_| Failed)?
            .load(Ordering::Relaxed) as usize;
        let t = self.me.cfg.threads_per_block;
        for c in (0..used).filter(|c| (c / t) % self.grid == b) {
            for q in 0..world {
                self.store_slot(me, self.slot_off(kc, q, c), [SENTINEL_U64; 2])?;
            }
        }

        // STEP 4 PollReduce
        let sig_at = |q: usize| {
            own_reg
                .u64_at(own_base + PushLayout::sig(p, b, q))
                .map_err(|_| Failed)
        };
        for c in self.my_chunks(b) {
            let mut acc = [0f32; 8];
            for q in 0..world {
                let off = self.slot_off(k, q, c);
                let mut spins: u32 = 0;
                let words = loop {
                    let w = words_from_halves(self.load_own_slot(off)?);
                    if chunk_ready(self.dtype, &w) {
                        break w;
                    }
                    let s = sig_at(q)?.load(Ordering::Relaxed);
                    if let Some(code) = self.sig_verdict(s) {
                        return Err(self.fail(self.rec(b, step::POLL_REDUCE, code, q, s), true));
                    }
                    let a = abort.load(Ordering::Acquire);
                    if a != 0 {
                        let who = ((a >> 8) & 0x7f_ffff) as usize;
                        let r = self.rec(b, step::POLL_REDUCE, ERR_PEER_ABORT, who, s);
                        return Err(self.fail(r, false));
                    }
                    spins = spins.wrapping_add(1);
                    if spins % 64 == 0 && Instant::now() > deadline {
                        let r = self.rec(b, step::POLL_REDUCE, ERR_TIMEOUT, q, s);
                        return Err(self.fail(r, true));
                    }
                    backoff(spins);
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

        // STEP 5 SigCheck
        for q in 0..world {
            let word = sig_at(q)?;
            let mut spins: u32 = 0;
            loop {
                let v = word.load(Ordering::Acquire);
                if v == flag {
                    break;
                }
                if let Some(code) = self.sig_verdict(v) {
                    return Err(self.fail(self.rec(b, step::SIG_CHECK, code, q, v), true));
                }
                let a = abort.load(Ordering::Acquire);
                if a != 0 {
                    let who = ((a >> 8) & 0x7f_ffff) as usize;
                    return Err(
                        self.fail(self.rec(b, step::SIG_CHECK, ERR_PEER_ABORT, who, v), false)
                    );
                }
                spins = spins.wrapping_add(1);
                if spins % 64 == 0 && Instant::now() > deadline {
                    return Err(self.fail(self.rec(b, step::SIG_CHECK, ERR_TIMEOUT, q, v), true));
                }
                backoff(spins);
            }
        }

        // STEP 6 Epilogue
        let done = own.u32_at(PadLayout::DONE).map_err(|_| Failed)?;
        if done.fetch_add(1, Ordering::AcqRel) as usize == self.grid - 1 {
            done.store(0, Ordering::Relaxed);
            last_word.store(k as u32, Ordering::Relaxed);
            own.u32_at(PadLayout::EPOCH)
                .map_err(|_| Failed)?
                .store(self.epoch, Ordering::Release);
        }
        Ok(out)
    }
}
