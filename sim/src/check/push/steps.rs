//! Executing one action of a push-family block: the LL steps (PushData, PollReduce,
//! HdrCheck), the v1 one-shot of barrier calls, and whether a waiting block can move.

use super::{chunk_value, half_value, half_word, Push, PushStep, PushWeakening, HALVES};
use crate::check::engine::{Family, Run};
use crate::check::oracle::{describe_tag, mix, tag, WHAT_FLAG, WHAT_HALF, WHAT_HDR, WHAT_LINE};
use crate::model::MemOrder;
use crate::push::tag_is_newer;
use crate::types::{flag_epoch, ERR_SEQ_MISMATCH};

/// What a poll of one (chunk, writer) found.
enum Poll {
    /// Every checked tag is `e`: the data words read and their provenance tags.
    Ready([u32; HALVES], [u64; HALVES]),
    /// A checked tag is newer than `e`.
    Newer,
    /// Not yet.
    Wait,
}

/// The v1 copy-in's cursor from where it releases the start flags.
const FLAG_PHASE: usize = 1 << 20;

impl Run<Push<'_>> {
    /// Executes one action of block i at `step`.
    pub(super) fn push_step(&mut self, i: usize, step: PushStep) {
        match step {
            PushStep::Prologue => self.prologue(i),
            PushStep::PushData => self.push_data(i),
            PushStep::PollReduce => self.poll(i),
            PushStep::HdrCheck if self.fam.cfg.weaken == Some(PushWeakening::NoHdrCheck) => {
                self.next_step(i)
            }
            PushStep::HdrCheck => {
                // Every peer's header line of call e, with the barrier's rules; a header
                // PollReduce already accepted is not read again (the kernel keeps it in a
                // register).
                let r = i / self.max_g;
                while self
                    .peer(r, self.blocks[i].cursor)
                    .is_some_and(|q| self.hdr_accepted(i, q))
                {
                    self.blocks[i].cursor += 1;
                }
                let Some(q) = self.peer(r, self.blocks[i].cursor) else {
                    return self.next_step(i);
                };
                match self.read_hdr(i, q) {
                    Err(()) => {}
                    Ok(true) => self.blocks[i].cursor += 1,
                    Ok(false) => {
                        self.abort_seen(i);
                    }
                }
            }
            PushStep::Epilogue => self.epilogue(i),
            PushStep::CopyInSignal => self.copy_in_and_signal(i),
            PushStep::WaitReduce => self.wait_and_reduce(i),
        }
    }

    /// PushData: block 0 first stores the header line at every peer (one action per
    /// peer); then one action per (chunk, peer, line): one 16-byte store whose two 8-byte
    /// halves (four 4-byte words with `SplitWords`) land separately.
    fn push_data(&mut self, i: usize) {
        let (r, b) = (i / self.max_g, i % self.max_g);
        let k = self.ranks[r].call;
        let e = self.epoch_of(r);
        let p = e as usize % 2;
        let peers = self.set.world - 1;
        let mut idx = self.blocks[i].cursor;
        if b == 0 {
            if let Some(q) = self.peer(r, idx) {
                let v = self.want(r);
                for h in 0..2 {
                    let loc = self.fam.geo.hdr(q, p, r, h);
                    self.mem
                        .store(i, loc, v, tag(r, k, WHAT_HDR), MemOrder::Relaxed);
                }
                self.blocks[i].cursor += 1;
                return;
            }
            idx -= peers;
        }
        let per = 2 * peers;
        let c = (per > 0).then(|| self.nth_chunk(r, b, idx / per)).flatten();
        let (Some(c), Some(q)) = (c, self.peer(r, (idx % per.max(1)) / 2)) else {
            return self.next_step(i);
        };
        let line = idx % 2;
        let prov = tag(r, k, WHAT_LINE);
        let geo = self.fam.geo;
        for h in 2 * line..2 * line + 2 {
            let d = half_value(r, k, c, h);
            if geo.words == 2 {
                let (dl, tl) = (geo.slot(q, p, r, c, h, 0), geo.slot(q, p, r, c, h, 1));
                self.mem.store(i, dl, u64::from(d), prov, MemOrder::Relaxed);
                self.mem.store(i, tl, u64::from(e), prov, MemOrder::Relaxed);
            } else {
                let loc = geo.slot(q, p, r, c, h, 0);
                self.mem
                    .store(i, loc, half_word(d, e), prov, MemOrder::Relaxed);
            }
        }
        self.blocks[i].cursor += 1;
    }

    /// Reads the four halves of chunk c from writer q in my slot; what the reader decides.
    fn poll_chunk(&mut self, i: usize, q: usize, c: usize) -> Poll {
        let r = i / self.max_g;
        let e = self.epoch_of(r);
        let p = e as usize % 2;
        let geo = self.fam.geo;
        let (mut data, mut prov, mut tags) = ([0u32; HALVES], [0u64; HALVES], [0u32; HALVES]);
        for h in 0..HALVES {
            if geo.words == 2 {
                let (t, _) = self.pick_load(i, geo.slot(r, p, q, c, h, 1), MemOrder::Relaxed);
                let (d, pv) = self.pick_load(i, geo.slot(r, p, q, c, h, 0), MemOrder::Relaxed);
                (tags[h], data[h], prov[h]) = (t as u32, d as u32, pv);
            } else {
                let (v, pv) = self.pick_load(i, geo.slot(r, p, q, c, h, 0), MemOrder::Relaxed);
                (tags[h], data[h], prov[h]) = (v as u32, (v >> 32) as u32, pv);
            }
        }
        let one_tag = self.fam.cfg.weaken == Some(PushWeakening::OneTagPerLine);
        let checked = tags
            .iter()
            .enumerate()
            .filter(|(h, _)| !one_tag || h % 2 == 0);
        let mut all = true;
        for (_, &t) in checked {
            if tag_is_newer(t, e) {
                return Poll::Newer;
            }
            all &= t == e;
        }
        if all {
            Poll::Ready(data, prov)
        } else {
            Poll::Wait
        }
    }

    /// PollReduce: cursor = chunk index * W + writer; rank order, my own data from my input.
    /// Polling writer q's chunk also reads q's header line until it is accepted (bit q of
    /// the block's `hdr_ok`, which HdrCheck then does not read again); mirrors
    /// kernels/push_one_shot.cu: the header is reloaded with the data lines in PollReduce
    /// and kept once it is this call's.
    fn poll(&mut self, i: usize) {
        let (r, b) = (i / self.max_g, i % self.max_g);
        let k = self.ranks[r].call;
        let w = self.set.world;
        let cursor = self.blocks[i].cursor;
        let Some(c) = self.nth_chunk(r, b, cursor / w) else {
            return self.next_step(i);
        };
        let q = cursor % w;
        let data = if q == r {
            [0, 1, 2, 3].map(|h| half_value(r, k, c, h))
        } else {
            match self.poll_chunk(i, q, c) {
                Poll::Newer => return self.fail(i, ERR_SEQ_MISMATCH, q),
                Poll::Wait => {
                    // Slow path: the writer's header line (mismatch; kept when it is this
                    // call's) and the abort word.
                    if self.poll_hdr(i, q).is_ok() {
                        self.abort_seen(i);
                    }
                    return;
                }
                Poll::Ready(data, prov) => {
                    let want = tag(q, k, WHAT_LINE);
                    if let Some(h) = (0..HALVES).find(|&h| prov[h] != want) {
                        let e = self.epoch_of(r);
                        let text = format!(
                            "PollReduce read r{r}.slot[{}][{q}] chunk {c} half {h}: found {}, expected {} (all checked tags said epoch {e})",
                            e % 2,
                            describe_tag(prov[h]),
                            describe_tag(want),
                        );
                        self.bad_read(i, q, text);
                    }
                    // The header line loaded with the data lines (after them here: one
                    // action, nothing lands in between); the data stays as read.
                    if self.hdr_early() && !self.hdr_accepted(i, q) && self.poll_hdr(i, q).is_err()
                    {
                        return;
                    }
                    data
                }
            }
        };
        self.accumulate(r, c, q, chunk_value(&data));
        self.blocks[i].cursor += 1;
    }

    /// Folds rank q's value of chunk c into rank r's output (rank order).
    fn accumulate(&mut self, r: usize, c: usize, q: usize, v: u64) {
        if let Some(o) = self.ranks[r].out.get_mut(c) {
            *o = Some(match (q, *o) {
                (0, _) | (_, None) => v,
                (_, Some(a)) => mix(a, v),
            });
        }
    }

    /// v1 one-shot (push form, PROTOCOL.md "one-shot"), step 1: store my chunks into my
    /// receive area `R[r]` of every peer's parity half, then (cursor past `FLAG_PHASE`)
    /// release the start flag at every peer.
    fn copy_in_and_signal(&mut self, i: usize) {
        let (r, b) = (i / self.max_g, i % self.max_g);
        let k = self.ranks[r].call;
        let p = self.parity(r);
        let cursor = self.blocks[i].cursor;
        if cursor < FLAG_PHASE {
            if let Some(c) = self.nth_chunk(r, b, cursor) {
                let v = u64::from(half_value(r, k, c, 0));
                for q in (0..self.set.world).filter(|&q| q != r) {
                    let loc = self.fam.geo.half(q, p, r, c);
                    self.mem
                        .store(i, loc, v, tag(r, k, WHAT_HALF), MemOrder::Relaxed);
                }
                self.blocks[i].cursor += 1;
            } else {
                self.blocks[i].cursor = FLAG_PHASE;
            }
            return;
        }
        let Some(q) = self.peer(r, cursor - FLAG_PHASE) else {
            return self.next_step(i);
        };
        let loc = self.fam.geo.flag(q, p, b, r);
        let v = self.want(r);
        self.mem
            .store(i, loc, v, tag(r, k, WHAT_FLAG), MemOrder::Release);
        self.blocks[i].cursor += 1;
    }

    /// v1 one-shot, step 2: acquire every peer's start flag, then fold my chunks in rank
    /// order: my own input for q == r, my own receive area `R[q]` for every peer q.
    fn wait_and_reduce(&mut self, i: usize) {
        let (r, b) = (i / self.max_g, i % self.max_g);
        let k = self.ranks[r].call;
        let w = self.set.world;
        let p = self.parity(r);
        let cursor = self.blocks[i].cursor;
        if let Some(q) = self.peer(r, cursor) {
            let loc = self.fam.geo.flag(r, p, b, q);
            let (v, _) = self.pick_load(i, loc, MemOrder::Acquire);
            if v == self.want(r) {
                self.blocks[i].cursor += 1;
            } else if !self.flag_error(i, q, v) {
                self.abort_seen(i);
            }
            return;
        }
        let idx = cursor + 1 - w;
        let Some(c) = self.nth_chunk(r, b, idx / w) else {
            return self.next_step(i);
        };
        let q = idx % w;
        let v = if q == r {
            u64::from(half_value(r, k, c, 0))
        } else {
            let loc = self.fam.geo.half(r, p, q, c);
            let place = format!("own R[{q}] of half {p} chunk {c}");
            self.read_loc(i, loc, q, tag(q, k, WHAT_HALF), "v1 ReduceRecv", &place)
        };
        self.accumulate(r, c, q, v);
        self.blocks[i].cursor += 1;
    }

    /// Whether PollReduce reads each writer's header line with its data and keeps it once
    /// it is this call's (not with [`PushWeakening::NoHdrCheck`]: nothing awaits it then;
    /// the poll's slow path still reads it).
    fn hdr_early(&self) -> bool {
        self.fam.cfg.weaken != Some(PushWeakening::NoHdrCheck)
    }

    /// Whether block i accepted writer q's header line of this call in PollReduce.
    fn hdr_accepted(&self, i: usize, q: usize) -> bool {
        self.blocks.get(i).is_some_and(|b| (b.hdr_ok >> q) & 1 != 0)
    }

    /// [`Self::read_hdr`] in PollReduce: a header of this call (`Ok(true)`) is kept for
    /// HdrCheck (bit q of the block's `hdr_ok`).
    fn poll_hdr(&mut self, i: usize, q: usize) -> Result<bool, ()> {
        let ok = self.read_hdr(i, q)?;
        if ok {
            if let Some(b) = self.blocks.get_mut(i) {
                b.hdr_ok |= 1 << q;
            }
        }
        Ok(ok)
    }

    /// Reads writer q's header line (both halves). `Ok(true)`: both halves carry this
    /// call's epoch and signature. `Ok(false)`: not there yet. `Err(())`: the block failed
    /// (another signature at epoch e -> CALL_MISMATCH, a newer epoch -> SEQ_MISMATCH).
    fn read_hdr(&mut self, i: usize, q: usize) -> Result<bool, ()> {
        let r = i / self.max_g;
        let e = self.epoch_of(r);
        let p = e as usize % 2;
        let mut v = [0u64; 2];
        for (h, x) in v.iter_mut().enumerate() {
            let loc = self.fam.geo.hdr(r, p, q, h);
            *x = self.pick_load(i, loc, MemOrder::Relaxed).0;
        }
        let want = self.want(r);
        let newer = v.iter().find(|&&x| tag_is_newer(flag_epoch(x), e));
        let odd = if let Some(&n) = newer {
            Some(n)
        } else if v.iter().all(|&x| flag_epoch(x) == e) {
            if v[0] == want && v[1] == v[0] {
                return Ok(true);
            }
            Some(if v[0] == want { v[1] } else { v[0] })
        } else {
            None
        };
        match odd {
            Some(x) if self.flag_error(i, q, x) => Err(()),
            _ => Ok(false),
        }
    }

    /// Whether the newest header line of writer q (both halves) lets a waiter move: where
    /// it is `awaited` (HdrCheck, and a poll that has not accepted it yet) its arrival
    /// does; otherwise (the poll's slow path) only an error does (a newer epoch, or epoch
    /// e with another signature).
    fn hdr_moves(&self, r: usize, q: usize, awaited: bool) -> bool {
        let e = self.epoch_of(r);
        let p = e as usize % 2;
        let v = [0, 1].map(|h| self.mem.newest_landed(self.fam.geo.hdr(r, p, q, h)).0);
        if v.iter().any(|&x| tag_is_newer(flag_epoch(x), e)) {
            return true;
        }
        let want = self.want(r);
        v.iter().all(|&x| flag_epoch(x) == e) && (awaited || v.iter().any(|&x| x != want))
    }

    /// Whether running block i now can change anything (a poll that can only read what it
    /// read before, with no mismatch or abort visible, cannot).
    pub(super) fn push_productive(&self, i: usize) -> bool {
        let (r, b) = (i / self.max_g, i % self.max_g);
        if self.mem.newest_landed(self.fam.abort_loc(r)).0 != 0 {
            return true;
        }
        let cursor = self.blocks[i].cursor;
        let w = self.set.world;
        let e = self.epoch_of(r);
        let p = e as usize % 2;
        let geo = self.fam.geo;
        match self.cur_step(i) {
            Some(PushStep::WaitReduce) => self.peer(r, cursor).is_none_or(|q| {
                let v = self.mem.newest_landed(geo.flag(r, p, b, q)).0;
                self.flag_moves(r, v)
            }),
            Some(PushStep::PollReduce) => {
                let Some(c) = self.nth_chunk(r, b, cursor / w) else {
                    return true;
                };
                let q = cursor % w;
                if q == r {
                    return true;
                }
                let mut all = true;
                for h in 0..HALVES {
                    let loc = geo.slot(r, p, q, c, h, geo.words - 1);
                    let t = self.mem.newest_landed(loc).0 as u32;
                    if tag_is_newer(t, e) {
                        return true;
                    }
                    all &= t == e;
                }
                all || self.hdr_moves(r, q, self.hdr_early() && !self.hdr_accepted(i, q))
            }
            // An accepted header moves the cursor without a read.
            Some(PushStep::HdrCheck) => self
                .peer(r, cursor)
                .is_none_or(|q| self.hdr_accepted(i, q) || self.hdr_moves(r, q, true)),
            _ => true,
        }
    }
}
