//! Executing one action of a lines-family block (Scatter, ReduceStore, Gather), whether a
//! waiting block can move, and the "clear what you took" check at the end of a call.

use super::{
    describe_prov, fold, input, meta, prov, Lines, LinesStep, LinesWeakening, WHAT_CLEAR,
    WHAT_GATH, WHAT_HDR, WHAT_RECV,
};
use crate::check::engine::{Family, Run};
use crate::check::ViolationKind;
use crate::model::MemOrder;
use crate::push::tag_is_newer;
use crate::types::{flag_epoch, flag_sig, ERR_CALL_MISMATCH};

/// What a poll of one line found.
enum Poll {
    /// The flag is this call's: the payload.
    Ready(u32),
    /// Not yet (no mismatch, no abort seen).
    Wait,
    /// The block failed (mismatch, newer epoch, abort).
    Failed,
}

impl Run<Lines<'_>> {
    /// Executes one action of block i at `step`.
    pub(super) fn lines_step(&mut self, i: usize, step: LinesStep) {
        match step {
            LinesStep::Prologue => self.prologue(i),
            LinesStep::Scatter => self.scatter(i),
            LinesStep::ReduceStore => self.reduce_store(i),
            LinesStep::Gather => self.gather(i),
            LinesStep::Epilogue => self.epilogue(i),
        }
    }

    /// The peer whose line block i polls now (ReduceStore, Gather), if any.
    pub(super) fn polled_peer(&self, i: usize) -> Option<usize> {
        let (w, cursor) = (self.set.world, self.blocks.get(i)?.cursor);
        let r = i / self.max_g;
        match self.cur_step(i)? {
            LinesStep::ReduceStore => Some(cursor % (2 * w)).filter(|&s| s < w && s != r),
            LinesStep::Gather => Some((r + 1 + cursor % (w - 1)) % w),
            _ => None,
        }
    }

    /// Stores one line (flag `flag`, payload `payload`) into line `idx` of rank q's parity
    /// p: one store, or with `SplitLine` the payload then the flag, landing separately.
    fn store_line(&mut self, i: usize, q: usize, idx: usize, flag: u64, payload: u32, pv: u32) {
        let r = i / self.max_g;
        let p = self.parity(r);
        let geo = self.fam.geo;
        if geo.words == 2 {
            let data = geo.line(q, p, idx, 1);
            self.mem
                .store(i, data, u64::from(payload), meta(0, pv), MemOrder::Relaxed);
            let loc = geo.line(q, p, idx, 0);
            self.mem.store(i, loc, flag, meta(0, pv), MemOrder::Relaxed);
        } else {
            let loc = geo.line(q, p, idx, 0);
            self.mem
                .store(i, loc, flag, meta(payload, pv), MemOrder::Relaxed);
        }
    }

    /// Stores 0 into the flag of line `idx` of my own parity (not with `NoClear`).
    fn clear_line(&mut self, i: usize, idx: usize, line: usize) {
        if self.fam.cfg.weaken == Some(LinesWeakening::NoClear) {
            return;
        }
        let r = i / self.max_g;
        let k = self.ranks[r].call;
        let loc = self.fam.geo.line(r, self.parity(r), idx, 0);
        let pv = prov(r, k, WHAT_CLEAR, line);
        self.mem.store(i, loc, 0, meta(0, pv), MemOrder::Relaxed);
    }

    /// Scatter: block 0 first stores my header flag into `hdr[p][me]` of every peer (one
    /// action per peer); then one action per (line j of my block, slice q != me): line
    /// `q SL + j` of my input into owner q's `recv[k_q(me)][j]`.
    fn scatter(&mut self, i: usize) {
        let (r, b) = (i / self.max_g, i % self.max_g);
        let k = self.ranks[r].call;
        let w = self.set.world;
        let mut idx = self.blocks[i].cursor;
        let f = self.want(r);
        if b == 0 {
            if let Some(q) = self.peer(r, idx) {
                let loc = self.fam.geo.hdr(q, self.parity(r), r);
                let pv = prov(r, k, WHAT_HDR, 0);
                self.mem.store(i, loc, f, meta(0, pv), MemOrder::Relaxed);
                self.blocks[i].cursor += 1;
                return;
            }
            idx -= w - 1;
        }
        let cut = self.fam.cut(r, k);
        let Some(j) = self.nth_chunk_in(r, b, idx / (w - 1), cut.sl) else {
            return self.next_step(i);
        };
        let q = (r + 1 + idx % (w - 1)) % w;
        let line = q * cut.sl + j;
        let at = self.fam.geo.recv(q, r, j, cut.sl);
        let pv = prov(r, k, WHAT_RECV, line);
        self.store_line(i, q, at, f, input(r, k, line, cut.n), pv);
        self.blocks[i].cursor += 1;
    }

    /// ReduceStore, per line j of my slice (cursor = j index x 2W + sub): sub < W polls
    /// writer `s = sub`'s `recv[k(s)][j]` (rank order; my own input for s == me) and folds
    /// it; sub == W clears every flag taken and writes my output; sub > W stores the
    /// result line into `gath[k_q(me)][j]` of peer q (rotated order).
    fn reduce_store(&mut self, i: usize) {
        let (r, b) = (i / self.max_g, i % self.max_g);
        let k = self.ranks[r].call;
        let w = self.set.world;
        let cursor = self.blocks[i].cursor;
        let cut = self.fam.cut(r, k);
        let Some(j) = self.nth_chunk_in(r, b, cursor / (2 * w), cut.sl) else {
            return self.next_step(i);
        };
        let line = r * cut.sl + j;
        let sub = cursor % (2 * w);
        if sub < w {
            let s = sub;
            let x = if s == r {
                input(r, k, line, cut.n)
            } else {
                let at = self.fam.geo.recv(r, s, j, cut.sl);
                match self.poll_line(i, s, at, prov(s, k, WHAT_RECV, line)) {
                    Poll::Ready(x) => x,
                    Poll::Wait | Poll::Failed => return,
                }
            };
            if let Some(a) = self.fam.acc.get_mut(i) {
                *a = if s == 0 { x } else { fold(*a, x) };
            }
        } else if sub == w {
            for s in (0..w).filter(|&s| s != r) {
                let at = self.fam.geo.recv(r, s, j, cut.sl);
                self.clear_line(i, at, line);
            }
            let v = self.fam.acc.get(i).copied().unwrap_or(0);
            if let Some(o) = self.ranks[r].out.get_mut(line) {
                *o = Some(u64::from(v));
            }
        } else {
            let q = (r + sub - w) % w;
            let at = self.fam.geo.gath(q, r, j, cut.sl);
            let v = self.fam.acc.get(i).copied().unwrap_or(0);
            let f = self.want(r);
            self.store_line(i, q, at, f, v, prov(r, k, WHAT_GATH, line));
        }
        self.blocks[i].cursor += 1;
    }

    /// Gather (cursor = j index x (W-1) + m): poll my own `gath[k(q)][j]`, q = the m-th
    /// rank after me, until its flag is this call's; clear it; copy it to my output.
    fn gather(&mut self, i: usize) {
        let (r, b) = (i / self.max_g, i % self.max_g);
        let k = self.ranks[r].call;
        let w = self.set.world;
        let cursor = self.blocks[i].cursor;
        let cut = self.fam.cut(r, k);
        let Some(j) = self.nth_chunk_in(r, b, cursor / (w - 1), cut.sl) else {
            return self.next_step(i);
        };
        let q = (r + 1 + cursor % (w - 1)) % w;
        let line = q * cut.sl + j;
        let at = self.fam.geo.gath(r, q, j, cut.sl);
        let Poll::Ready(x) = self.poll_line(i, q, at, prov(q, k, WHAT_GATH, line)) else {
            return;
        };
        self.clear_line(i, at, line);
        if let Some(o) = self.ranks[r].out.get_mut(line) {
            *o = Some(u64::from(x));
        }
        self.blocks[i].cursor += 1;
    }

    /// Polls line `idx` of my own parity, written by `from`, whose write of this call has
    /// provenance `want`. This call's flag: the payload (a stale read when its provenance
    /// is not `want`). Another flag: the poll rules (this epoch with another signature ->
    /// CALL_MISMATCH, a newer epoch -> SEQ_MISMATCH, else not yet), then the slow path:
    /// the writer's header word (this epoch, another signature -> CALL_MISMATCH) and the
    /// abort word.
    fn poll_line(&mut self, i: usize, from: usize, idx: usize, want: u32) -> Poll {
        let r = i / self.max_g;
        let (e, p, f) = (self.epoch_of(r), self.parity(r), self.want(r));
        let geo = self.fam.geo;
        let (v, m) = self.pick_load(i, geo.line(r, p, idx, 0), MemOrder::Relaxed);
        if v == f {
            let (payload, pv) = if geo.words == 2 {
                let (d, dm) = self.pick_load(i, geo.line(r, p, idx, 1), MemOrder::Relaxed);
                (d as u32, dm as u32)
            } else {
                ((m >> 32) as u32, m as u32)
            };
            if pv != want {
                let step = self.cur_step(i).map_or("?", |s| s.name());
                let text = format!(
                    "{step} read r{r} line {idx} of parity {}: found {}, expected {} (its flag said epoch {e})",
                    e % 2,
                    describe_prov(pv),
                    describe_prov(want),
                );
                self.bad_read(i, from, text);
            }
            return Poll::Ready(payload);
        }
        if self.flag_error(i, from, v) {
            return Poll::Failed;
        }
        let (h, _) = self.pick_load(i, geo.hdr(r, p, from), MemOrder::Relaxed);
        if flag_epoch(h) == e && flag_sig(h) != flag_sig(f) {
            self.fail(i, ERR_CALL_MISMATCH, from);
            return Poll::Failed;
        }
        if self.abort_seen(i) {
            return Poll::Failed;
        }
        Poll::Wait
    }

    /// Whether running block i now can change anything (a poll that can only read what it
    /// read before, with no mismatch or abort visible, cannot).
    pub(super) fn lines_productive(&self, i: usize) -> bool {
        let r = i / self.max_g;
        if self.mem.newest_landed(self.fam.abort_loc(r)).0 != 0 {
            return true;
        }
        let Some(from) = self.polled_peer(i) else {
            return true;
        };
        let (b, k, w) = (i % self.max_g, self.ranks[r].call, self.set.world);
        let cut = self.fam.cut(r, k);
        let cursor = self.blocks[i].cursor;
        let reduce = self.cur_step(i) == Some(LinesStep::ReduceStore);
        let jidx = if reduce {
            cursor / (2 * w)
        } else {
            cursor / (w - 1)
        };
        let Some(j) = self.nth_chunk_in(r, b, jidx, cut.sl) else {
            return true;
        };
        let (e, p) = (self.epoch_of(r), self.parity(r));
        let geo = self.fam.geo;
        let idx = if reduce {
            geo.recv(r, from, j, cut.sl)
        } else {
            geo.gath(r, from, j, cut.sl)
        };
        let v = self.mem.newest_landed(self.fam.geo.line(r, p, idx, 0)).0;
        if self.flag_moves(r, v) {
            return true;
        }
        let h = self.mem.newest_landed(self.fam.geo.hdr(r, p, from)).0;
        flag_epoch(h) == e && flag_sig(h) != flag_sig(self.want(r))
    }

    /// "Clear what you took": rank r completed a call; every flag word of its parity of
    /// that call must be 0 but those a peer one call (or more) ahead wrote. A flag left
    /// is reported as a stale read (stale memory a later call may read).
    pub(super) fn clear_check(&mut self, r: usize) {
        // The epilogue already advanced the epoch: it is the completed call's.
        let e = self.ranks[r].epoch;
        let p = (e % 2) as usize;
        let geo = self.fam.geo;
        let left = (0..geo.per_parity).find_map(|idx| {
            let (v, m) = self.mem.newest_landed(geo.line(r, p, idx, 0));
            (v != 0 && !tag_is_newer(flag_epoch(v), e)).then_some((idx, v, m))
        });
        if let Some((idx, v, m)) = left {
            let k = self.ranks[r].call;
            let text = format!(
                "r{r} call {k}: after the call, line {idx} of parity {p} still holds the flag of epoch {} ({}): clear what you took",
                flag_epoch(v),
                describe_prov(m as u32)
            );
            self.violation(ViolationKind::StaleRead, text, None);
        }
    }
}
