//! Loads (with store forwarding, the happens-before floor and per-thread coherence),
//! atomic read-modify-writes, fences and thread synchronisation.

use super::{join, MemOrder, Memory, Write, NONE};

impl Memory {
    /// How many values a load by `tid` of `loc` may return (1 when forwarded). Option 0
    /// is always the newest.
    pub fn load_choices(&self, tid: usize, loc: usize, order: MemOrder) -> usize {
        let (lo, hi) = self.window(tid, loc, order);
        hi - lo + 1
    }

    fn forwarded(&self, tid: usize, loc: usize) -> Option<&Write> {
        let &(_, slot) = self
            .locs
            .get(loc)?
            .pend
            .iter()
            .find(|e| e.0 as usize == tid)?;
        self.threads
            .get(tid)?
            .pending
            .get(slot as usize)
            .map(|p| &p.write)
    }

    /// `(lowest, highest)` history index a load may read (equal when forwarded).
    fn window(&self, tid: usize, loc: usize, order: MemOrder) -> (usize, usize) {
        if self.forwarded(tid, loc).is_some() {
            let hi = self
                .locs
                .get(loc)
                .map_or(0, |l| l.hist.len().saturating_sub(1));
            return (hi, hi);
        }
        self.landed_window(tid, loc, order)
    }

    /// [`Memory::window`] of a load that is not forwarded.
    fn landed_window(&self, tid: usize, loc: usize, order: MemOrder) -> (usize, usize) {
        let Some(l) = self.locs.get(loc) else {
            return (0, 0);
        };
        let hist = &l.hist;
        let hi = hist.len().saturating_sub(1);
        let mut lo = hist.iter().rposition(|w| self.hb(w, tid)).unwrap_or(0);
        if order != MemOrder::NonCoherent {
            if let Some(&(_, f)) = l.floors.iter().find(|&&(t, _)| t as usize == tid) {
                lo = lo.max(f as usize);
            }
        }
        (lo.min(hi), hi)
    }

    /// The newest value `tid` could read at `loc` (its pending store or the last landed).
    pub fn newest(&self, tid: usize, loc: usize) -> (u64, u64) {
        if let Some(w) = self.forwarded(tid, loc) {
            return (w.val, w.tag);
        }
        self.locs
            .get(loc)
            .and_then(|l| l.hist.last())
            .map_or((0, 0), |w| (w.val, w.tag))
    }

    /// The newest *landed* write of `loc` (no store forwarding): what a thread that has no
    /// pending store to `loc` would read as the newest value, without scanning its pending
    /// stores.
    pub fn newest_landed(&self, loc: usize) -> (u64, u64) {
        self.locs
            .get(loc)
            .and_then(|l| l.hist.last())
            .map_or((0, 0), |w| (w.val, w.tag))
    }

    /// Loads `loc`; `pick` selects the value: 0 = newest allowed, larger = older (clamped).
    pub fn load(&mut self, tid: usize, loc: usize, order: MemOrder, pick: usize) -> (u64, u64) {
        self.load_with(tid, loc, order, |_| pick)
    }

    /// Loads `loc`; `pick(n)` is called once with the number of allowed values `n` (1 when
    /// forwarded from a pending store) and returns the choice (0 = newest, larger = older,
    /// clamped), as [`Memory::load_choices`] then [`Memory::load`] but in one pass.
    pub fn load_with(
        &mut self,
        tid: usize,
        loc: usize,
        order: MemOrder,
        pick: impl FnOnce(usize) -> usize,
    ) -> (u64, u64) {
        if let Some(w) = self.forwarded(tid, loc) {
            let _ = pick(1);
            return (w.val, w.tag);
        }
        let (lo, hi) = self.landed_window(tid, loc, order);
        let idx = hi - pick(hi - lo + 1).min(hi - lo);
        let Some(w) = self.locs.get(loc).and_then(|l| l.hist.get(idx)).copied() else {
            return (0, 0);
        };
        if tid >= self.n_threads {
            return (w.val, w.tag);
        }
        if order != MemOrder::NonCoherent {
            self.set_floor(tid, loc, idx);
        }
        if w.rel != NONE {
            let row = self.row(tid);
            let n = self.n_threads;
            let c = w.rel as usize * n;
            let dst = if order == MemOrder::Acquire {
                self.vc.get_mut(row)
            } else {
                self.acq_acc.get_mut(row)
            };
            if let (Some(src), Some(dst)) = (self.clocks.get(c..c + n), dst) {
                join(dst, src);
            }
        }
        (w.val, w.tag)
    }

    fn set_floor(&mut self, tid: usize, loc: usize, idx: usize) {
        let Some(l) = self.locs.get_mut(loc) else {
            return;
        };
        match l.floors.iter_mut().find(|(t, _)| *t as usize == tid) {
            Some(f) => f.1 = idx as u32,
            None => l.floors.push((tid as u32, idx as u32)),
        }
        self.touch(loc);
    }

    /// Atomic read-modify-write (acq_rel, system scope): lands `tid`'s pending stores,
    /// reads the newest write, and if `f` returns a new value writes it at once.
    /// Returns the old value.
    pub fn rmw(
        &mut self,
        tid: usize,
        loc: usize,
        f: impl FnOnce(u64) -> Option<(u64, u64)>,
    ) -> u64 {
        self.flush(tid);
        let Some(last) = self.locs.get(loc).and_then(|l| l.hist.last()).copied() else {
            return 0;
        };
        if tid >= self.n_threads {
            return last.val;
        }
        if last.rel != NONE {
            let row = self.row(tid);
            let n = self.n_threads;
            let c = last.rel as usize * n;
            if let (Some(src), Some(dst)) = (self.clocks.get(c..c + n), self.vc.get_mut(row)) {
                join(dst, src);
            }
        }
        if let Some((val, tag)) = f(last.val) {
            let Some(t) = self.tick(tid) else {
                return last.val;
            };
            let rel = self.release_clock(tid);
            let len = self.locs.get(loc).map_or(0, |l| l.hist.len());
            self.set_floor(tid, loc, len);
            self.landed.push(loc);
            if let Some(l) = self.locs.get_mut(loc) {
                l.hist.push(Write {
                    val,
                    tag,
                    tid: tid as u32,
                    t,
                    rel,
                });
            }
        }
        last.val
    }

    /// `fence.acq_rel.sys`.
    pub fn fence(&mut self, tid: usize) {
        self.flush(tid);
        if tid >= self.n_threads {
            return;
        }
        let row = self.row(tid);
        if let (Some(dst), Some(src)) = (self.vc.get_mut(row.clone()), self.acq_acc.get(row)) {
            join(dst, src);
        }
        let c = self.release_clock(tid);
        if let Some(th) = self.threads.get_mut(tid) {
            th.rel_fence = c;
        }
    }

    /// Makes everything `src` did happen-before what `dst` does next (stream order,
    /// `__syncthreads`, kernel boundaries).
    pub fn sync_threads(&mut self, dst: usize, src: usize) {
        let n = self.n_threads;
        if dst == src || dst >= n || src >= n {
            return;
        }
        for j in 0..n {
            let (Some(&s), Some(d)) = (self.vc.get(src * n + j), self.vc.get(dst * n + j)) else {
                return;
            };
            if s > *d {
                if let Some(d) = self.vc.get_mut(dst * n + j) {
                    *d = s;
                }
            }
        }
    }
}
