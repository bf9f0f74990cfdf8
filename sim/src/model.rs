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
//! location is one whole word; 16-byte chunks are assumed single-copy atomic, which is
//! what the push path documents), scopes other than `.sys`, and caches that are
//! non-coherent across *blocks* of one GPU beyond what `.nc` expresses.

use std::collections::HashMap;
use std::rc::Rc;

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
#[derive(Clone, Debug)]
pub struct Write {
    /// The value.
    pub val: u64,
    /// Checker metadata (who wrote which call's data).
    pub tag: u64,
    tid: usize,
    t: u32,
    rel: Option<Rc<Vec<u32>>>,
}

#[derive(Clone, Debug)]
struct Pending {
    loc: usize,
    write: Write,
    release: bool,
}

#[derive(Clone, Debug)]
struct Thread {
    vc: Vec<u32>,
    rel_fence: Option<Rc<Vec<u32>>>,
    acq_acc: Vec<u32>,
    pending: Vec<Pending>,
    floor: HashMap<usize, usize>,
}

/// The whole memory: locations and threads.
#[derive(Clone, Debug)]
pub struct Memory {
    locs: Vec<Vec<Write>>,
    threads: Vec<Thread>,
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
        let init = Write {
            val: 0,
            tag: 0,
            tid: 0,
            t: 0,
            rel: None,
        };
        Memory {
            locs: vec![vec![init]; n_locs],
            threads: vec![
                Thread {
                    vc: vec![0; n_threads],
                    rel_fence: None,
                    acq_acc: vec![0; n_threads],
                    pending: Vec::new(),
                    floor: HashMap::new(),
                };
                n_threads
            ],
        }
    }

    fn thread(&mut self, tid: usize) -> Option<&mut Thread> {
        self.threads.get_mut(tid)
    }

    fn hb(&self, w: &Write, reader: usize) -> bool {
        w.t == 0
            || self
                .threads
                .get(reader)
                .and_then(|t| t.vc.get(w.tid))
                .is_some_and(|&c| c >= w.t)
    }

    /// Issues a store; it is pending until [`Memory::land`].
    pub fn store(&mut self, tid: usize, loc: usize, val: u64, tag: u64, order: MemOrder) {
        let Some(th) = self.thread(tid) else { return };
        let Some(slot) = th.vc.get_mut(tid) else {
            return;
        };
        *slot += 1;
        let t = *slot;
        let release = order == MemOrder::Release;
        let rel = if release {
            Some(Rc::new(th.vc.clone()))
        } else {
            th.rel_fence.clone()
        };
        th.pending.push(Pending {
            loc,
            write: Write {
                val,
                tag,
                tid,
                t,
                rel,
            },
            release,
        });
    }

    /// Pending stores that may land now, as `(tid, index)` pairs.
    pub fn landable(&self, out: &mut Vec<(usize, usize)>) {
        for (tid, th) in self.threads.iter().enumerate() {
            for (i, p) in th.pending.iter().enumerate() {
                let blocked = if p.release {
                    i > 0
                } else {
                    th.pending[..i].iter().any(|q| q.loc == p.loc)
                };
                if !blocked {
                    out.push((tid, i));
                }
            }
        }
    }

    /// Whether thread `tid` has pending stores.
    pub fn has_pending(&self, tid: usize) -> bool {
        self.threads.get(tid).is_some_and(|t| !t.pending.is_empty())
    }

    /// Lands pending store `idx` of `tid` (no-op when it does not exist). Returns the
    /// location written.
    pub fn land(&mut self, tid: usize, idx: usize) -> Option<usize> {
        let th = self.threads.get_mut(tid)?;
        if idx >= th.pending.len() {
            return None;
        }
        let p = th.pending.remove(idx);
        self.locs.get_mut(p.loc)?.push(p.write);
        Some(p.loc)
    }

    /// Lands every pending store of `tid` in program order.
    pub fn flush(&mut self, tid: usize) {
        while self.has_pending(tid) {
            self.land(tid, 0);
        }
    }

    /// How many values a load by `tid` of `loc` may return (1 when forwarded). Option 0
    /// is always the newest.
    pub fn load_choices(&self, tid: usize, loc: usize, order: MemOrder) -> usize {
        let (lo, hi) = self.window(tid, loc, order);
        hi - lo + 1
    }

    fn forwarded(&self, tid: usize, loc: usize) -> Option<&Write> {
        self.threads
            .get(tid)?
            .pending
            .iter()
            .rev()
            .find(|p| p.loc == loc)
            .map(|p| &p.write)
    }

    /// `(lowest, highest)` history index a load may read (equal when forwarded).
    fn window(&self, tid: usize, loc: usize, order: MemOrder) -> (usize, usize) {
        let Some(hist) = self.locs.get(loc) else {
            return (0, 0);
        };
        let hi = hist.len().saturating_sub(1);
        if self.forwarded(tid, loc).is_some() {
            return (hi, hi);
        }
        let mut lo = 0;
        for i in (0..hist.len()).rev() {
            if self.hb(&hist[i], tid) {
                lo = i;
                break;
            }
        }
        if order != MemOrder::NonCoherent {
            if let Some(&f) = self.threads.get(tid).and_then(|t| t.floor.get(&loc)) {
                lo = lo.max(f);
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
            .and_then(|h| h.last())
            .map_or((0, 0), |w| (w.val, w.tag))
    }

    /// Loads `loc`; `pick` selects the value: 0 = newest allowed, larger = older (clamped).
    pub fn load(&mut self, tid: usize, loc: usize, order: MemOrder, pick: usize) -> (u64, u64) {
        if let Some(w) = self.forwarded(tid, loc) {
            return (w.val, w.tag);
        }
        let (lo, hi) = self.window(tid, loc, order);
        let idx = hi - pick.min(hi - lo);
        let Some(w) = self.locs.get(loc).and_then(|h| h.get(idx)).cloned() else {
            return (0, 0);
        };
        if let Some(th) = self.threads.get_mut(tid) {
            if order != MemOrder::NonCoherent {
                th.floor.insert(loc, idx);
            }
            let clock: Option<&[u32]> = w.rel.as_deref().map(Vec::as_slice);
            match (order, clock) {
                (MemOrder::Acquire, Some(c)) => join(&mut th.vc, c),
                (_, Some(c)) => join(&mut th.acq_acc, c),
                _ => {}
            }
        }
        (w.val, w.tag)
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
        let Some(last) = self.locs.get(loc).and_then(|h| h.last()).cloned() else {
            return 0;
        };
        let Some(th) = self.threads.get_mut(tid) else {
            return last.val;
        };
        if let Some(c) = &last.rel {
            join(&mut th.vc, c);
        }
        if let Some((val, tag)) = f(last.val) {
            let Some(slot) = th.vc.get_mut(tid) else {
                return last.val;
            };
            *slot += 1;
            let t = *slot;
            let rel = Some(Rc::new(th.vc.clone()));
            let len = self.locs.get(loc).map_or(0, Vec::len);
            if let Some(th) = self.threads.get_mut(tid) {
                th.floor.insert(loc, len);
            }
            if let Some(h) = self.locs.get_mut(loc) {
                h.push(Write {
                    val,
                    tag,
                    tid,
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
        if let Some(th) = self.threads.get_mut(tid) {
            let acc = std::mem::take(&mut th.acq_acc);
            join(&mut th.vc, &acc);
            th.acq_acc = acc;
            th.rel_fence = Some(Rc::new(th.vc.clone()));
        }
    }

    /// Makes everything `src` did happen-before what `dst` does next (stream order,
    /// `__syncthreads`, kernel boundaries).
    pub fn sync_threads(&mut self, dst: usize, src: usize) {
        if dst == src {
            return;
        }
        let Some(c) = self.threads.get(src).map(|t| t.vc.clone()) else {
            return;
        };
        if let Some(th) = self.threads.get_mut(dst) {
            join(&mut th.vc, &c);
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
