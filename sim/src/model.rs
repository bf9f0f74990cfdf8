//! A small operational weak-memory model in the spirit of the PTX memory model at system
//! scope, used by the checker.
//!
//! - Every location keeps its history of landed writes (its modification order).
//! - A store goes into its thread's set of *pending* stores; the scheduler decides when
//!   each lands (becomes part of the history). Relaxed stores of one thread may land in
//!   any order, except that two stores to the same location land in program order. A
//!   *release* store lands only after every earlier store of its thread has landed.
//! - Happens-before is tracked with vector clocks: a release store carries its thread's
//!   clock; an acquire load that reads it joins that clock. Fences: `fence.acq_rel`
//!   lands the thread's pending stores, joins the clocks of writes read by earlier relaxed
//!   loads (acquire side) and makes later relaxed stores carry the current clock
//!   (release side), as C++/PTX fence-fence synchronisation.
//! - A load returns its own latest pending store to that location if any (store
//!   forwarding); otherwise any landed write not older than the newest write that
//!   happens-before the load (and, for coherent loads, not older than what this thread
//!   already read there). The scheduler picks which. `.nc` (non-coherent) loads skip the
//!   per-thread coherence floor, so they may go backwards in time.
//! - Atomic read-modify-writes (atomicAdd/CAS at system scope) read the newest write and
//!   land at once; the model treats them as acq_rel.
//!
//! Not captured: load buffering (a load reading a write that is later in the same thread's
//! causal future), out-of-thin-air values, mixed-size accesses and tearing (every
//! location is one whole word: the barrier checker models a 16-byte chunk as one word,
//! the push (LL) checker models each 8-byte `{data, tag}` half as one word and lands the
//! halves of a 16-byte store separately), scopes other than `.sys`, and caches that are
//! non-coherent across *blocks* of one GPU beyond what `.nc` expresses.

/// "No clock" marker in [`Write`] and fence state.
const NONE: u32 = u32::MAX;

/// Memory ordering of an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemOrder {
    /// Relaxed / volatile (`ld.volatile`, `ld.relaxed.sys`, `st.relaxed`, plain `st`).
    Relaxed,
    /// `ld.global.nc`: may return stale data, no per-thread coherence.
    NonCoherent,
    /// `ld.acquire.sys`.
    Acquire,
    /// `st.release.sys`.
    Release,
}

/// One landed write.
#[derive(Clone, Copy, Debug)]
pub struct Write {
    /// The value.
    pub val: u64,
    /// Checker metadata (who wrote which call's data).
    pub tag: u64,
    tid: u32,
    /// The writer's own clock component at the write (0 = initial value).
    t: u32,
    /// Index of the clock the write releases in [`Memory::clocks`], or [`NONE`].
    rel: u32,
}

impl Write {
    const INIT: Write = Write {
        val: 0,
        tag: 0,
        tid: 0,
        t: 0,
        rel: NONE,
    };
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    loc: usize,
    write: Write,
    release: bool,
    /// Not landed yet (landed slots stay as tombstones until the buffer empties).
    live: bool,
    /// Slot of the next store of this thread to the same location, or [`NONE`].
    next_same: u32,
}

/// One location: its modification order and each thread's coherence floor there.
#[derive(Clone, Debug)]
struct Loc {
    /// Landed writes, oldest first (index 0 is the initial zero).
    hist: Vec<Write>,
    /// `(thread, history index)` of the newest write each thread read here (coherent
    /// loads). Few threads read one location, so a short list beats a map.
    floors: Vec<(u32, u32)>,
    /// `(thread, slot)` of each thread's newest pending store here (store forwarding and
    /// same-location ordering without scanning the store buffer).
    pend: Vec<(u32, u32)>,
    /// Listed in [`Memory::touched`] (reset restores it).
    touched: bool,
}

/// A thread's store buffer: the stores issued since it was last empty, in program order,
/// each in a *slot* whose index is the store's handle until the buffer empties (landed
/// stores stay as tombstones so handles never shift). Landing is O(log n + ready) and
/// forwarding O(1), so thousands of pending stores (a low-priority buffer at 64 KB) stay
/// cheap.
#[derive(Clone, Debug)]
struct Thread {
    /// Slots in program order.
    pending: Vec<Pending>,
    /// First live slot (or `pending.len()`).
    head: usize,
    /// Live slots.
    live: usize,
    /// Clock released by the last `fence`, or [`NONE`].
    rel_fence: u32,
    /// Slots that may land now, ascending (program order; kept up to date).
    ready: Vec<usize>,
}

impl Thread {
    fn mark_ready(&mut self, slot: usize) {
        if let Err(pos) = self.ready.binary_search(&slot) {
            self.ready.insert(pos, slot);
        }
    }
    fn clear(&mut self) {
        self.pending.clear();
        self.ready.clear();
        self.head = 0;
        self.live = 0;
    }
}

/// The whole memory: locations and threads.
///
/// Storage is flat and reusable: vector clocks live in one `threads x threads` table,
/// released clocks in an arena, and [`Memory::reset`] restores the initial state without
/// freeing anything, so a checker can run many schedules without allocating.
#[derive(Clone, Debug)]
pub struct Memory {
    n_threads: usize,
    locs: Vec<Loc>,
    threads: Vec<Thread>,
    /// Vector clock of thread t: `vc[t * n_threads..][..n_threads]`.
    vc: Vec<u32>,
    /// Clocks of writes read by relaxed loads (joined at the next fence), same layout.
    acq_acc: Vec<u32>,
    /// Released clocks, `n_threads` words each.
    clocks: Vec<u32>,
    /// Locations whose history or floors changed since the last reset.
    touched: Vec<usize>,
    /// Locations written since the last [`Memory::take_landed`].
    landed: Vec<usize>,
}

fn join(dst: &mut [u32], src: &[u32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        if *s > *d {
            *d = *s;
        }
    }
}

impl Memory {
    /// `n_locs` locations (all initially 0, tag 0) and `n_threads` threads.
    pub fn new(n_locs: usize, n_threads: usize) -> Self {
        Memory {
            n_threads,
            locs: vec![
                Loc {
                    hist: vec![Write::INIT],
                    floors: Vec::new(),
                    pend: Vec::new(),
                    touched: false,
                };
                n_locs
            ],
            threads: vec![
                Thread {
                    pending: Vec::new(),
                    head: 0,
                    live: 0,
                    rel_fence: NONE,
                    ready: Vec::new(),
                };
                n_threads
            ],
            vc: vec![0; n_threads * n_threads],
            acq_acc: vec![0; n_threads * n_threads],
            clocks: Vec::new(),
            touched: Vec::new(),
            landed: Vec::new(),
        }
    }

    /// Restores the state of [`Memory::new`] (same sizes), keeping every buffer's capacity.
    pub fn reset(&mut self) {
        for &l in &self.touched {
            if let Some(loc) = self.locs.get_mut(l) {
                loc.hist.truncate(1);
                loc.floors.clear();
                loc.pend.clear();
                loc.touched = false;
            }
        }
        self.touched.clear();
        for th in &mut self.threads {
            th.clear();
            th.rel_fence = NONE;
        }
        self.vc.fill(0);
        self.acq_acc.fill(0);
        self.clocks.clear();
        self.landed.clear();
    }

    fn touch(&mut self, loc: usize) {
        if let Some(l) = self.locs.get_mut(loc) {
            if !l.touched {
                l.touched = true;
                self.touched.push(loc);
            }
        }
    }

    fn row(&self, tid: usize) -> std::ops::Range<usize> {
        tid * self.n_threads..(tid + 1) * self.n_threads
    }

    /// Copies thread `tid`'s vector clock into the arena; returns its index.
    fn release_clock(&mut self, tid: usize) -> u32 {
        let id = (self.clocks.len() / self.n_threads.max(1)) as u32;
        let row = self.row(tid);
        if let Some(src) = self.vc.get(row) {
            self.clocks.extend_from_slice(src);
        }
        id
    }

    /// Advances `tid`'s own clock component; returns the new value.
    fn tick(&mut self, tid: usize) -> Option<u32> {
        let slot = self.vc.get_mut(tid * self.n_threads + tid)?;
        *slot += 1;
        Some(*slot)
    }

    fn hb(&self, w: &Write, reader: usize) -> bool {
        w.t == 0
            || self
                .vc
                .get(reader * self.n_threads + w.tid as usize)
                .is_some_and(|&c| c >= w.t)
    }

    /// Moves the locations written since the last call (landed stores and atomics, in
    /// order, repeats kept) into `out` (cleared first), so a caller can re-derive only
    /// what depends on them.
    pub fn take_landed(&mut self, out: &mut Vec<usize>) {
        out.clear();
        std::mem::swap(out, &mut self.landed);
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Message passing: T0 writes data then flag; T1 reads flag then data.
    /// Returns the set of data values T1 can see after seeing the flag.
    fn mp(flag_store: MemOrder, flag_load: MemOrder, fences: bool) -> Vec<u64> {
        let mut seen = Vec::new();
        for pick in 0..2 {
            let mut m = Memory::new(2, 2);
            m.store(0, 0, 42, 0, MemOrder::Relaxed);
            if fences {
                m.fence(0);
            }
            m.store(0, 1, 1, 0, flag_store);
            // Land the flag first when allowed (relaxed stores may reorder).
            let mut l = Vec::new();
            m.landable(&mut l);
            let flag_first = l.iter().position(|&(_, i)| i == 1);
            if let Some(pos) = flag_first {
                let (t, i) = l[pos];
                m.land(t, i);
            } else {
                m.flush(0);
            }
            if m.load(1, 1, flag_load, 0).0 == 1 {
                if fences {
                    m.fence(1);
                }
                seen.push(m.load(1, 0, MemOrder::Relaxed, pick).0);
            }
            m.flush(0);
        }
        seen.sort_unstable();
        seen.dedup();
        seen
    }

    #[test]
    fn release_acquire_forbids_stale_data() {
        assert_eq!(mp(MemOrder::Release, MemOrder::Acquire, false), [42]);
        assert_eq!(mp(MemOrder::Relaxed, MemOrder::Relaxed, true), [42]);
    }

    #[test]
    fn relaxed_message_passing_can_read_stale_data() {
        assert!(mp(MemOrder::Relaxed, MemOrder::Relaxed, false).contains(&0));
        // Release without acquire is not enough either.
        let mut m = Memory::new(2, 2);
        m.store(0, 0, 42, 0, MemOrder::Relaxed);
        m.store(0, 1, 1, 0, MemOrder::Release);
        m.flush(0);
        assert_eq!(m.load(1, 1, MemOrder::Relaxed, 0).0, 1);
        assert_eq!(m.load_choices(1, 0, MemOrder::Relaxed), 2);
        assert_eq!(m.load(1, 0, MemOrder::Relaxed, 1).0, 0);
    }

    #[test]
    fn coherence_and_nc_loads() {
        let mut m = Memory::new(1, 2);
        m.store(0, 0, 1, 0, MemOrder::Relaxed);
        m.store(0, 0, 2, 0, MemOrder::Relaxed);
        let mut l = Vec::new();
        m.landable(&mut l);
        assert_eq!(l, [(0, 0)], "same-location stores land in order");
        assert_eq!(m.load(0, 0, MemOrder::Relaxed, 5).0, 2, "forwarding");
        m.flush(0);
        assert_eq!(m.load(1, 0, MemOrder::Relaxed, 0).0, 2);
        // Coherent loads never go back; .nc loads may.
        assert_eq!(m.load(1, 0, MemOrder::Relaxed, 2).0, 2);
        assert_eq!(m.load(1, 0, MemOrder::NonCoherent, 2).0, 0);
    }

    #[test]
    fn release_store_waits_for_earlier_stores() {
        let mut m = Memory::new(2, 1);
        m.store(0, 0, 1, 0, MemOrder::Relaxed);
        m.store(0, 1, 1, 0, MemOrder::Release);
        let mut l = Vec::new();
        m.landable(&mut l);
        assert_eq!(l, [(0, 0)]);
        // A relaxed store after a release may overtake it.
        m.store(0, 0, 5, 0, MemOrder::Relaxed);
        let mut m2 = Memory::new(3, 1);
        m2.store(0, 1, 1, 0, MemOrder::Release);
        m2.store(0, 2, 1, 0, MemOrder::Relaxed);
        let mut l2 = Vec::new();
        m2.landable(&mut l2);
        assert_eq!(l2, [(0, 0), (0, 1)]);
    }

    #[test]
    fn ready_list_matches_the_landing_rules_and_reset_restores_all() {
        let mut m = Memory::new(4, 2);
        let brute = |m: &Memory| {
            let mut v = Vec::new();
            for (tid, th) in m.threads.iter().enumerate() {
                // The landing rules, from scratch over the live slots.
                let first = th.pending.iter().position(|p| p.live);
                for (i, p) in th.pending.iter().enumerate() {
                    let ok = p.live
                        && if p.release {
                            first == Some(i)
                        } else {
                            th.pending[..i].iter().all(|q| !q.live || q.loc != p.loc)
                        };
                    if ok {
                        v.push((tid, i));
                    }
                }
            }
            v
        };
        let ops: [(usize, usize, MemOrder); 8] = [
            (0, 0, MemOrder::Relaxed),
            (0, 1, MemOrder::Relaxed),
            (0, 0, MemOrder::Relaxed),
            (0, 2, MemOrder::Release),
            (1, 3, MemOrder::Relaxed),
            (0, 3, MemOrder::Relaxed),
            (1, 3, MemOrder::Release),
            (1, 0, MemOrder::Relaxed),
        ];
        for (k, &(t, l, o)) in ops.iter().enumerate() {
            m.store(t, l, k as u64 + 1, 0, o);
            let mut got = Vec::new();
            m.landable(&mut got);
            assert_eq!(got, brute(&m));
        }
        let mut landed = Vec::new();
        while let Some(&(t, i)) = {
            let mut l = Vec::new();
            m.landable(&mut l);
            l.last().copied().as_ref()
        } {
            m.land(t, i);
            let mut got = Vec::new();
            m.landable(&mut got);
            assert_eq!(got, brute(&m));
        }
        m.take_landed(&mut landed);
        assert_eq!(landed.len(), ops.len());
        assert_eq!(m.load_choices(1, 1, MemOrder::Relaxed), 2);
        assert_eq!(m.load(1, 1, MemOrder::Relaxed, 0).0, 2);
        m.reset();
        assert_eq!(m.load_choices(1, 1, MemOrder::Relaxed), 1);
        assert_eq!(m.load(1, 0, MemOrder::Relaxed, 0), (0, 0));
        assert!(!m.has_pending(0));
        m.take_landed(&mut landed);
        assert!(landed.is_empty());
    }

    #[test]
    fn store_buffer_matches_a_naive_model_over_random_ops() {
        // Naive reference: per thread a program-order list of (loc, val, release).
        let mut x = 0x2545_f491_u64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _round in 0..50 {
            let mut m = Memory::new(4, 3);
            let mut naive: Vec<Vec<(usize, u64, bool)>> = vec![Vec::new(); 3];
            for step in 0..200u64 {
                let t = rnd(3) as usize;
                match rnd(10) {
                    0..=4 => {
                        let loc = rnd(4) as usize;
                        let rel = rnd(4) == 0;
                        let o = if rel {
                            MemOrder::Release
                        } else {
                            MemOrder::Relaxed
                        };
                        m.store(t, loc, step + 1, 0, o);
                        naive[t].push((loc, step + 1, rel));
                    }
                    5..=8 => {
                        let mut l = Vec::new();
                        m.landable_of(t, &mut l);
                        // Naive landable set, as values.
                        let nv = &naive[t];
                        let want: Vec<u64> = nv
                            .iter()
                            .enumerate()
                            .filter(|&(i, &(loc, _, rel))| {
                                if rel {
                                    i == 0
                                } else {
                                    nv[..i].iter().all(|q| q.0 != loc)
                                }
                            })
                            .map(|(_, p)| p.1)
                            .collect();
                        let got: Vec<u64> = l
                            .iter()
                            .map(|&(_, s)| m.threads[t].pending[s].write.val)
                            .collect();
                        assert_eq!(got, want);
                        assert_eq!(m.ready_len(t), want.len());
                        if !l.is_empty() {
                            let j = rnd(l.len() as u64) as usize;
                            let (_, s) = l[j];
                            let stamp = m.pending_stamp(t, s).unwrap();
                            assert_eq!(m.landable_by_stamp(t, stamp), Some(s));
                            assert_eq!(m.ready_nth(t, j), Some(s));
                            let v = m.threads[t].pending[s].write.val;
                            m.land(t, s);
                            let k = naive[t].iter().position(|p| p.1 == v).unwrap();
                            naive[t].remove(k);
                        }
                    }
                    _ => {
                        m.flush(t);
                        naive[t].clear();
                    }
                }
                for (tt, nv) in naive.iter().enumerate() {
                    assert_eq!(m.has_pending(tt), !nv.is_empty());
                    for loc in 0..4 {
                        if let Some(p) = nv.iter().rev().find(|p| p.0 == loc) {
                            assert_eq!(m.newest(tt, loc).0, p.1, "forwarding");
                            assert_eq!(m.load_choices(tt, loc, MemOrder::Relaxed), 1);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rmw_reads_newest_and_synchronises() {
        let mut m = Memory::new(2, 2);
        m.store(0, 0, 7, 0, MemOrder::Relaxed);
        assert_eq!(m.rmw(0, 1, |v| Some((v + 1, 0))), 0);
        assert_eq!(
            m.rmw(1, 1, |v| if v > 0 { Some((v - 1, 0)) } else { None }),
            1
        );
        // T1 acquired T0's rmw, so it cannot read the initial data any more.
        assert_eq!(m.load_choices(1, 0, MemOrder::Relaxed), 1);
        assert_eq!(m.load(1, 0, MemOrder::Relaxed, 1).0, 7);
    }
}
