//! The two-shot of lines on the CPU backend (PROTOCOL.md "two-shot of lines"): the
//! copy-in two-shot's form without barriers, for a call of its own that fits the lines
//! region ([`inc_proto::lines::use_lines`]; the CPU backend never cuts a call in pieces, so
//! every call is one of its own). Each 128-byte line carries 120 payload bytes in words
//! 0..14 and the flag `flag_word(e, sig)` in word 15. Block 0 writes my header word into
//! every peer's `hdr[p][me]`; every block stores its lines of every other slice into the
//! slice's owner (Scatter), polls the lines of my slice from every writer, clears each flag
//! it took, folds in rank order and stores the result line into every peer (ReduceStore),
//! then polls the result lines of the other slices and clears their flags (Gather).
//!
//! A writer stores the 15 payload words relaxed, then the flag with `Release`; a reader
//! loads the flag with `Acquire` and reads the payload only after it saw this call's flag.
//! That is stronger than the GPU (which relies on a 128-byte line being seen whole): the
//! CPU backend checks the data path, inc-sim's checker the atomicity.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use inc_proto::lines::{step, use_lines, LinesLayout, FLAG_WORD, LINE, LINE_PAYLOAD};

use super::push::{backoff, SLOW_PATH_EVERY};
use super::{CallCtx, CpuRank, Failed};
use crate::error::SimError;
use crate::push::tag_is_newer;
use crate::types::{
    flag_epoch, flag_sig, flag_word, Algo, BarrierKind, DType, PadLayout, ReduceOp, CHUNK_BYTES,
    ERR_CALL_MISMATCH, ERR_SEQ_MISMATCH, MAX_RANKS,
};

/// The form a copy-in two-shot call runs in; every rank of a call must use the same one
/// ([`CpuRank::two_shot_form`] picks it from the call alone, so ranks that make the same
/// call agree).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TwoShotForm {
    /// Scatter, barrier, reduce, barrier, gather (PROTOCOL.md "two-shot, push form").
    Barrier,
    /// 128-byte flagged lines, no barrier (PROTOCOL.md "two-shot of lines").
    Lines,
}

/// The payload words of one line (words 0..14).
type Payload = [u64; FLAG_WORD];

/// Output lines `(line index, payload bytes)` produced by a block.
pub(super) type Lines = Vec<(usize, [u8; LINE_PAYLOAD])>;

/// Writes line `l`'s payload at bytes `[120 l, 120 l + 120)` of `out` (bytes past its end
/// are dropped).
pub(super) fn put_line(out: &mut [u8], l: usize, line: &[u8; LINE_PAYLOAD]) {
    if let Some(dst) = l
        .checked_mul(LINE_PAYLOAD)
        .and_then(|start| out.get_mut(start..))
    {
        let n = dst.len().min(LINE_PAYLOAD);
        dst[..n].copy_from_slice(&line[..n]);
    }
}

/// Payload bytes `[120 l, 120 l + 120)` of `input` as words (zeros past its end).
fn input_line(input: &[u8], l: usize) -> Payload {
    let mut bytes = [0u8; LINE_PAYLOAD];
    if let Some(src) = l
        .checked_mul(LINE_PAYLOAD)
        .and_then(|start| input.get(start..))
    {
        let n = src.len().min(LINE_PAYLOAD);
        bytes[..n].copy_from_slice(&src[..n]);
    }
    words_of(&bytes)
}

fn words_of(bytes: &[u8; LINE_PAYLOAD]) -> Payload {
    let mut w = [0u64; FLAG_WORD];
    for (o, c) in w.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        *o = u64::from_ne_bytes(b);
    }
    w
}

/// The payload words as bytes, padded with 8 zero bytes to a whole number of chunks.
fn bytes_of(words: &Payload) -> [u8; LINE] {
    let mut out = [0u8; LINE];
    for (c, w) in out.chunks_exact_mut(8).zip(words) {
        c.copy_from_slice(&w.to_ne_bytes());
    }
    out
}

/// Geometry of one lines call (the same on every rank making it).
struct Geo {
    /// Lines of a slice.
    sl: u64,
    /// Lines of the call, `W x SL`.
    lines: usize,
    /// The push slot size the lines region is sized from.
    slot: usize,
}

impl CpuRank {
    /// The form a copy-in two-shot call of `bytes` runs in (PROTOCOL.md "two-shot of
    /// lines"): [`TwoShotForm::Lines`] when its lines fit one parity of the lines region
    /// (`use_lines(bytes, world, push slot, true)`: the CPU backend runs no call in pieces),
    /// else [`TwoShotForm::Barrier`]. Same bytes, world and layout give the same form on
    /// every rank.
    pub fn two_shot_form(&self, bytes: usize) -> TwoShotForm {
        let slot = self.own().layout().push_slot_bytes;
        if use_lines(bytes as u64, self.world, slot, true) {
            TwoShotForm::Lines
        } else {
            TwoShotForm::Barrier
        }
    }

    /// The largest copy-in two-shot call (bytes) that runs as lines on this rank
    /// ([`LinesLayout::max_bytes`]; 0 when none does).
    pub fn lines_max_bytes(&self) -> u64 {
        LinesLayout::max_bytes(self.world, self.own().layout().push_slot_bytes)
    }

    /// Whether a call of `bytes` fits one parity of the lines region.
    pub(super) fn lines_fit(&self, bytes: usize) -> bool {
        LinesLayout::fits(
            bytes as u64,
            self.world,
            self.own().layout().push_slot_bytes,
        )
    }

    /// Out-of-place copy-in two-shot in the form `form` instead of the one
    /// [`CpuRank::two_shot_form`] picks (tests: both forms on the same sizes; every rank of
    /// a call must pass the same form). Same capacity as [`CpuRank::allreduce`] with
    /// [`Algo::TwoShot`]; [`TwoShotForm::Lines`] needs a call that fits the lines region
    /// (else a configuration error). Results are bit-identical in both forms.
    pub fn allreduce_two_shot(
        &self,
        form: TwoShotForm,
        dtype: DType,
        op: ReduceOp,
        blocks: usize,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), SimError> {
        super::same_len(input, output)?;
        self.run_call(Algo::TwoShot, Some(form), dtype, op, blocks, input)?
            .write(output);
        Ok(())
    }
}

/// What one read of a line's flag says.
enum Seen {
    /// This call's flag: the payload (the flag is cleared).
    Taken(Payload),
    /// Not yet (0, an older call's flag, or another call's of an older epoch).
    NotYet(u64),
}

impl CallCtx<'_> {
    /// Runs the lines form of this call on every block.
    pub(super) fn run_lines(&self) -> Result<Lines, SimError> {
        let world = self.me.world;
        let sl = LinesLayout::slice_lines(self.input.len() as u64, world);
        let lines = usize::try_from(sl)
            .ok()
            .and_then(|s| s.checked_mul(world))
            .ok_or_else(|| SimError::Config("lines call too large".into()))?;
        let slot = self.me.own().layout().push_slot_bytes;
        let g = Geo { sl, lines, slot };
        self.run_blocks(|c, b| c.run_lines_block(b, &g))
    }

    /// My lines: line L belongs to block `(L / T) % G`, as chunks do in the other forms.
    fn my_lines<'a>(&'a self, b: usize, g: &'a Geo) -> impl Iterator<Item = usize> + 'a {
        let t = self.me.cfg.threads_per_block;
        let grid = self.grid;
        (0..g.lines).filter(move |l| (l / t) % grid == b)
    }

    /// The 8-byte word at `off` of rank r's lines region.
    fn lines_word(&self, r: usize, off: u64) -> Result<&AtomicU64, Failed> {
        let reg = self.me.region(r).map_err(|_| Failed)?;
        let off = usize::try_from(off).map_err(|_| Failed)?;
        reg.u64_at(reg.layout().lines_offset() + off)
            .map_err(|_| Failed)
    }

    /// Stores a line at `off` of rank r's lines region: the payload relaxed, then the flag
    /// with `Release`.
    fn store_line(&self, r: usize, off: u64, payload: &Payload) -> Result<(), Failed> {
        for (i, w) in payload.iter().enumerate() {
            self.lines_word(r, off + 8 * i as u64)?
                .store(*w, Ordering::Relaxed);
        }
        let f = flag_word(self.epoch, self.sig);
        self.lines_word(r, off + 8 * FLAG_WORD as u64)?
            .store(f, Ordering::Release);
        Ok(())
    }

    /// One read of the line at `off` of my lines region, written by `writer`: this call's
    /// flag -> its payload, and the flag cleared (the consumer clears what it took:
    /// PROTOCOL.md "two-shot of lines", "Clear what you took"); this epoch with another
    /// signature -> CALL_MISMATCH; a newer epoch -> SEQ_MISMATCH; otherwise not yet.
    fn try_line(&self, b: usize, phase: u32, writer: usize, off: u64) -> Result<Seen, Failed> {
        let f = flag_word(self.epoch, self.sig);
        let flag = self.lines_word(self.me.rank, off + 8 * FLAG_WORD as u64)?;
        let v = flag.load(Ordering::Acquire);
        if v == f {
            let mut payload = [0u64; FLAG_WORD];
            for (i, w) in payload.iter_mut().enumerate() {
                *w = self
                    .lines_word(self.me.rank, off + 8 * i as u64)?
                    .load(Ordering::Relaxed);
            }
            // The next write here is the writer's line of call e + 2, made after it
            // finished call e + 1, which needed my lines of e + 1 (after this store).
            flag.store(0, Ordering::Relaxed);
            return Ok(Seen::Taken(payload));
        }
        // 0 (fresh or cleared) is "not yet": the epoch is never 0, a 0 tag never newer.
        if flag_epoch(v) == self.epoch && flag_sig(v) != self.sig {
            let r = self.rec(b, phase, ERR_CALL_MISMATCH, writer, v);
            return Err(self.fail(r, true));
        }
        if tag_is_newer(flag_epoch(v), self.epoch) {
            let r = self.rec(b, phase, ERR_SEQ_MISMATCH, writer, v);
            return Err(self.fail(r, true));
        }
        Ok(Seen::NotYet(v))
    }

    /// Polls, at once, the line at `off(s)` of my lines region for every writer s in the
    /// bit mask `pending` until each carries this call's flag (a line once taken is not
    /// read again); returns their payloads at index s. Slow path every
    /// [`SLOW_PATH_EVERY`] spins, for the lowest writer still missing: its header word
    /// (`epoch == e` with another signature: a peer with another call never writes the
    /// lines I poll -> CALL_MISMATCH), then the abort word and the deadline.
    fn poll_lines(
        &self,
        b: usize,
        phase: u32,
        mut pending: u32,
        off: impl Fn(usize) -> u64,
        abort: &AtomicU32,
        deadline: Instant,
    ) -> Result<[Payload; MAX_RANKS], Failed> {
        let mut got = [[0u64; FLAG_WORD]; MAX_RANKS];
        let mut last = [0u64; MAX_RANKS];
        let mut spins: u32 = 0;
        loop {
            for (s, slot) in got.iter_mut().enumerate().take(self.me.world) {
                if pending & (1 << s) != 0 {
                    match self.try_line(b, phase, s, off(s))? {
                        Seen::Taken(p) => {
                            *slot = p;
                            pending &= !(1 << s);
                        }
                        Seen::NotYet(v) => last[s] = v,
                    }
                }
            }
            if pending == 0 {
                return Ok(got);
            }
            spins = spins.wrapping_add(1);
            if spins % SLOW_PATH_EVERY == 0 {
                let s = pending.trailing_zeros() as usize;
                let h = self
                    .lines_word(self.me.rank, LinesLayout::hdr(self.parity, s) as u64)?
                    .load(Ordering::Acquire);
                if flag_epoch(h) == self.epoch && flag_sig(h) != self.sig {
                    let r = self.rec(b, phase, ERR_CALL_MISMATCH, s, h);
                    return Err(self.fail(r, true));
                }
                if let Some(w) = self.other_form(s)? {
                    let r = self.rec(b, phase, ERR_CALL_MISMATCH, s, w);
                    return Err(self.fail(r, true));
                }
                self.check_wait(b, phase, s, last[s], abort, deadline)?;
            }
            backoff(spins);
        }
    }

    /// A peer that took another form or algorithm at this epoch (a count on the other side
    /// of the lines rule, or an LL call): its block 0's start flag of this epoch in my pad,
    /// or its LL header line of this epoch in my push region (PROTOCOL.md "two-shot of
    /// lines", slow path). Returns the word seen.
    fn other_form(&self, s: usize) -> Result<Option<u64>, Failed> {
        let own = self.me.own();
        let start = own
            .u64_at(PadLayout::flag(BarrierKind::Start, self.parity, 0, s))
            .map_err(|_| Failed)?
            .load(Ordering::Acquire);
        if flag_epoch(start) == self.epoch {
            return Ok(Some(start));
        }
        let ll = own
            .u64_at(own.layout().push_offset() + inc_proto::push::PushLayout::hdr(self.parity, s))
            .map_err(|_| Failed)?
            .load(Ordering::Acquire);
        let (_, tag) = inc_proto::push::unpack_half(ll);
        Ok((tag == self.epoch).then_some(ll))
    }

    /// Folds line `l` in rank order 0..W-1 (mine from my input, the others' from `got`)
    /// with the two-shot's f32 fold, chunk by chunk (a line's 120 bytes plus 8 zero bytes
    /// are 8 chunks; lines start at multiples of 120 bytes, so chunks hold whole elements
    /// and the fold of each element is the reference's).
    fn fold_line(&self, l: usize, got: &[Payload; MAX_RANKS]) -> Result<Payload, Failed> {
        let me = self.me.rank;
        let mut bytes = [[0u8; LINE]; MAX_RANKS];
        for (s, out) in bytes.iter_mut().enumerate().take(self.me.world) {
            *out = if s == me {
                bytes_of(&input_line(self.input, l))
            } else {
                bytes_of(&got[s])
            };
        }
        let mut res = [0u8; LINE];
        for (k, out) in res.chunks_exact_mut(CHUNK_BYTES).enumerate() {
            let acc = self.fold_with(0..self.me.world, |s| {
                let mut c = [0u8; CHUNK_BYTES];
                c.copy_from_slice(&bytes[s][k * CHUNK_BYTES..(k + 1) * CHUNK_BYTES]);
                Ok(c)
            })?;
            out.copy_from_slice(&self.finish_chunk(acc));
        }
        let mut payload = [0u8; LINE_PAYLOAD];
        payload.copy_from_slice(&res[..LINE_PAYLOAD]);
        Ok(words_of(&payload))
    }

    /// Block `b` of a lines call: the steps of `inc_proto::lines::STEP_NAMES`.
    fn run_lines_block(&self, b: usize, g: &Geo) -> Result<Lines, Failed> {
        let me = self.me.rank;
        let world = self.me.world;
        let p = self.parity;
        let abort = self.me.own().u32_at(PadLayout::ABORT).map_err(|_| Failed)?;
        let deadline = Instant::now() + self.me.cfg.timeout;
        let slice_of = |l: usize| l as u64 / g.sl;
        let len = self.input.len();
        let mut out = Vec::new();

        // STEP 0 Prologue
        if abort.load(Ordering::Acquire) != 0 {
            return Err(Failed);
        }

        // STEP 1 Scatter
        if b == 0 {
            let f = flag_word(self.epoch, self.sig);
            for t in (0..world).filter(|&t| t != me) {
                self.lines_word(t, LinesLayout::hdr(p, me) as u64)?
                    .store(f, Ordering::Relaxed);
            }
        }
        for l in self.my_lines(b, g) {
            let q = slice_of(l) as usize;
            if q != me {
                let j = l as u64 - q as u64 * g.sl;
                let off = LinesLayout::recv(p, q, me, j, g.sl, world, g.slot);
                self.store_line(q, off, &input_line(self.input, l))?;
            }
        }

        // STEP 2 ReduceStore
        let others = ((1u32 << world) - 1) & !(1u32 << me);
        for l in self.my_lines(b, g).filter(|&l| slice_of(l) as usize == me) {
            let j = l as u64 - me as u64 * g.sl;
            let recv = |s: usize| LinesLayout::recv(p, me, s, j, g.sl, world, g.slot);
            let got = self.poll_lines(b, step::REDUCE_STORE, others, recv, abort, deadline)?;
            let v = self.fold_line(l, &got)?;
            for q in (1..world).map(|k| (me + k) % world) {
                let off = LinesLayout::gather(p, q, me, j, g.sl, world, g.slot);
                self.store_line(q, off, &v)?;
            }
            if l * LINE_PAYLOAD < len {
                out.push((l, bytes_line(&v)));
            }
        }

        // STEP 3 Gather
        for l in self.my_lines(b, g) {
            let q = slice_of(l) as usize;
            if q != me {
                let j = l as u64 - q as u64 * g.sl;
                let gath = |_: usize| LinesLayout::gather(p, me, q, j, g.sl, world, g.slot);
                let got = self.poll_lines(b, step::GATHER, 1 << q, gath, abort, deadline)?;
                if l * LINE_PAYLOAD < len {
                    out.push((l, bytes_line(&got[q])));
                }
            }
        }

        // STEP 4 Epilogue
        self.advance_epoch(b)?;
        Ok(out)
    }
}

/// The payload words as the line's 120 bytes.
fn bytes_line(words: &Payload) -> [u8; LINE_PAYLOAD] {
    let mut out = [0u8; LINE_PAYLOAD];
    out.copy_from_slice(&bytes_of(words)[..LINE_PAYLOAD]);
    out
}
