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
//! location is one whole word: the checker's pull family models a 16-byte chunk as one
//! word, its push (LL) family models each 8-byte `{data, tag}` half as one word and lands the
//! halves of a 16-byte store separately), scopes other than `.sys`, and caches that are
//! non-coherent across *blocks* of one GPU beyond what `.nc` expresses.
//!
//! Layout: this file holds the state (locations, threads, vector clocks) and its
//! bookkeeping; `stores` the store buffers (issuing, landing, flushing); `loads` the
//! loads, atomics, fences and thread synchronisation.

mod loads;
mod stores;
#[cfg(test)]
mod tests;

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
}
