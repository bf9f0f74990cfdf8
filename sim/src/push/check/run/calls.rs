//! Launching and ending calls, whether a waiting block can move, loads, failures and
//! the flag/header/abort checks of a wait.

use crate::check::{BState, CallOutcome};
use crate::model::MemOrder;
use crate::sched::Strategy;
use crate::types::{
    abort_rank, abort_word, flag_epoch, flag_sig, flag_word, ERR_CALL_MISMATCH, ERR_PEER_ABORT,
    ERR_SEQ_MISMATCH,
};

use super::*;
use crate::push::{tag_is_newer, PUSH_STEP_NAMES};

impl Run<'_> {
    pub(super) fn start_calls(&mut self) {
        for r in 0..self.cfg.world {
            let st = &self.ranks[r];
            if st.in_call || st.killed || st.call >= self.cfg.bytes.len() {
                continue;
            }
            let k = st.call;
            if let Some(PushFault::Kill { rank, call }) = self.cfg.fault {
                if rank == r && k >= call {
                    self.ranks[r].killed = true;
                    self.log(r, None, "rank killed (never calls again)".into());
                    continue;
                }
            }
            let grid = self.grid(k);
            let chunks = self.chunks(r, k);
            // Stream order: everything the previous kernel did happens-before every block.
            for b in 0..grid {
                for b2 in 0..self.max_g {
                    let (t, t2) = (self.tid(r, b), self.tid(r, b2));
                    self.mem.sync_threads(t, t2);
                }
            }
            self.dirty[r] = true;
            let want = flag_word(self.epoch_of(r), self.sig(r, k));
            let st = &mut self.ranks[r];
            st.want = want;
            st.in_call = true;
            st.grid = grid;
            st.done = 0;
            st.out = vec![None; chunks];
            for b in 0..grid {
                let t = self.tid(r, b);
                self.blocks[t] = Block {
                    state: BState::Running,
                    pc: 0,
                    cursor: 0,
                };
            }
            let e = self.epoch_of(r);
            let what = if self.is_barrier_call(k) {
                "v1 one-shot"
            } else {
                "LL push"
            };
            self.log(
                r,
                None,
                format!("launch {what} ({grid} blocks, epoch {e}, {chunks} chunks)"),
            );
        }
    }

    pub(super) fn maybe_end_call(&mut self, r: usize) {
        let g = self.ranks[r].grid;
        if (0..g).any(|b| self.blocks[self.tid(r, b)].state == BState::Running) {
            return;
        }
        let failed = (0..g).any(|b| self.blocks[self.tid(r, b)].state == BState::Failed);
        // Flushing lands stores in every rank's memory.
        self.all_dirty();
        for b in 0..self.max_g {
            let t = self.tid(r, b);
            self.mem.flush(t);
            self.blocks[t].state = BState::Idle;
        }
        let st = &mut self.ranks[r];
        let outcome = CallOutcome::of(failed, st.error, &st.out);
        let ok = matches!(outcome, CallOutcome::Ok(_));
        st.results.push(outcome);
        self.log(
            r,
            None,
            format!("kernel complete ({})", if ok { "ok" } else { "error" }),
        );
        let st = &mut self.ranks[r];
        st.in_call = false;
        st.call += 1;
    }

    /// Whether the newest value of a flag-like word (`flag(e, sig)` from peer q) lets a
    /// waiter move: the awaited value, the same epoch with another signature, or a newer
    /// epoch.
    pub(super) fn flag_moves(&self, r: usize, v: u64) -> bool {
        let e = self.epoch_of(r);
        flag_epoch(v) == e || tag_is_newer(flag_epoch(v), e)
    }

    /// Whether the newest header line of writer q (both halves) lets a waiter move: in
    /// HdrCheck (`awaited`) its arrival does; in the poll's slow path only an error does
    /// (a newer epoch, or epoch e with another signature).
    pub(super) fn hdr_moves(&self, r: usize, q: usize, awaited: bool) -> bool {
        let e = self.epoch_of(r);
        let p = e as usize % 2;
        let v = [0, 1].map(|h| self.mem.newest_landed(self.geo.hdr(r, p, q, h)).0);
        if v.iter().any(|&x| tag_is_newer(flag_epoch(x), e)) {
            return true;
        }
        let want = self.ranks[r].want;
        v.iter().all(|&x| flag_epoch(x) == e) && (awaited || v.iter().any(|&x| x != want))
    }

    /// Whether running block i now can change anything (a poll that can only read what it
    /// read before, with no mismatch or abort visible, cannot).
    pub(super) fn productive(&self, i: usize) -> bool {
        let r = i / self.max_g;
        let b = i % self.max_g;
        let blk = &self.blocks[i];
        if self.mem.newest_landed(self.geo.abort(r)).0 != 0 {
            return true;
        }
        let k = self.ranks[r].call;
        let w = self.cfg.world;
        let e = self.epoch_of(r);
        let p = e as usize % 2;
        let barrier = self.is_barrier_call(k);
        match blk.pc {
            2 if barrier => {
                if blk.cursor >= w - 1 {
                    return true;
                }
                let q = self.peer(r, blk.cursor);
                let v = self.mem.newest_landed(self.geo.flag(r, p, b, q)).0;
                self.flag_moves(r, v)
            }
            2 => {
                let n = self.chunks(r, k);
                let Some(c) = self.nth_chunk(r, b, blk.cursor / w, n) else {
                    return true;
                };
                let q = blk.cursor % w;
                if q == r {
                    return true;
                }
                let tw = self.geo.words - 1;
                let mut all = true;
                for h in 0..HALVES {
                    let t = self.mem.newest_landed(self.geo.slot(r, p, q, c, h, tw)).0 as u32;
                    if tag_is_newer(t, e) {
                        return true;
                    }
                    all &= t == e;
                }
                all || self.hdr_moves(r, q, false)
            }
            3 if !barrier => {
                if blk.cursor >= w - 1 {
                    return true;
                }
                let q = self.peer(r, blk.cursor);
                self.hdr_moves(r, q, true)
            }
            _ => true,
        }
    }

    pub(super) fn load(&mut self, i: usize, loc: usize, order: MemOrder) -> (u64, u64) {
        let n = self.mem.load_choices(i, loc, order);
        let pick = match self.cfg.scheduler {
            PushScheduler::Random => {
                if n <= 1 || self.rng.below(2) == 0 {
                    0
                } else {
                    1 + self.rng.below(n - 1)
                }
            }
            PushScheduler::Pct { .. } => match self.pct.as_mut() {
                Some(p) => p.value(n),
                None => 0,
            },
            PushScheduler::Adversarial { .. } => 0,
        };
        self.mem.load(i, loc, order, pick)
    }

    pub(super) fn next_step(&mut self, i: usize) {
        let r = i / self.max_g;
        let b = &mut self.blocks[i];
        let done = b.pc;
        b.pc += 1;
        b.cursor = 0;
        if let Some(name) = PUSH_STEP_NAMES.get(done) {
            if done != 0 {
                self.log(r, Some(i % self.max_g), format!("{done} {name} done"));
            }
        }
        if self.blocks[i].pc >= PUSH_STEP_NAMES.len() {
            self.blocks[i].state = BState::Finished;
            self.maybe_end_call(r);
        }
    }

    pub(super) fn fail(&mut self, i: usize, code: u32, peer: usize) {
        let r = i / self.max_g;
        self.log(
            r,
            Some(i % self.max_g),
            format!("ERROR {} (peer r{peer})", crate::error_code_name(code)),
        );
        if self.ranks[r].error == 0 {
            self.ranks[r].error = code;
        }
        if code != ERR_PEER_ABORT {
            self.all_dirty();
            let word = u64::from(abort_word(r as u32, code));
            for q in 0..self.cfg.world {
                let loc = self.geo.abort(q);
                self.mem
                    .rmw(i, loc, |v| if v == 0 { Some((word, 0)) } else { None });
            }
        }
        self.blocks[i].state = BState::Failed;
        self.maybe_end_call(r);
    }

    /// Checks a flag-like value `v` (`flag(epoch, sig)`) read from writer q against this
    /// call; returns true when the block failed.
    pub(super) fn flag_error(&mut self, i: usize, q: usize, v: u64) -> bool {
        let r = i / self.max_g;
        let e = self.epoch_of(r);
        let want = self.want(r);
        if v == want {
            return false;
        }
        if flag_epoch(v) == e && flag_sig(v) != flag_sig(want) {
            self.fail(i, ERR_CALL_MISMATCH, q);
            return true;
        }
        if tag_is_newer(flag_epoch(v), e) {
            self.fail(i, ERR_SEQ_MISMATCH, q);
            return true;
        }
        false
    }

    /// Reads writer q's header line (both halves). `Ok(true)`: both halves carry this
    /// call's epoch and signature. `Ok(false)`: not there yet. `Err(())`: the block failed
    /// (another signature at epoch e -> CALL_MISMATCH, a newer epoch -> SEQ_MISMATCH).
    pub(super) fn read_hdr(&mut self, i: usize, q: usize) -> Result<bool, ()> {
        let r = i / self.max_g;
        let e = self.epoch_of(r);
        let p = e as usize % 2;
        let mut v = [0u64; 2];
        for (h, x) in v.iter_mut().enumerate() {
            let loc = self.geo.hdr(r, p, q, h);
            *x = self.load(i, loc, MemOrder::Relaxed).0;
        }
        if let Some(&n) = v.iter().find(|&&x| tag_is_newer(flag_epoch(x), e)) {
            if self.flag_error(i, q, n) {
                return Err(());
            }
        }
        if v.iter().all(|&x| flag_epoch(x) == e) {
            if v[0] == self.want(r) && v[1] == v[0] {
                return Ok(true);
            }
            let odd = if v[0] == self.want(r) { v[1] } else { v[0] };
            if self.flag_error(i, q, odd) {
                return Err(());
            }
        }
        Ok(false)
    }

    pub(super) fn abort_seen(&mut self, i: usize) -> bool {
        let r = i / self.max_g;
        let loc = self.geo.abort(r);
        let (a, _) = self.load(i, loc, MemOrder::Relaxed);
        if a != 0 {
            self.fail(i, ERR_PEER_ABORT, abort_rank(a as u32) as usize);
            return true;
        }
        false
    }
}
