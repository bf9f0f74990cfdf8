//! Store buffers: issuing a store, which pending stores may land, landing and flushing.

use super::{MemOrder, Memory, Pending, Write, NONE};

impl Memory {
    /// Issues a store; it is pending until [`Memory::land`].
    pub fn store(&mut self, tid: usize, loc: usize, val: u64, tag: u64, order: MemOrder) {
        if tid >= self.n_threads || loc >= self.locs.len() {
            return;
        }
        let Some(t) = self.tick(tid) else { return };
        let release = order == MemOrder::Release;
        let rel = if release {
            self.release_clock(tid)
        } else {
            self.threads.get(tid).map_or(NONE, |th| th.rel_fence)
        };
        self.touch(loc);
        let (Some(th), Some(l)) = (self.threads.get_mut(tid), self.locs.get_mut(loc)) else {
            return;
        };
        let slot = th.pending.len();
        let prev = l.pend.iter_mut().find(|e| e.0 as usize == tid);
        let had_prev = match prev {
            Some(e) => {
                if let Some(p) = th.pending.get_mut(e.1 as usize) {
                    p.next_same = slot as u32;
                }
                e.1 = slot as u32;
                true
            }
            None => {
                l.pend.push((tid as u32, slot as u32));
                false
            }
        };
        let ready = if release { th.live == 0 } else { !had_prev };
        th.pending.push(Pending {
            loc,
            write: Write {
                val,
                tag,
                tid: tid as u32,
                t,
                rel,
            },
            release,
            live: true,
            next_same: NONE,
        });
        th.live += 1;
        if ready {
            th.ready.push(slot);
        }
    }

    /// Pending stores that may land now, as `(tid, slot)` pairs (per thread in program
    /// order). A slot is the store's handle for [`Memory::land`] and
    /// [`Memory::pending_stamp`] until that thread's buffer next empties.
    pub fn landable(&self, out: &mut Vec<(usize, usize)>) {
        for (tid, th) in self.threads.iter().enumerate() {
            out.extend(th.ready.iter().map(|&i| (tid, i)));
        }
    }

    /// Pending stores of `tid` that may land now (slots, ascending) appended to `out`.
    pub fn landable_of(&self, tid: usize, out: &mut Vec<(usize, usize)>) {
        if let Some(th) = self.threads.get(tid) {
            out.extend(th.ready.iter().map(|&i| (tid, i)));
        }
    }

    /// How many pending stores of `tid` may land now.
    pub fn ready_len(&self, tid: usize) -> usize {
        self.threads.get(tid).map_or(0, |t| t.ready.len())
    }

    /// The `j`-th (in program order) pending store of `tid` that may land now: its slot.
    pub fn ready_nth(&self, tid: usize, j: usize) -> Option<usize> {
        self.threads.get(tid)?.ready.get(j).copied()
    }

    /// Whether thread `tid` has pending stores.
    pub fn has_pending(&self, tid: usize) -> bool {
        self.threads.get(tid).is_some_and(|t| t.live > 0)
    }

    /// The identity of pending store `slot` of `tid`: the thread's own clock value at the
    /// store, unique within the thread and stable while other stores land.
    pub fn pending_stamp(&self, tid: usize, slot: usize) -> Option<u32> {
        let p = self.threads.get(tid)?.pending.get(slot)?;
        p.live.then_some(p.write.t)
    }

    /// Slot of `tid`'s pending store with stamp `stamp`, if it exists and may land now.
    pub fn landable_by_stamp(&self, tid: usize, stamp: u32) -> Option<usize> {
        let th = self.threads.get(tid)?;
        // Stamps grow in program order.
        let i = th
            .pending
            .binary_search_by_key(&stamp, |p| p.write.t)
            .ok()?;
        th.ready.binary_search(&i).ok().map(|_| i)
    }

    /// Lands pending store `slot` of `tid` (no-op unless it may land now). Returns the
    /// location written.
    pub fn land(&mut self, tid: usize, slot: usize) -> Option<usize> {
        let th = self.threads.get_mut(tid)?;
        let pos = th.ready.binary_search(&slot).ok()?;
        th.ready.remove(pos);
        let p = th.pending.get_mut(slot)?;
        p.live = false;
        let p = *p;
        th.live -= 1;
        if th.live == 0 {
            th.clear();
        } else {
            while th.pending.get(th.head).is_some_and(|q| !q.live) {
                th.head += 1;
            }
            // The oldest live store may be a release store that was waiting for this one.
            let head = th.head;
            if th.pending.get(head).is_some_and(|q| q.release) {
                th.mark_ready(head);
            }
            // The next store to the same location no longer waits for this one.
            let n = p.next_same as usize;
            if th.pending.get(n).is_some_and(|q| !q.release) {
                th.mark_ready(n);
            }
        }
        let l = self.locs.get_mut(p.loc)?;
        if let Some(k) = l
            .pend
            .iter()
            .position(|e| e.0 as usize == tid && e.1 as usize == slot)
        {
            l.pend.swap_remove(k);
        }
        l.hist.push(p.write);
        self.landed.push(p.loc);
        self.touch(p.loc);
        Some(p.loc)
    }

    /// Lands every pending store of `tid` in program order.
    pub fn flush(&mut self, tid: usize) {
        let Some(th) = self.threads.get_mut(tid) else {
            return;
        };
        if th.live == 0 {
            return;
        }
        for p in th.pending.iter().skip(th.head).filter(|p| p.live) {
            if let Some(l) = self.locs.get_mut(p.loc) {
                l.hist.push(p.write);
                if let Some(k) = l.pend.iter().position(|e| e.0 as usize == tid) {
                    l.pend.swap_remove(k);
                }
                self.landed.push(p.loc);
                if !l.touched {
                    l.touched = true;
                    self.touched.push(p.loc);
                }
            }
        }
        th.clear();
    }
}
