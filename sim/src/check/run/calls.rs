//! Launching and ending calls, and keeping the set of blocks that can move up to date.

use super::*;
use crate::model::MemOrder;
use crate::program::{PeerSet, Step};
use crate::types::{abort_word, flag_epoch, flag_word, Algo, BarrierKind, ERR_PEER_ABORT};

impl Run<'_> {
    /// Launches the next call on ranks whose previous kernel has completed.
    pub(super) fn start_calls(&mut self) {
        for r in 0..self.cfg.world {
            let st = &self.ranks[r];
            if st.in_call || st.killed || st.call >= self.cfg.calls {
                continue;
            }
            let k = st.call;
            if let Some(Fault::Kill { rank, call }) = self.cfg.fault {
                if rank == r && k >= call {
                    self.ranks[r].killed = true;
                    self.log(r, None, Ev::Killed);
                    continue;
                }
            }
            let grid = self.grid(k);
            let chunks = self.count(r, k).1;
            let sig = self.sig(r, k);
            // Stream order: the new kernel happens after every block of the previous one.
            for b in 0..grid {
                for b2 in 0..self.max_g {
                    let (t, t2) = (self.tid(r, b), self.tid(r, b2));
                    self.mem.sync_threads(t, t2);
                }
            }
            if self.zc_two_shot() {
                // The user writes this call's input into its own buffer after its previous
                // kernel completed (stream order). Each chunk is stored by the block that
                // handles it in this call, as a relaxed store that lands when the
                // scheduler decides (at the latest when that block releases a flag).
                let t = self.cfg.threads_per_block;
                for c in 0..chunks {
                    let tid = self.tid(r, (c / t) % grid);
                    let loc = self.tensor_loc(r, c);
                    let (v, tg) = (input_value(r, k, c), tag(r, k, WHAT_INPUT));
                    self.mem.store(tid, loc, v, tg, MemOrder::Relaxed);
                }
                self.log(r, None, Ev::Input { chunks });
            }
            let st = &mut self.ranks[r];
            st.in_call = true;
            st.sig = sig;
            st.grid = grid;
            st.done = 0;
            st.out.clear();
            st.out.resize(chunks, None);
            for b in 0..grid {
                let t = self.tid(r, b);
                self.blocks[t] = Block {
                    state: BState::Running,
                    ..Block::IDLE
                };
            }
            let epoch = self.epoch_of(r);
            self.log(r, None, Ev::Launch { grid, epoch });
            self.invalidate_rank(r);
        }
    }

    /// The memory order of a flag access: `strong`, or relaxed under
    /// [`Weakening::RelaxedFlags`].
    pub(super) fn flag_order(&self, strong: MemOrder) -> MemOrder {
        if self.cfg.weaken == Some(Weakening::RelaxedFlags) {
            MemOrder::Relaxed
        } else {
            strong
        }
    }

    /// Ends rank r's call when all its blocks are done.
    pub(super) fn maybe_end_call(&mut self, r: usize) {
        self.invalidate_rank(r);
        let g = self.ranks[r].grid;
        let live = (0..g).any(|b| self.blocks[self.tid(r, b)].state == BState::Running);
        if live {
            return;
        }
        let failed = (0..g).any(|b| self.blocks[self.tid(r, b)].state == BState::Failed);
        for b in 0..self.max_g {
            let t = self.tid(r, b);
            // Kernel completion: its writes are performed.
            self.mem.flush(t);
            self.blocks[t].state = BState::Idle;
        }
        if self.zc_two_shot() && !failed && self.ranks[r].error == 0 {
            self.read_zc_output(r);
        }
        let st = &mut self.ranks[r];
        let outcome = CallOutcome::of(failed, st.error, &st.out);
        let ok = matches!(outcome, CallOutcome::Ok(_));
        st.results.push(outcome);
        let k = st.results.len() - 1;
        self.log(r, None, Ev::Ended { ok });
        self.check_outcome(r, k);
        let st = &mut self.ranks[r];
        st.in_call = false;
        st.call += 1;
    }

    /// Zero-copy two-shot: the user reads rank r's buffer after its kernel completed (a
    /// reader ordered after every block of the kernel); each chunk must be the reduced
    /// value of this call, stored by the owner of its slice.
    pub(super) fn read_zc_output(&mut self, r: usize) {
        let t0 = self.tid(r, 0);
        for b in 1..self.max_g {
            let t = self.tid(r, b);
            self.mem.sync_threads(t0, t);
        }
        let k = self.ranks[r].call;
        let chunks = self.count(r, k).1;
        let s = self.slice_len(r);
        let w = self.cfg.world;
        for c in 0..chunks {
            let owner = (c / s).min(w - 1);
            let want = tag(owner, k, WHAT_REDUCED);
            let loc = self.tensor_loc(r, c);
            let place = format!("own buf chunk {c}");
            let v = self.read_loc(t0, loc, owner, want, "output (after the kernel)", &place);
            if let Some(o) = self.ranks[r].out.get_mut(c) {
                *o = Some(v);
            }
            if self.stop {
                return;
            }
        }
    }

    pub(super) fn cur_step(&self, i: usize) -> Option<Step> {
        self.steps_prog.get(self.blocks.get(i)?.pc).copied()
    }

    /// The barrier a block is in (kind, set); EndBarrier maps to (End, Others).
    pub(super) fn barrier_of(step: Step) -> Option<(BarrierKind, PeerSet)> {
        match step {
            Step::Barrier { kind, set } => Some((kind, set)),
            Step::EndBarrier => Some((BarrierKind::End, PeerSet::Others)),
            _ => None,
        }
    }

    /// Whether running block i now can change anything (when waiting: whether a poll now
    /// would pass or fail rather than keep waiting).
    pub(super) fn productive(&self, i: usize) -> bool {
        let Some(b) = self.blocks.get(i) else {
            return false;
        };
        // `waiting` is only set inside a barrier step that polls.
        if !b.waiting {
            return true;
        }
        self.poll_outcome(i).is_none_or(|(_, _, p)| p)
    }

    /// Marks block i for re-evaluation of [`Run::productive`] before the next step.
    pub(super) fn invalidate(&mut self, i: usize) {
        if let Some(s) = self.stale.get_mut(i) {
            if !*s {
                *s = true;
                self.stale_list.push(i);
            }
        }
    }

    pub(super) fn invalidate_rank(&mut self, r: usize) {
        for b in 0..self.max_g {
            self.invalidate(self.tid(r, b));
        }
    }

    /// A write landed at `loc`: re-evaluate the blocks whose polls read it. Block b of
    /// rank r polls only flags `[.][.][b][.]` of its own pad and its own abort word;
    /// productivity depends on nothing else in memory (data never), and on block state
    /// that changes only when the block acts or its rank starts or ends a call.
    pub(super) fn on_landed(&mut self, loc: usize) {
        let w = self.cfg.world;
        let per = self.rank_locs();
        let (r, off) = (loc / per, loc % per);
        let Some(f) = off.checked_sub(Self::data_locs(self.max_chunks, w)) else {
            return;
        };
        let flags = Self::flag_locs(self.max_g, self.cfg.world);
        if f > flags {
            // The push-form zero-copy tensor: data, polled by nobody.
            return;
        }
        if f == flags {
            self.invalidate_rank(r);
        } else {
            let b = (f / self.cfg.world) % self.max_g;
            self.invalidate(self.tid(r, b));
        }
    }

    /// Brings `enabled` up to date with everything that happened since the last step.
    pub(super) fn refresh_enabled(&mut self) {
        let mut landed = std::mem::take(&mut self.landed_buf);
        self.mem.take_landed(&mut landed);
        for &loc in &landed {
            self.on_landed(loc);
        }
        self.landed_buf = landed;
        let mut stale = std::mem::take(&mut self.stale_list);
        for &i in &stale {
            let e = self
                .blocks
                .get(i)
                .is_some_and(|b| b.state == BState::Running)
                && self.productive(i);
            if let Some(x) = self.enabled.get_mut(i) {
                *x = e;
            }
            if let Some(x) = self.stale.get_mut(i) {
                *x = false;
            }
        }
        stale.clear();
        self.stale_list = stale;
    }

    /// For a waiting block: (polled location, abort location, whether a poll now would
    /// pass or fail rather than keep waiting). None when it is not polling.
    pub(super) fn poll_outcome(&self, i: usize) -> Option<(usize, usize, bool)> {
        let step = self.cur_step(i)?;
        let b = &self.blocks[i];
        let (kind, set) = Self::barrier_of(step)?;
        if !b.waiting || (step == Step::EndBarrier && !self.cfg.zero_copy) {
            return None;
        }
        let r = i / self.max_g;
        let blk = i % self.max_g;
        let q = self.nth_member(r, set, b.cursor)?;
        if self.is_seed() {
            let loc = self.seed_sem_loc(r, kind, blk, q);
            return Some((loc, loc, self.mem.newest(i, loc).0 > 0));
        }
        let loc = self.flag_loc(r, kind, self.parity(r), blk, q);
        let aloc = self.abort_loc(r);
        let v = self.mem.newest(i, loc).0;
        let e = self.epoch_of(r);
        let want = flag_word(e, self.ranks[r].sig);
        let p = v == want
            || flag_epoch(v) == e
            || (flag_epoch(v).wrapping_sub(e) as i32) > 0
            || self.mem.newest(i, aloc).0 != 0;
        Some((loc, aloc, p))
    }

    pub(super) fn seed_sem_loc(&self, r: usize, kind: BarrierKind, b: usize, src: usize) -> usize {
        // signals0 for start (and for both hcm barriers), signals1 for mid.
        let set = if kind == BarrierKind::Mid && self.cfg.algo != Algo::Hcm {
            BarrierKind::Mid
        } else {
            BarrierKind::Start
        };
        self.flag_loc(r, set, 0, b, src)
    }

    pub(super) fn next_step(&mut self, i: usize) {
        let r = i / self.max_g;
        let step = self.cur_step(i);
        if let Some(s) = step {
            let idx = self.blocks[i].pc;
            let quiet =
                matches!(s, Step::Prologue) || (s == Step::EndBarrier && !self.cfg.zero_copy);
            if !quiet {
                self.log(r, Some(i % self.max_g), Ev::StepDone { step: idx });
            }
        }
        let b = &mut self.blocks[i];
        b.pc += 1;
        b.cursor = 0;
        b.waiting = false;
        if b.pc >= self.steps_prog.len() {
            b.state = BState::Finished;
            self.maybe_end_call(r);
        }
    }

    pub(super) fn fail(&mut self, i: usize, code: u32, peer: usize) {
        self.invalidate(i);
        let r = i / self.max_g;
        self.log(r, Some(i % self.max_g), Ev::Error { code, peer });
        if self.ranks[r].error == 0 {
            self.ranks[r].error = code;
        }
        if code != ERR_PEER_ABORT {
            let word = u64::from(abort_word(r as u32, code));
            for q in 0..self.cfg.world {
                let loc = self.abort_loc(q);
                self.mem
                    .rmw(i, loc, |v| if v == 0 { Some((word, 0)) } else { None });
            }
        }
        self.blocks[i].state = BState::Failed;
        self.maybe_end_call(r);
    }
}
