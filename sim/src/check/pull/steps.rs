//! Executing one action of a pull-family block: every step (the deferred gather's in
//! `deferred`), barriers (flags or the seed's semaphores) and the zero-copy user's writes
//! and reads of its own tensor.

use super::{g_off, Pull, PullNote, PullStep};
use crate::check::engine::Family;
use crate::check::engine::{Ev, Run};
use crate::check::oracle::{input_value, mix, tag, WHAT_INPUT, WHAT_PARTIAL, WHAT_REDUCED};
use crate::check::Weakening;
use crate::model::MemOrder;
use crate::program::Protocol;
use crate::types::BarrierKind;
use inc_proto::areas::area_index;

impl Run<Pull<'_>> {
    fn is_seed(&self) -> bool {
        self.fam.cfg.protocol == Protocol::Seed
    }
    /// The parity half data goes to: none in the seed, the pull-form zero-copy variants
    /// and without rotation.
    pub(super) fn data_parity(&self, r: usize) -> usize {
        let c = self.fam.cfg;
        if self.is_seed()
            || (c.zero_copy && !self.fam.zcp())
            || c.weaken == Some(Weakening::NoRotation)
        {
            0
        } else {
            self.parity(r)
        }
    }
    /// Chunks per slice of rank r's current call (two-shot).
    pub(super) fn slice_len(&self, r: usize) -> usize {
        let k = self.ranks.get(r).map_or(0, |s| s.call);
        self.fam.count(r, k).1.div_ceil(self.set.world).max(1)
    }
    fn expected_tag(&self, q: usize, r: usize, what: u64) -> u64 {
        tag(q, self.ranks[r].call, what)
    }
    pub(super) fn set_out(&mut self, r: usize, c: usize, v: u64) {
        if let Some(o) = self.ranks[r].out.get_mut(c) {
            *o = Some(v);
        }
    }
    /// The memory order of a flag access: `strong`, or relaxed under
    /// [`Weakening::RelaxedFlags`].
    fn flag_order(&self, strong: MemOrder) -> MemOrder {
        if self.fam.cfg.weaken == Some(Weakening::RelaxedFlags) {
            MemOrder::Relaxed
        } else {
            strong
        }
    }

    /// Zero-copy two-shot: the user writes this call's input into its own buffer after
    /// its previous kernel completed (stream order). Each chunk is stored by the block
    /// that handles it in this call, as a relaxed store that lands when the scheduler
    /// decides (at the latest when that block releases a flag).
    pub(super) fn write_zc_input(&mut self, r: usize, k: usize, grid: usize) {
        let chunks = self.fam.count(r, k).1;
        let t = self.set.threads_per_block;
        for c in 0..chunks {
            let tid = self.tid(r, (c / t) % grid);
            let loc = self.fam.tensor_loc(r, c);
            let (v, tg) = (input_value(r, k, c), tag(r, k, WHAT_INPUT));
            self.mem.store(tid, loc, v, tg, MemOrder::Relaxed);
        }
        self.log(r, None, Ev::Note(PullNote::Input { chunks }));
    }

    /// Zero-copy two-shot: the user reads rank r's buffer after its kernel completed (a
    /// reader ordered after every block of the kernel); each chunk must be the reduced
    /// value of this call, stored by the owner of its slice.
    pub(super) fn read_zc_output(&mut self, r: usize) {
        let t0 = self.after_kernel(r);
        let k = self.ranks[r].call;
        let chunks = self.fam.count(r, k).1;
        let s = self.slice_len(r);
        let w = self.set.world;
        for c in 0..chunks {
            let owner = (c / s).min(w - 1);
            let want = tag(owner, k, WHAT_REDUCED);
            let loc = self.fam.tensor_loc(r, c);
            let place = format!("own buf chunk {c}");
            let v = self.read_loc(t0, loc, owner, want, "output (after the kernel)", &place);
            self.set_out(r, c, v);
            if self.stop {
                return;
            }
        }
    }

    /// A reader of rank r ordered after every block of its kernel (the user after the
    /// kernel completed): block 0's thread, synced with every other block's.
    pub(super) fn after_kernel(&mut self, r: usize) -> usize {
        let t0 = self.tid(r, 0);
        for b in 1..self.max_g {
            let t = self.tid(r, b);
            self.mem.sync_threads(t0, t);
        }
        t0
    }

    /// Loads data word (rank q, region, chunk c) for block i and checks its tag.
    fn read_data(&mut self, i: usize, q: usize, partial: bool, c: usize, want: u64) -> u64 {
        let what = self
            .fam
            .src
            .get(self.blocks[i].pc)
            .map_or("?", |s| s.name());
        let r = i / self.max_g;
        let loc = self.fam.data_loc(q, self.data_parity(r), partial, c);
        let place = format!("r{q}.{} chunk {c}", if partial { "partial" } else { "buf" });
        self.read_loc(i, loc, q, want, what, &place)
    }

    /// Executes one action of block i at `step`.
    pub(super) fn pull_step(&mut self, i: usize, step: PullStep) {
        let r = i / self.max_g;
        let b = i % self.max_g;
        let k = self.ranks[r].call;
        let w = self.set.world;
        let dp = self.data_parity(r);
        let weaken = self.fam.cfg.weaken;
        match step {
            PullStep::Prologue => self.prologue(i),
            PullStep::CopyIn => {
                if let Some(c) = self.nth_chunk(r, b, self.blocks[i].cursor) {
                    let loc = self.fam.data_loc(r, dp, false, c);
                    let (v, t) = (input_value(r, k, c), tag(r, k, WHAT_INPUT));
                    self.mem.store(i, loc, v, t, MemOrder::Relaxed);
                    self.blocks[i].cursor += 1;
                } else {
                    self.next_step(i);
                }
            }
            PullStep::PushIn => {
                // One-shot push form: for my chunk c (this action's), every peer q's
                // R[r][c] (chunk offset r*C + c of q's half of this call) = input[c].
                let Some(c) = self.nth_chunk(r, b, self.blocks[i].cursor) else {
                    return self.next_step(i);
                };
                let chunks = self.fam.count(r, k).1;
                let (v, t) = (input_value(r, k, c), tag(r, k, WHAT_INPUT));
                for q in (0..w).filter(|&q| q != r) {
                    let loc = self.fam.half_loc(q, dp, area_index(r, q) * chunks + c);
                    self.mem.store(i, loc, v, t, MemOrder::Relaxed);
                }
                self.blocks[i].cursor += 1;
            }
            PullStep::Scatter => {
                // For my chunks c of every slice q != r: peer q's R[r][c - q*S] = input[c]
                // (push-form zero-copy: input[c] read from my own tensor, where an owner's
                // early ReduceStore would show as a reduced value).
                let s = self.slice_len(r);
                let Some(c) = self.next_chunk_where(i, |c| c / s != r) else {
                    return self.next_step(i);
                };
                let q = (c / s).min(w - 1);
                let v = if self.fam.zcp() {
                    let loc = self.fam.tensor_loc(r, c);
                    let want = self.expected_tag(r, r, WHAT_INPUT);
                    let place = format!("own tensor chunk {c}");
                    self.read_loc(i, loc, r, want, "Scatter", &place)
                } else {
                    input_value(r, k, c)
                };
                let loc = self.fam.half_loc(q, dp, area_index(r, q) * s + c - q * s);
                self.mem
                    .store(i, loc, v, tag(r, k, WHAT_INPUT), MemOrder::Relaxed);
            }
            PullStep::Barrier {
                kind: BarrierKind::Mid,
                ..
            } if weaken == Some(Weakening::NoMidBarrier) => self.next_step(i),
            PullStep::Barrier {
                kind: BarrierKind::Start,
                ..
            } if weaken == Some(Weakening::NoStartBarrier) => self.next_step(i),
            PullStep::EndBarrier if weaken == Some(Weakening::NoEndBarrier) => self.next_step(i),
            PullStep::EndBarrier if !self.fam.cfg.zero_copy => self.next_step(i),
            PullStep::Barrier { kind, set } => self.step_barrier(i, kind, set),
            PullStep::EndBarrier => {
                self.step_barrier(i, BarrierKind::End, crate::program::PeerSet::Others)
            }
            PullStep::ReduceStore => {
                // For my chunks c of my slice: v = fold over q of buf[q][c] (rank order;
                // push form: my own R[q][c - r*S] for q != r, my own tensor for q == r),
                // then buf[q][c] = v for every rank q (my own included; push form: mine
                // and rank r + 1's, the others in Forward).
                let s = self.slice_len(r);
                let Some(c) = self.next_chunk_where(i, |c| (c / s).min(w - 1) == r) else {
                    return self.next_step(i);
                };
                let zcp = self.fam.zcp();
                let mut acc = None;
                for q in 0..w {
                    let (loc, place) = if zcp && q != r {
                        let j = c - r * s;
                        let p = format!("own R[{q}][{j}] (chunk {c})");
                        (self.fam.half_loc(r, dp, area_index(q, r) * s + j), p)
                    } else {
                        (self.fam.tensor_loc(q, c), format!("r{q}.buf chunk {c}"))
                    };
                    let want = self.expected_tag(q, r, WHAT_INPUT);
                    let x = self.read_loc(i, loc, q, want, "ReduceStore", &place);
                    acc = Some(acc.map_or(x, |a| mix(a, x)));
                }
                let v = acc.unwrap_or(0);
                let stores = if zcp { w.min(2) } else { w };
                for d in 0..stores {
                    let loc = self.fam.tensor_loc((r + d) % w, c);
                    self.mem
                        .store(i, loc, v, tag(r, k, WHAT_REDUCED), MemOrder::Relaxed);
                }
            }
            PullStep::Forward => {
                // Push form: for my chunks c of my slice, v = my own tensor's chunk c (what
                // my ReduceStore stored: only I write my slice), then buf[q][c] = v for
                // every rank q but me and r + 1.
                let s = self.slice_len(r);
                let Some(c) = self.next_chunk_where(i, |c| (c / s).min(w - 1) == r) else {
                    return self.next_step(i);
                };
                let want = tag(r, k, WHAT_REDUCED);
                let place = format!("own tensor chunk {c}");
                let v = self.read_loc(i, self.fam.tensor_loc(r, c), r, want, "Forward", &place);
                for d in 2..w {
                    let loc = self.fam.tensor_loc((r + d) % w, c);
                    self.mem
                        .store(i, loc, v, tag(r, k, WHAT_REDUCED), MemOrder::Relaxed);
                }
            }
            PullStep::ReduceAll => {
                let Some(c) = self.nth_chunk(r, b, self.blocks[i].cursor) else {
                    return self.next_step(i);
                };
                let v = self.fold_peers(i, c);
                self.set_out(r, c, v);
                self.blocks[i].cursor += 1;
            }
            PullStep::ReduceRecv => {
                // One-shot push form: out[c] = fold over s in rank order of (s == r ?
                // input[c] : own R[s][c], chunk offset s*C + c of my half); no stores.
                let Some(c) = self.nth_chunk(r, b, self.blocks[i].cursor) else {
                    return self.next_step(i);
                };
                let chunks = self.fam.count(r, k).1;
                let mut acc = None;
                for src in 0..w {
                    let x = if src == r {
                        input_value(r, k, c)
                    } else {
                        let loc = self.fam.half_loc(r, dp, area_index(src, r) * chunks + c);
                        let want = self.expected_tag(src, r, WHAT_INPUT);
                        let place = format!("own R[{src}][{c}]");
                        self.read_loc(i, loc, src, want, "ReduceRecv", &place)
                    };
                    acc = Some(acc.map_or(x, |a| mix(a, x)));
                }
                self.set_out(r, c, acc.unwrap_or(0));
                self.blocks[i].cursor += 1;
            }
            PullStep::ReduceSlice if !self.is_seed() => {
                // v = fold over s of (s == r ? input[c] : own R[s][c - r*S]); out[c] = v;
                // every peer q's G[c] = v.
                let s = self.slice_len(r);
                let Some(c) = self.next_chunk_where(i, |c| c / s == r) else {
                    return self.next_step(i);
                };
                let j = c - r * s;
                let mut acc = None;
                for src in 0..w {
                    let x = if src == r {
                        input_value(r, k, c)
                    } else {
                        let loc = self.fam.half_loc(r, dp, area_index(src, r) * s + j);
                        let want = self.expected_tag(src, r, WHAT_INPUT);
                        let place = format!("own R[{src}][{j}] (chunk {c})");
                        self.read_loc(i, loc, src, want, "ReduceSlice", &place)
                    };
                    acc = Some(acc.map_or(x, |a| mix(a, x)));
                }
                let v = acc.unwrap_or(0);
                for q in (0..w).filter(|&q| q != r) {
                    let loc = self.fam.half_loc(q, dp, g_off(w, s, area_index(r, q), j));
                    self.mem
                        .store(i, loc, v, tag(r, k, WHAT_REDUCED), MemOrder::Relaxed);
                }
                self.set_out(r, c, v);
            }
            PullStep::ReduceSlice => {
                // The seed: fold every peer's buffer, the result in place in my own.
                let s = self.slice_len(r);
                let Some(c) = self.next_chunk_where(i, |c| c / s == r) else {
                    return self.next_step(i);
                };
                let v = self.fold_peers(i, c);
                let loc = self.fam.data_loc(r, dp, false, c);
                self.mem
                    .store(i, loc, v, tag(r, k, WHAT_REDUCED), MemOrder::Relaxed);
                self.set_out(r, c, v);
            }
            PullStep::Gather if self.fam.defers_gather(k) => self.next_step(i),
            PullStep::GatherPrev => self.gather_prev(i),
            PullStep::Gather => {
                // out[c] = the owner's reduced chunk c for my chunks c of every slice q != r:
                // inc from my own G[c], the seed from the owner's buffer.
                let s = self.slice_len(r);
                let Some(c) = self.next_chunk_where(i, |c| c / s != r) else {
                    return self.next_step(i);
                };
                let q = (c / s).min(w - 1);
                let want = self.expected_tag(q, r, WHAT_REDUCED);
                let v = if self.is_seed() {
                    self.read_data(i, q, false, c, want)
                } else {
                    let loc = self
                        .fam
                        .half_loc(r, dp, g_off(w, s, area_index(q, r), c - q * s));
                    self.read_loc(i, loc, q, want, "Gather", &format!("own G[{c}]"))
                };
                self.set_out(r, c, v);
            }
            PullStep::QuadReduce => {
                let Some(c) = self.nth_chunk(r, b, self.blocks[i].cursor) else {
                    return self.next_step(i);
                };
                let mut acc = None;
                for q in self.fam.quad(r) {
                    let want = self.expected_tag(q, r, WHAT_INPUT);
                    let x = self.read_data(i, q, false, c, want);
                    acc = Some(acc.map_or(x, |a| mix(a, x)));
                }
                let v = acc.unwrap_or(0);
                let loc = self.fam.data_loc(r, dp, true, c);
                self.mem
                    .store(i, loc, v, tag(r, k, WHAT_PARTIAL), MemOrder::Relaxed);
                self.blocks[i].cursor += 1;
            }
            PullStep::RelayReduce => {
                let Some(c) = self.nth_chunk(r, b, self.blocks[i].cursor) else {
                    return self.next_step(i);
                };
                let (first, second) = self.fam.relay_order(r);
                let wa = self.expected_tag(first, r, WHAT_PARTIAL);
                let a = self.read_data(i, first, true, c, wa);
                let wb = self.expected_tag(second, r, WHAT_PARTIAL);
                let bb = self.read_data(i, second, true, c, wb);
                self.set_out(r, c, mix(a, bb));
                self.blocks[i].cursor += 1;
            }
            PullStep::Epilogue => self.epilogue(i),
        }
    }

    /// Folds input chunk c of every rank (rank order 0..W; the seed's rotated order r,
    /// r+1, ...) as read by block i, checking each read's tag.
    fn fold_peers(&mut self, i: usize, c: usize) -> u64 {
        let r = i / self.max_g;
        let w = self.set.world;
        let seed = self.is_seed();
        let mut acc = None;
        for j in 0..w {
            let q = if seed { (r + j) % w } else { j };
            let want = self.expected_tag(q, r, WHAT_INPUT);
            let x = self.read_data(i, q, false, c, want);
            acc = Some(acc.map_or(x, |a| mix(a, x)));
        }
        acc.unwrap_or(0)
    }

    /// The next chunk of block i (grid-stride order, from its cursor) that satisfies
    /// `keep`; advances the cursor past it. None when the block has no more.
    fn next_chunk_where(&mut self, i: usize, keep: impl Fn(usize) -> bool) -> Option<usize> {
        let r = i / self.max_g;
        let chunks = self.fam.count(r, self.ranks[r].call).1;
        self.next_chunk_in(i, chunks, keep)
    }

    /// [`Self::next_chunk_where`] among `chunks` chunks (another call's count).
    pub(super) fn next_chunk_in(
        &mut self,
        i: usize,
        chunks: usize,
        keep: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let r = i / self.max_g;
        let b = i % self.max_g;
        loop {
            let c = self.nth_chunk_in(r, b, self.blocks[i].cursor, chunks)?;
            self.blocks[i].cursor += 1;
            if keep(c) {
                return Some(c);
            }
        }
    }

    /// A barrier: signal one peer of `set` per action, then wait for each in turn.
    fn step_barrier(&mut self, i: usize, kind: BarrierKind, set: crate::program::PeerSet) {
        let r = i / self.max_g;
        let b = i % self.max_g;
        let cursor = self.blocks[i].cursor;
        let Some(q) = self.fam.nth_member(r, set, cursor) else {
            if self.blocks[i].waiting {
                self.next_step(i);
            } else {
                self.blocks[i].waiting = true;
                self.blocks[i].cursor = 0;
            }
            return;
        };
        let seed = self.is_seed();
        if !self.blocks[i].waiting {
            let val = if seed {
                let loc = self.fam.seed_sem_loc(q, kind, b, r);
                self.mem.rmw(i, loc, |v| Some((v + 1, 0)));
                1
            } else {
                let val = self.want(r);
                let loc = self.fam.flag_loc(q, kind, self.parity(r), b, r);
                let order = self.flag_order(MemOrder::Release);
                self.mem.store(i, loc, val, 0, order);
                val
            };
            self.log(r, Some(b), Ev::Note(PullNote::Signal { peer: q, val }));
            self.blocks[i].cursor += 1;
            return;
        }
        let (val, passed) = if seed {
            let loc = self.fam.seed_sem_loc(r, kind, b, q);
            let old = self
                .mem
                .rmw(i, loc, |v| if v > 0 { Some((v - 1, 0)) } else { None });
            (old, old > 0)
        } else {
            let loc = self.fam.flag_loc(r, kind, self.parity(r), b, q);
            let order = self.flag_order(MemOrder::Acquire);
            let (v, _) = self.pick_load(i, loc, order);
            let passed = v == self.want(r);
            if passed {
                // the consumer clears the slot it took (PROTOCOL.md "Wrap")
                self.mem.store(i, loc, 0, 0, MemOrder::Relaxed);
            }
            (v, passed)
        };
        if passed {
            self.log(r, Some(b), Ev::Note(PullNote::Passed { peer: q, val }));
            self.blocks[i].cursor += 1;
        } else if !seed && !self.flag_error(i, q, val) {
            self.abort_seen(i);
        }
    }

    /// For a waiting block: whether a poll now would pass or fail rather than keep
    /// waiting. None when it is not polling.
    pub(super) fn poll_outcome(&self, i: usize) -> Option<bool> {
        let step = self.cur_step(i)?;
        let b = &self.blocks[i];
        let (kind, set) = Pull::barrier_of(step)?;
        if !b.waiting || (step == PullStep::EndBarrier && !self.fam.cfg.zero_copy) {
            return None;
        }
        let r = i / self.max_g;
        let blk = i % self.max_g;
        let q = self.fam.nth_member(r, set, b.cursor)?;
        if self.is_seed() {
            let loc = self.fam.seed_sem_loc(r, kind, blk, q);
            return Some(self.mem.newest(i, loc).0 > 0);
        }
        let loc = self.fam.flag_loc(r, kind, self.parity(r), blk, q);
        let aloc = self.fam.abort_loc(r);
        let v = self.mem.newest(i, loc).0;
        Some(self.flag_moves(r, v) || self.mem.newest(i, aloc).0 != 0)
    }
}
