//! Executing one action of a block: data loads with their tag checks, every protocol
//! step, and barriers.

use super::*;
use crate::model::MemOrder;
use crate::program::Step;
use crate::types::{
    flag_epoch, flag_sig, flag_word, BarrierKind, ERR_CALL_MISMATCH, ERR_PEER_ABORT,
    ERR_SEQ_MISMATCH,
};

impl Run<'_> {
    pub(super) fn pick_load(&mut self, i: usize, loc: usize, order: MemOrder) -> (u64, u64) {
        let (chooser, trail) = (&mut self.chooser, &mut self.trail);
        self.mem.load_with(i, loc, order, |n| {
            let pick = chooser.value(n);
            if n > 1 {
                trail.push(Decision::Value(pick));
            }
            pick
        })
    }

    /// Loads data word (rank q, region, chunk c) for block i and checks its tag.
    pub(super) fn read_data(
        &mut self,
        i: usize,
        q: usize,
        partial: bool,
        c: usize,
        want: u64,
        what: &str,
    ) -> u64 {
        let r = i / self.max_g;
        let loc = self.data_loc(q, self.data_parity(r), partial, c);
        let place = format!("r{q}.{} chunk {c}", if partial { "partial" } else { "buf" });
        self.read_loc(i, loc, q, want, what, &place)
    }

    /// Loads data word `loc` for block i and checks its tag against `want` (written by
    /// rank `from`); `place` names the word in a report.
    pub(super) fn read_loc(
        &mut self,
        i: usize,
        loc: usize,
        from: usize,
        want: u64,
        what: &str,
        place: &str,
    ) -> u64 {
        let r = i / self.max_g;
        let q = from;
        let order = if self.is_seed() {
            MemOrder::NonCoherent
        } else {
            MemOrder::Relaxed
        };
        let (val, t) = self.pick_load(i, loc, order);
        if t != want {
            let k = self.ranks[r].call;
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
            self.log(r, Some(i % self.max_g), Ev::BadRead { text: text.clone() });
            let b = i % self.max_g;
            self.violation(
                ViolationKind::StaleRead,
                format!("r{r} b{b} call {k}: {text}"),
                Some((r, q)),
            );
        }
        val
    }

    pub(super) fn expected_tag(&self, q: usize, r: usize, what: u64) -> u64 {
        tag(q, self.ranks[r].call, what)
    }

    /// Executes one action of block i.
    pub(super) fn step_block(&mut self, i: usize) {
        self.invalidate(i);
        let Some(step) = self.cur_step(i) else {
            return;
        };
        let r = i / self.max_g;
        let b = i % self.max_g;
        let k = self.ranks[r].call;
        let w = self.cfg.world;
        let dp = self.data_parity(r);
        match step {
            Step::Prologue => {
                if !self.is_seed() {
                    let loc = self.abort_loc(r);
                    let (a, _) = self.pick_load(i, loc, MemOrder::Relaxed);
                    if a != 0 || self.ranks[r].error != 0 {
                        let code = if self.ranks[r].error != 0 {
                            self.ranks[r].error
                        } else {
                            ERR_PEER_ABORT
                        };
                        self.fail(i, code, crate::types::abort_rank(a as u32) as usize);
                        return;
                    }
                }
                self.next_step(i);
            }
            Step::CopyIn => {
                if let Some(c) = self.nth_chunk(r, b, self.blocks[i].cursor) {
                    let loc = self.data_loc(r, dp, false, c);
                    self.mem.store(
                        i,
                        loc,
                        input_value(r, k, c),
                        tag(r, k, WHAT_INPUT),
                        MemOrder::Relaxed,
                    );
                    self.blocks[i].cursor += 1;
                } else {
                    self.next_step(i);
                }
            }
            Step::Scatter => {
                // For my chunks c of every slice q != r: peer q's R[r][c - q*S] = input[c]
                // (push-form zero-copy: input[c] read from my own tensor, where an owner's
                // early ReduceStore would show as a reduced value).
                let s = self.slice_len(r);
                let Some(c) = self.next_chunk_where(i, |c| c / s != r) else {
                    self.next_step(i);
                    return;
                };
                let q = (c / s).min(w - 1);
                let v = if self.zcp() {
                    let loc = self.tensor_loc(r, c);
                    let want = self.expected_tag(r, r, WHAT_INPUT);
                    let place = format!("own tensor chunk {c}");
                    self.read_loc(i, loc, r, want, "Scatter", &place)
                } else {
                    input_value(r, k, c)
                };
                let loc = self.half_loc(q, dp, r * s + c - q * s);
                self.mem
                    .store(i, loc, v, tag(r, k, WHAT_INPUT), MemOrder::Relaxed);
            }
            Step::Barrier {
                kind: BarrierKind::Mid,
                ..
            } if self.cfg.weaken == Some(Weakening::NoMidBarrier) => self.next_step(i),
            Step::Barrier {
                kind: BarrierKind::Start,
                ..
            } if self.cfg.weaken == Some(Weakening::NoStartBarrier) => self.next_step(i),
            Step::EndBarrier if self.cfg.weaken == Some(Weakening::NoEndBarrier) => {
                self.next_step(i)
            }
            Step::Barrier { .. } | Step::EndBarrier => self.step_barrier(i, step),
            Step::ReduceStore => {
                // For my chunks c of my slice: v = fold over q of buf[q][c] (rank order;
                // push form: my own R[q][c - r*S] for q != r, my own tensor for q == r),
                // then buf[q][c] = v for every rank q (my own included).
                let s = self.slice_len(r);
                let Some(c) = self.next_chunk_where(i, |c| (c / s).min(w - 1) == r) else {
                    self.next_step(i);
                    return;
                };
                let zcp = self.zcp();
                let mut acc = None;
                for q in 0..w {
                    let (loc, place) = if zcp && q != r {
                        let j = c - r * s;
                        let p = format!("own R[{q}][{j}] (chunk {c})");
                        (self.half_loc(r, dp, q * s + j), p)
                    } else {
                        (self.tensor_loc(q, c), format!("r{q}.buf chunk {c}"))
                    };
                    let want = self.expected_tag(q, r, WHAT_INPUT);
                    let x = self.read_loc(i, loc, q, want, "ReduceStore", &place);
                    acc = Some(acc.map_or(x, |a| mix(a, x)));
                }
                let v = acc.unwrap_or(0);
                for q in 0..w {
                    let loc = self.tensor_loc(q, c);
                    self.mem
                        .store(i, loc, v, tag(r, k, WHAT_REDUCED), MemOrder::Relaxed);
                }
            }
            Step::ReduceAll => {
                let Some(c) = self.nth_chunk(r, b, self.blocks[i].cursor) else {
                    self.next_step(i);
                    return;
                };
                let v = self.fold_peers(i, c, "ReduceAll");
                if let Some(o) = self.ranks[r].out.get_mut(c) {
                    *o = Some(v);
                }
                self.blocks[i].cursor += 1;
            }
            Step::ReduceSlice if !self.is_seed() => {
                // v = fold over s of (s == r ? input[c] : own R[s][c - r*S]); out[c] = v;
                // every peer q's G[c] = v.
                let s = self.slice_len(r);
                let Some(c) = self.next_chunk_where(i, |c| c / s == r) else {
                    self.next_step(i);
                    return;
                };
                let j = c - r * s;
                let mut acc = None;
                for src in 0..w {
                    let x = if src == r {
                        input_value(r, k, c)
                    } else {
                        let loc = self.half_loc(r, dp, src * s + j);
                        let want = self.expected_tag(src, r, WHAT_INPUT);
                        let place = format!("own R[{src}][{j}] (chunk {c})");
                        self.read_loc(i, loc, src, want, "ReduceSlice", &place)
                    };
                    acc = Some(acc.map_or(x, |a| mix(a, x)));
                }
                let v = acc.unwrap_or(0);
                for q in (0..w).filter(|&q| q != r) {
                    let loc = self.half_loc(q, dp, w * s + c);
                    self.mem
                        .store(i, loc, v, tag(r, k, WHAT_REDUCED), MemOrder::Relaxed);
                }
                if let Some(o) = self.ranks[r].out.get_mut(c) {
                    *o = Some(v);
                }
            }
            Step::Gather if !self.is_seed() => {
                // out[c] = own G[c] for my chunks c of every slice q != r.
                let s = self.slice_len(r);
                let Some(c) = self.next_chunk_where(i, |c| c / s != r) else {
                    self.next_step(i);
                    return;
                };
                let q = (c / s).min(w - 1);
                let want = self.expected_tag(q, r, WHAT_REDUCED);
                let loc = self.half_loc(r, dp, w * s + c);
                let place = format!("own G[{c}]");
                let v = self.read_loc(i, loc, q, want, "Gather", &place);
                if let Some(o) = self.ranks[r].out.get_mut(c) {
                    *o = Some(v);
                }
            }
            Step::ReduceSlice => {
                let s = self.slice_len(r);
                let Some(c) = self.next_chunk_where(i, |c| c / s == r) else {
                    self.next_step(i);
                    return;
                };
                let v = self.fold_peers(i, c, "ReduceSlice");
                let loc = self.data_loc(r, dp, false, c);
                self.mem
                    .store(i, loc, v, tag(r, k, WHAT_REDUCED), MemOrder::Relaxed);
                if let Some(o) = self.ranks[r].out.get_mut(c) {
                    *o = Some(v);
                }
            }
            Step::Gather => {
                let s = self.slice_len(r);
                let Some(c) = self.next_chunk_where(i, |c| c / s != r) else {
                    self.next_step(i);
                    return;
                };
                let q = (c / s).min(w - 1);
                let want = self.expected_tag(q, r, WHAT_REDUCED);
                let v = self.read_data(i, q, false, c, want, "Gather");
                if let Some(o) = self.ranks[r].out.get_mut(c) {
                    *o = Some(v);
                }
            }
            Step::QuadReduce => {
                let Some(c) = self.nth_chunk(r, b, self.blocks[i].cursor) else {
                    self.next_step(i);
                    return;
                };
                let row = self.hcm.get(r).copied().unwrap_or([0; 4]);
                let mut quad = [r, row[0], row[1], row[2]];
                if !self.is_seed() {
                    quad.sort_unstable();
                }
                let mut acc = None;
                for q in quad {
                    let want = self.expected_tag(q, r, WHAT_INPUT);
                    let x = self.read_data(i, q, false, c, want, "QuadReduce");
                    acc = Some(acc.map_or(x, |a| mix(a, x)));
                }
                let v = acc.unwrap_or(0);
                let loc = self.data_loc(r, dp, true, c);
                self.mem
                    .store(i, loc, v, tag(r, k, WHAT_PARTIAL), MemOrder::Relaxed);
                self.blocks[i].cursor += 1;
            }
            Step::RelayReduce => {
                let Some(c) = self.nth_chunk(r, b, self.blocks[i].cursor) else {
                    self.next_step(i);
                    return;
                };
                let (first, second) = self.relay_order(r);
                let wa = self.expected_tag(first, r, WHAT_PARTIAL);
                let a = self.read_data(i, first, true, c, wa, "RelayReduce");
                let wb = self.expected_tag(second, r, WHAT_PARTIAL);
                let bb = self.read_data(i, second, true, c, wb, "RelayReduce");
                if let Some(o) = self.ranks[r].out.get_mut(c) {
                    *o = Some(mix(a, bb));
                }
                self.blocks[i].cursor += 1;
            }
            // push-one-shot is checked by crate::push (check() dispatches to it).
            Step::PushData | Step::PollReduce | Step::HdrCheck => self.next_step(i),
            Step::Epilogue => {
                let seed = self.is_seed();
                let st = &mut self.ranks[r];
                st.done += 1;
                if st.done == st.grid && !seed {
                    st.done = 0;
                    st.epoch = st.epoch.wrapping_add(1);
                }
                self.next_step(i);
            }
        }
    }

    /// Folds input chunk c of every rank (rank order 0..W; the seed's rotated order r,
    /// r+1, ...) as read by block i, checking each read's tag.
    pub(super) fn fold_peers(&mut self, i: usize, c: usize, what: &str) -> u64 {
        let r = i / self.max_g;
        let w = self.cfg.world;
        let seed = self.is_seed();
        let mut acc = None;
        for j in 0..w {
            let q = if seed { (r + j) % w } else { j };
            let want = self.expected_tag(q, r, WHAT_INPUT);
            let x = self.read_data(i, q, false, c, want, what);
            acc = Some(acc.map_or(x, |a| mix(a, x)));
        }
        acc.unwrap_or(0)
    }

    /// The next chunk of block i (grid-stride order, from its cursor) that satisfies
    /// `keep`; advances the cursor past it. None when the block has no more.
    pub(super) fn next_chunk_where(
        &mut self,
        i: usize,
        keep: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let r = i / self.max_g;
        let b = i % self.max_g;
        loop {
            let c = self.nth_chunk(r, b, self.blocks[i].cursor)?;
            self.blocks[i].cursor += 1;
            if keep(c) {
                return Some(c);
            }
        }
    }

    /// (first, second) rank whose partial is folded in RelayReduce.
    pub(super) fn relay_order(&self, r: usize) -> (usize, usize) {
        let row = self.hcm.get(r).copied().unwrap_or([0; 4]);
        let relay = row[3];
        if self.is_seed() {
            return (r, relay);
        }
        let relay_row = self.hcm.get(relay).copied().unwrap_or([0; 4]);
        let min_mine = [r, row[0], row[1], row[2]].into_iter().min().unwrap_or(r);
        let min_theirs = [relay, relay_row[0], relay_row[1], relay_row[2]]
            .into_iter()
            .min()
            .unwrap_or(relay);
        if min_mine < min_theirs {
            (r, relay)
        } else {
            (relay, r)
        }
    }

    pub(super) fn step_barrier(&mut self, i: usize, step: Step) {
        if step == Step::EndBarrier && !self.cfg.zero_copy {
            self.next_step(i);
            return;
        }
        let Some((kind, set)) = Self::barrier_of(step) else {
            self.next_step(i);
            return;
        };
        let r = i / self.max_g;
        let b = i % self.max_g;
        let cursor = self.blocks[i].cursor;
        if !self.blocks[i].waiting {
            // Signal phase: one peer per action.
            let Some(q) = self.nth_member(r, set, cursor) else {
                self.blocks[i].waiting = true;
                self.blocks[i].cursor = 0;
                return;
            };
            if self.is_seed() {
                let loc = self.seed_sem_loc(q, kind, b, r);
                self.mem.rmw(i, loc, |v| Some((v + 1, 0)));
                self.log(r, Some(b), Ev::Signal { peer: q, val: 1 });
            } else {
                let e = self.epoch_of(r);
                let val = flag_word(e, self.ranks[r].sig);
                let loc = self.flag_loc(q, kind, self.parity(r), b, r);
                let order = self.flag_order(MemOrder::Release);
                self.mem.store(i, loc, val, 0, order);
                self.log(r, Some(b), Ev::Signal { peer: q, val });
            }
            self.blocks[i].cursor += 1;
            return;
        }
        let Some(q) = self.nth_member(r, set, cursor) else {
            self.next_step(i);
            return;
        };
        if self.is_seed() {
            let loc = self.seed_sem_loc(r, kind, b, q);
            let old = self
                .mem
                .rmw(i, loc, |v| if v > 0 { Some((v - 1, 0)) } else { None });
            if old > 0 {
                self.log(r, Some(b), Ev::Passed { peer: q, val: old });
                self.blocks[i].cursor += 1;
            }
            return;
        }
        let e = self.epoch_of(r);
        let want = flag_word(e, self.ranks[r].sig);
        let loc = self.flag_loc(r, kind, self.parity(r), b, q);
        let order = self.flag_order(MemOrder::Acquire);
        let (v, _) = self.pick_load(i, loc, order);
        if v == want {
            self.log(r, Some(b), Ev::Passed { peer: q, val: v });
            self.blocks[i].cursor += 1;
            return;
        }
        if flag_epoch(v) == e && flag_sig(v) != flag_sig(want) {
            self.fail(i, ERR_CALL_MISMATCH, q);
            return;
        }
        if (flag_epoch(v).wrapping_sub(e) as i32) > 0 {
            self.fail(i, ERR_SEQ_MISMATCH, q);
            return;
        }
        let aloc = self.abort_loc(r);
        let (a, _) = self.pick_load(i, aloc, MemOrder::Relaxed);
        if a != 0 {
            self.fail(
                i,
                ERR_PEER_ABORT,
                crate::types::abort_rank(a as u32) as usize,
            );
        }
    }
}
