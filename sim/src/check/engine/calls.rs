//! Launching and ending calls, stepping and failing blocks, the enabled set, stuck runs,
//! and the helpers every family's steps share (prologue, epilogue, flag and abort checks,
//! loads with recorded value choices and tag checks).

use super::*;
use crate::check::oracle::describe_tag;
use crate::model::MemOrder;
use crate::push::tag_is_newer;
use crate::types::{
    abort_rank, abort_word, flag_epoch, flag_sig, flag_word, ERR_CALL_MISMATCH, ERR_PEER_ABORT,
    ERR_SEQ_MISMATCH, ERR_TIMEOUT,
};

impl<F: Family> Run<F> {
    /// Launches the next call on ranks whose previous kernel has completed.
    pub(crate) fn start_calls(&mut self) {
        for r in 0..self.set.world {
            let st = &self.ranks[r];
            if st.in_call || st.killed || st.call >= self.set.calls {
                continue;
            }
            let k = st.call;
            if self
                .set
                .kill
                .is_some_and(|(rank, call)| rank == r && k >= call)
            {
                self.ranks[r].killed = true;
                self.log(r, None, Ev::Killed);
                continue;
            }
            let grid = self.grid(k);
            let chunks = self.fam.chunks(r, k);
            let sig = self.fam.sig(r, k);
            // Stream order: the new kernel happens after every block of the previous one.
            for b in 0..grid {
                for b2 in 0..self.max_g {
                    let (t, t2) = (self.tid(r, b), self.tid(r, b2));
                    self.mem.sync_threads(t, t2);
                }
            }
            F::launch(self, r, k, grid);
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

    /// Ends rank r's call when all its blocks are done.
    pub(crate) fn maybe_end_call(&mut self, r: usize) {
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
        if !failed && self.ranks[r].error == 0 {
            F::kernel_done(self, r);
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

    /// Block i finished its step: on to the next one (its kernel ends after the last).
    pub(crate) fn next_step(&mut self, i: usize) {
        let r = i / self.max_g;
        if let Some(s) = self.cur_step(i) {
            if self.fam.traced(s) {
                let step = self.blocks[i].pc;
                self.log(r, Some(i % self.max_g), Ev::StepDone { step });
            }
        }
        let k = self.ranks[r].call;
        let b = &mut self.blocks[i];
        b.pc += 1;
        b.cursor = 0;
        b.waiting = false;
        if b.pc >= self.fam.program(k).len() {
            b.state = BState::Finished;
            self.maybe_end_call(r);
        }
    }

    /// Block i fails with `code` (waiting on `peer`): the rank records it, every rank's
    /// abort word is raised (unless the block only saw a peer's abort), its call may end.
    pub(crate) fn fail(&mut self, i: usize, code: u32, peer: usize) {
        self.invalidate(i);
        let r = i / self.max_g;
        self.log(r, Some(i % self.max_g), Ev::Error { code, peer });
        if self.ranks[r].error == 0 {
            self.ranks[r].error = code;
        }
        if code != ERR_PEER_ABORT {
            let word = u64::from(abort_word(r as u32, code));
            for q in 0..self.set.world {
                let loc = self.fam.abort_loc(q);
                self.mem
                    .rmw(i, loc, |v| if v == 0 { Some((word, 0)) } else { None });
            }
        }
        self.blocks[i].state = BState::Failed;
        self.maybe_end_call(r);
    }

    /// Marks block i for re-evaluation of [`Family::productive`] before the next step.
    pub(crate) fn invalidate(&mut self, i: usize) {
        if let Some(s) = self.stale.get_mut(i) {
            if !*s {
                *s = true;
                self.stale_list.push(i);
            }
        }
    }

    pub(crate) fn invalidate_rank(&mut self, r: usize) {
        for b in 0..self.max_g {
            self.invalidate(self.tid(r, b));
        }
    }

    /// Brings `enabled` up to date with everything that happened since the last step:
    /// a block's answer changes only when it acts, its rank starts or ends a call, or a
    /// write lands where [`Family::watchers`] says it looks.
    pub(crate) fn refresh_enabled(&mut self) {
        let mut landed = std::mem::take(&mut self.landed_buf);
        self.mem.take_landed(&mut landed);
        for &loc in &landed {
            match self.fam.watchers(loc) {
                Watch::Nobody => {}
                Watch::Block(i) => self.invalidate(i),
                Watch::Rank(r) => self.invalidate_rank(r),
            }
        }
        self.landed_buf = landed;
        let mut stale = std::mem::take(&mut self.stale_list);
        for &i in &stale {
            let e = self
                .blocks
                .get(i)
                .is_some_and(|b| b.state == BState::Running)
                && F::productive(self, i);
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

    /// Nothing can run and no store can land: a deadlock, or (bounded waits under a
    /// fault) time passes and the scheduler picks who times out first.
    pub(crate) fn stuck(&mut self) {
        let waiting: Vec<usize> = (0..self.blocks.len())
            .filter(|&i| self.blocks[i].state == BState::Running)
            .collect();
        let g = self.max_g;
        if waiting.is_empty() {
            // Ranks whose blocks are all done end their call in maybe_end_call; nothing
            // else can be pending. Avoid spinning forever.
            self.stop = true;
            return;
        }
        if self.set.seed || !self.set.faulty {
            let desc: Vec<String> = waiting
                .iter()
                .take(8)
                .map(|&i| {
                    let (r, k) = (i / g, self.ranks[i / g].call);
                    let step = self.fam.step_name(k, self.blocks[i].pc);
                    let q = F::waits_on(self, i);
                    format!("r{r} b{} {step} waits on r{q}", i % g)
                })
                .collect();
            let m = format!("all live blocks wait: {}", desc.join("; "));
            self.violation(ViolationKind::Deadlock, m, None);
            self.stop = true;
            return;
        }
        let i = if let Chooser::Replay { script, pos } = &mut self.chooser {
            replay_pick(script, pos, |d| match d {
                Decision::Timeout { rank, block } => waiting
                    .iter()
                    .copied()
                    .find(|&i| block < g && i == rank * g + block),
                _ => None,
            })
            .or(waiting.first().copied())
        } else {
            let menu = Menu {
                blocks: &waiting,
                groups: &[],
            };
            match self.chooser.choose(&menu, g, &mut self.events_buf) {
                Pick::Block(i) => Some(i),
                Pick::Land(..) => None,
            }
        };
        let i = i.unwrap_or(0);
        self.trail.push(Decision::Timeout {
            rank: i / g,
            block: i % g,
        });
        let q = F::waits_on(self, i);
        self.fail(i, ERR_TIMEOUT, q);
    }

    /// Prologue: exit at once if the abort word is set or the rank is poisoned (the seed
    /// has no abort word).
    pub(crate) fn prologue(&mut self, i: usize) {
        let r = i / self.max_g;
        if !self.set.seed {
            let loc = self.fam.abort_loc(r);
            let (a, _) = self.pick_load(i, loc, MemOrder::Relaxed);
            let error = self.ranks[r].error;
            if a != 0 || error != 0 {
                let code = if error != 0 { error } else { ERR_PEER_ABORT };
                self.fail(i, code, abort_rank(a as u32) as usize);
                return;
            }
        }
        self.next_step(i);
    }

    /// Epilogue: the last block of the call advances the epoch (the seed has none).
    pub(crate) fn epilogue(&mut self, i: usize) {
        let seed = self.set.seed;
        let st = &mut self.ranks[i / self.max_g];
        st.done += 1;
        if st.done == st.grid && !seed {
            st.done = 0;
            st.epoch = crate::types::next_epoch(st.epoch);
        }
        self.next_step(i);
    }

    /// Loads `loc` for block i; the chooser picks among the allowed values (recorded).
    pub(crate) fn pick_load(&mut self, i: usize, loc: usize, order: MemOrder) -> (u64, u64) {
        let (chooser, trail) = (&mut self.chooser, &mut self.trail);
        self.mem.load_with(i, loc, order, |n| {
            let pick = chooser.value(n);
            if n > 1 {
                trail.push(Decision::Value(pick));
            }
            pick
        })
    }

    /// Loads data word `loc` for block i (`.nc` in the seed, relaxed otherwise) and
    /// checks its tag against `want` (written by rank `from`); `place` names the word.
    pub(crate) fn read_loc(
        &mut self,
        i: usize,
        loc: usize,
        from: usize,
        want: u64,
        what: &str,
        place: &str,
    ) -> u64 {
        let order = if self.set.seed {
            MemOrder::NonCoherent
        } else {
            MemOrder::Relaxed
        };
        let (val, t) = self.pick_load(i, loc, order);
        if t != want {
            let k = self.ranks[i / self.max_g].call;
            let how = if t != 0 && ((t >> 8) & 0xffff_ffff).wrapping_sub(1) > k as u64 {
                "overwritten by a later call"
            } else {
                "stale: the current call's data is not (yet) visible"
            };
            let text = format!(
                "{what} read {place}: found {}, expected {} ({how})",
                describe_tag(t),
                describe_tag(want)
            );
            self.bad_read(i, from, text);
        }
        val
    }

    /// Block i read data of rank `from` that is not the current call's: a stale read.
    pub(crate) fn bad_read(&mut self, i: usize, from: usize, text: String) {
        let (r, b) = (i / self.max_g, i % self.max_g);
        let k = self.ranks[r].call;
        self.log(r, Some(b), Ev::BadRead { text: text.clone() });
        let m = format!("r{r} b{b} call {k}: {text}");
        self.violation(ViolationKind::StaleRead, m, Some((r, from)));
    }

    /// The flag word of rank r's current call: `(epoch << 32) | call_sig`.
    pub(crate) fn want(&self, r: usize) -> u64 {
        flag_word(self.epoch_of(r), self.ranks.get(r).map_or(0, |s| s.sig))
    }

    /// Whether flag-like value `v` lets a waiter of rank r move: this call's epoch (the
    /// awaited value, or another signature) or a newer one.
    pub(crate) fn flag_moves(&self, r: usize, v: u64) -> bool {
        let e = self.epoch_of(r);
        // (0, a fresh or cleared slot, moves nothing: e is never 0 and a 0 tag never newer)
        flag_epoch(v) == e || tag_is_newer(flag_epoch(v), e)
    }

    /// Checks flag-like value `v` read from peer q against this call: epoch e with another
    /// signature fails with CALL_MISMATCH, a newer epoch with SEQ_MISMATCH. True when
    /// block i failed.
    pub(crate) fn flag_error(&mut self, i: usize, q: usize, v: u64) -> bool {
        let r = i / self.max_g;
        let (e, want) = (self.epoch_of(r), self.want(r));
        if v == want {
            return false;
        }
        let code = if flag_epoch(v) == e && flag_sig(v) != flag_sig(want) {
            ERR_CALL_MISMATCH
        } else if tag_is_newer(flag_epoch(v), e) {
            ERR_SEQ_MISMATCH
        } else {
            return false;
        };
        self.fail(i, code, q);
        true
    }

    /// Reads block i's own abort word; a set one fails it with PEER_ABORT (true).
    pub(crate) fn abort_seen(&mut self, i: usize) -> bool {
        let loc = self.fam.abort_loc(i / self.max_g);
        let (a, _) = self.pick_load(i, loc, MemOrder::Relaxed);
        if a != 0 {
            self.fail(i, ERR_PEER_ABORT, abort_rank(a as u32) as usize);
        }
        a != 0
    }
}
