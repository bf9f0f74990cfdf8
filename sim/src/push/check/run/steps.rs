//! Executing one action of a block: the push steps (PushData, PollReduce, HdrCheck) and
//! the v1 one-shot of barrier calls.

use crate::check::{mix, tag};
use crate::model::MemOrder;
use crate::types::ERR_SEQ_MISMATCH;
use crate::ViolationKind;

use super::*;
use crate::push::tag_is_newer;

impl Run<'_> {
    pub(super) fn step_block(&mut self, i: usize) {
        let r = i / self.max_g;
        let k = self.ranks[r].call;
        let barrier = self.is_barrier_call(k);
        match self.blocks[i].pc {
            0 => {
                // Prologue: exit if aborted (or this rank's comm is poisoned by an
                // earlier error: the host refuses the call).
                let poisoned = self.ranks[r].error;
                if poisoned != 0 {
                    self.fail(i, poisoned, r);
                    return;
                }
                if self.abort_seen(i) {
                    return;
                }
                self.next_step(i);
            }
            1 if barrier => self.copy_in_and_signal(i),
            1 => self.push_data(i),
            2 if barrier => self.barrier_and_reduce(i),
            2 => self.poll(i),
            3 if barrier || self.cfg.weaken == Some(PushWeakening::NoHdrCheck) => self.next_step(i),
            3 => {
                // HdrCheck: every peer's header line of call e, with the barrier's rules.
                let cursor = self.blocks[i].cursor;
                if cursor + 1 >= self.cfg.world {
                    self.next_step(i);
                    return;
                }
                let q = self.peer(r, cursor);
                match self.read_hdr(i, q) {
                    Err(()) => {}
                    Ok(true) => self.blocks[i].cursor += 1,
                    Ok(false) => {
                        self.abort_seen(i);
                    }
                }
            }
            4 => {
                let st = &mut self.ranks[r];
                st.done += 1;
                if st.done == st.grid {
                    st.done = 0;
                    st.epoch = st.epoch.wrapping_add(1);
                }
                self.next_step(i);
            }
            _ => {}
        }
    }

    /// PushData: block 0 first stores the header line at every peer (one action per
    /// peer); then one action per (chunk, peer, line): one 16-byte store whose two 8-byte
    /// halves (four 4-byte words with `SplitWords`) land separately.
    pub(super) fn push_data(&mut self, i: usize) {
        let r = i / self.max_g;
        let b = i % self.max_g;
        let k = self.ranks[r].call;
        let e = self.epoch_of(r);
        let p = e as usize % 2;
        let peers = self.cfg.world - 1;
        let mut idx = self.blocks[i].cursor;
        if b == 0 {
            if idx < peers {
                let q = self.peer(r, idx);
                let v = self.want(r);
                for h in 0..2 {
                    let loc = self.geo.hdr(q, p, r, h);
                    self.mem
                        .store(i, loc, v, tag(r, k, WHAT_HDR), MemOrder::Relaxed);
                }
                self.blocks[i].cursor += 1;
                return;
            }
            idx -= peers;
        }
        let n = self.chunks(r, k);
        let per = 2 * peers;
        let Some(c) = (per > 0)
            .then(|| self.nth_chunk(r, b, idx / per.max(1), n))
            .flatten()
        else {
            self.next_step(i);
            return;
        };
        let q = self.peer(r, (idx % per) / 2);
        let line = idx % 2;
        let prov = tag(r, k, WHAT_LINE);
        for h in 2 * line..2 * line + 2 {
            let d = half_value(r, k, c, h);
            if self.geo.words == 2 {
                let (dl, tl) = (
                    self.geo.slot(q, p, r, c, h, 0),
                    self.geo.slot(q, p, r, c, h, 1),
                );
                self.mem.store(i, dl, u64::from(d), prov, MemOrder::Relaxed);
                self.mem.store(i, tl, u64::from(e), prov, MemOrder::Relaxed);
            } else {
                let loc = self.geo.slot(q, p, r, c, h, 0);
                self.mem
                    .store(i, loc, half_word(d, e), prov, MemOrder::Relaxed);
            }
        }
        self.blocks[i].cursor += 1;
    }

    /// Reads the four halves of chunk c from writer q in my slot; what the reader decides.
    pub(super) fn poll_chunk(&mut self, i: usize, q: usize, c: usize) -> Poll {
        let r = i / self.max_g;
        let e = self.epoch_of(r);
        let p = e as usize % 2;
        let mut data = [0u32; HALVES];
        let mut prov = [0u64; HALVES];
        let mut tags = [0u32; HALVES];
        for h in 0..HALVES {
            if self.geo.words == 2 {
                let (t, _) = self.load(i, self.geo.slot(r, p, q, c, h, 1), MemOrder::Relaxed);
                let (d, pv) = self.load(i, self.geo.slot(r, p, q, c, h, 0), MemOrder::Relaxed);
                tags[h] = t as u32;
                data[h] = d as u32;
                prov[h] = pv;
            } else {
                let (v, pv) = self.load(i, self.geo.slot(r, p, q, c, h, 0), MemOrder::Relaxed);
                tags[h] = v as u32;
                data[h] = (v >> 32) as u32;
                prov[h] = pv;
            }
        }
        let one_tag = self.cfg.weaken == Some(PushWeakening::OneTagPerLine);
        let checked = tags
            .iter()
            .enumerate()
            .filter(|(h, _)| !one_tag || h % 2 == 0)
            .map(|(_, &t)| t);
        let mut all = true;
        for t in checked {
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
    pub(super) fn poll(&mut self, i: usize) {
        let r = i / self.max_g;
        let b = i % self.max_g;
        let k = self.ranks[r].call;
        let w = self.cfg.world;
        let n = self.chunks(r, k);
        let cursor = self.blocks[i].cursor;
        let Some(c) = self.nth_chunk(r, b, cursor / w, n) else {
            self.next_step(i);
            return;
        };
        let q = cursor % w;
        let data = if q == r {
            [0, 1, 2, 3].map(|h| half_value(r, k, c, h))
        } else {
            match self.poll_chunk(i, q, c) {
                Poll::Newer => {
                    self.fail(i, ERR_SEQ_MISMATCH, q);
                    return;
                }
                Poll::Wait => {
                    // Slow path: the writer's header line (mismatch) and the abort word.
                    if self.read_hdr(i, q).is_err() {
                        return;
                    }
                    self.abort_seen(i);
                    return;
                }
                Poll::Ready(data, prov) => {
                    let want = tag(q, k, WHAT_LINE);
                    if let Some(h) = (0..HALVES).find(|&h| prov[h] != want) {
                        let p = self.epoch_of(r) % 2;
                        let text = format!(
                            "PollReduce read r{r}.slot[{p}][{q}] chunk {c} half {h}: found {}, expected {} (all checked tags said epoch {})",
                            describe_tag(prov[h]),
                            describe_tag(want),
                            self.epoch_of(r)
                        );
                        self.log(r, Some(b), format!("!! {text}"));
                        self.violation(
                            ViolationKind::StaleRead,
                            format!("r{r} b{b} call {k}: {text}"),
                        );
                    }
                    data
                }
            }
        };
        self.accumulate(r, c, q, chunk_value(&data));
        self.blocks[i].cursor += 1;
    }

    pub(super) fn accumulate(&mut self, r: usize, c: usize, q: usize, v: u64) {
        if let Some(o) = self.ranks[r].out.get_mut(c) {
            *o = Some(match (q, *o) {
                (0, _) | (_, None) => v,
                (_, Some(a)) => mix(a, v),
            });
        }
    }

    /// v1 one-shot, step 1: copy my chunks into my parity half, then (cursor past
    /// `FLAG_PHASE`) release the start flag at every peer.
    pub(super) fn copy_in_and_signal(&mut self, i: usize) {
        const FLAG_PHASE: usize = 1 << 20;
        let r = i / self.max_g;
        let b = i % self.max_g;
        let k = self.ranks[r].call;
        let p = self.epoch_of(r) as usize % 2;
        let cursor = self.blocks[i].cursor;
        if cursor < FLAG_PHASE {
            let n = self.chunks(r, k);
            if let Some(c) = self.nth_chunk(r, b, cursor, n) {
                let loc = self.geo.half(r, p, c);
                let v = u64::from(half_value(r, k, c, 0));
                self.mem
                    .store(i, loc, v, tag(r, k, WHAT_HALF), MemOrder::Relaxed);
                self.blocks[i].cursor += 1;
            } else {
                self.blocks[i].cursor = FLAG_PHASE;
            }
            return;
        }
        let j = cursor - FLAG_PHASE;
        if j + 1 >= self.cfg.world {
            self.next_step(i);
            return;
        }
        let q = self.peer(r, j);
        let loc = self.geo.flag(q, p, b, r);
        let v = self.want(r);
        self.mem
            .store(i, loc, v, tag(r, k, WHAT_FLAG), MemOrder::Release);
        self.blocks[i].cursor += 1;
    }

    /// v1 one-shot, step 2: acquire every peer's start flag, then read every rank's
    /// parity half for my chunks in rank order.
    pub(super) fn barrier_and_reduce(&mut self, i: usize) {
        let r = i / self.max_g;
        let b = i % self.max_g;
        let k = self.ranks[r].call;
        let w = self.cfg.world;
        let p = self.epoch_of(r) as usize % 2;
        let cursor = self.blocks[i].cursor;
        if cursor + 1 < w {
            let q = self.peer(r, cursor);
            let loc = self.geo.flag(r, p, b, q);
            let (v, _) = self.load(i, loc, MemOrder::Acquire);
            if v == self.want(r) {
                self.blocks[i].cursor += 1;
            } else if !self.flag_error(i, q, v) {
                self.abort_seen(i);
            }
            return;
        }
        let idx = cursor + 1 - w;
        let n = self.chunks(r, k);
        let Some(c) = self.nth_chunk(r, b, idx / w, n) else {
            self.next_step(i);
            return;
        };
        let q = idx % w;
        let (v, prov) = self.load(i, self.geo.half(q, p, c), MemOrder::Relaxed);
        let want = tag(q, k, WHAT_HALF);
        if prov != want {
            let text = format!(
                "v1 ReduceAll read r{q}.buf[{p}] chunk {c}: found {}, expected {}",
                describe_tag(prov),
                describe_tag(want)
            );
            self.log(r, Some(b), format!("!! {text}"));
            self.violation(
                ViolationKind::StaleRead,
                format!("r{r} b{b} call {k}: {text}"),
            );
        }
        self.accumulate(r, c, q, v);
        self.blocks[i].cursor += 1;
    }
}
