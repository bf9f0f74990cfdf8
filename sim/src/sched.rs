//! Scheduling strategies over enabled events, independent of any one checker.
//!
//! A checker builds, at every step, the list of [`Event`]s that can happen now, one per
//! *virtual thread*: a block that can take its next step ([`Event::Step`]) and a block's
//! store buffer that has a store able to land ([`Event::Land`]). A [`Strategy`] picks
//! one; for a `Land` it then picks which of that buffer's landable stores lands
//! ([`Strategy::pick_store`]), and it picks the value of every load that may read one of
//! several writes ([`Strategy::value`]). The pull checker ([`crate::check()`]) drives
//! [`Pct`] through this trait; the push checker can adopt it the same way (its action
//! list is already `(block, None | Some(store))`).
//!
//! ## PCT on a weak memory model
//!
//! [`Pct`] is probabilistic concurrency testing (Burckhardt, Kothari, Musuvathi,
//! Nagarakatte, ASPLOS 2010): every virtual thread gets a distinct random priority, the
//! highest-priority enabled one always runs, and at `depth - 1` random steps the running
//! thread drops below every initial priority. A bug of depth `d` (`d` ordering
//! constraints between events) is found with probability at least `1 / (n k^(d-1))` per
//! run, `n` threads, `k` steps, whatever the interleavings elsewhere; in particular a
//! depth-1 bug ("this thread must lag behind the others") is found with probability
//! `>= 1/n` however many steps each thread takes — which a uniform random walk cannot do,
//! since the lag a walk builds up shrinks relative to the work as messages grow.
//!
//! Store landing is scheduled the same way: each block's store buffer is a virtual thread
//! of its own with its own priority (so `n` = 2 x blocks). A buffer above its block lands
//! each store as soon as it is issued (sequentially consistent behaviour); a buffer below
//! it keeps every store pending until the block waits, fences or ends its kernel, or the
//! buffer's priority is the highest left — that is what exposes stale reads and reordered
//! relaxed stores (a buffer lands its landable stores in random order, so a relaxed flag
//! can overtake the data before it). Buffers add no steps of their own to `k` beyond the
//! landings every schedule has anyway.

use crate::check::Rng;

/// Something that can happen now, per virtual thread (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Thread (block) `t` takes its next step.
    Step(usize),
    /// One of thread `t`'s pending stores lands (its store buffer acts).
    Land(usize),
}

impl Event {
    /// The virtual thread: `2t` for a block, `2t + 1` for its store buffer.
    pub fn vthread(self) -> usize {
        match self {
            Event::Step(t) => 2 * t,
            Event::Land(t) => 2 * t + 1,
        }
    }
}

/// A scheduling strategy: the choices a checker delegates.
pub trait Strategy {
    /// Picks one of `events` (non-empty, at most one per virtual thread); returns its
    /// index. Every call is one step of the schedule.
    fn pick(&mut self, events: &[Event]) -> usize;
    /// After a [`Event::Land`] was picked: which of that buffer's `n` landable stores
    /// (in program order) lands.
    fn pick_store(&mut self, n: usize) -> usize;
    /// Which of `n` allowed values a load reads (0 = the newest).
    fn value(&mut self, n: usize) -> usize;
}

/// The PCT strategy (see the module docs). One value per schedule.
#[derive(Clone, Debug)]
pub struct Pct {
    rng: Rng,
    /// Priority per virtual thread (higher runs first).
    prio: Vec<u32>,
    /// `(step, priority)` change points.
    change: Vec<(u64, u32)>,
    step: u64,
}

impl Pct {
    /// A schedule for `threads` blocks (so `2 * threads` virtual threads), bug depth
    /// `depth` (>= 1: `depth - 1` change points) and an expected `steps` per schedule
    /// (the change points are drawn from `1..=steps`), seeded by `seed`.
    pub fn new(seed: u64, threads: usize, depth: usize, steps: u64) -> Self {
        let mut rng = Rng::new(seed);
        let n = 2 * threads;
        let d = depth.max(1) as u32;
        // Fisher-Yates: initial priorities d..d+n-1.
        let mut prio: Vec<u32> = (0..n as u32).map(|i| d + i).collect();
        for i in (1..n).rev() {
            let j = rng.below(i + 1);
            prio.swap(i, j);
        }
        let change = (1..d)
            .map(|p| (1 + rng.below(steps.max(1) as usize) as u64, p))
            .collect();
        Pct {
            rng,
            prio,
            change,
            step: 0,
        }
    }

    /// The current priority of virtual thread `v` (0 when unknown).
    pub fn priority(&self, v: usize) -> u32 {
        self.prio.get(v).copied().unwrap_or(0)
    }
}

impl Strategy for Pct {
    fn pick(&mut self, events: &[Event]) -> usize {
        self.step += 1;
        let mut best = 0;
        let mut best_p = None;
        for (i, e) in events.iter().enumerate() {
            let p = self.priority(e.vthread());
            if best_p.is_none_or(|b| p > b) {
                best = i;
                best_p = Some(p);
            }
        }
        if let Some(e) = events.get(best) {
            let v = e.vthread();
            for &(at, p) in &self.change {
                if at == self.step {
                    if let Some(x) = self.prio.get_mut(v) {
                        *x = p;
                    }
                }
            }
        }
        best
    }

    fn pick_store(&mut self, n: usize) -> usize {
        self.rng.below(n)
    }

    fn value(&mut self, n: usize) -> usize {
        if n <= 1 || self.rng.below(2) == 0 {
            0
        } else {
            1 + self.rng.below(n - 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_priority_runs_and_change_points_demote() {
        let ev = [
            Event::Step(0),
            Event::Land(0),
            Event::Step(1),
            Event::Land(1),
        ];
        let mut p = Pct::new(3, 2, 1, 100);
        let first = p.pick(&ev);
        // Without change points the same thread keeps winning.
        for _ in 0..50 {
            assert_eq!(p.pick(&ev), first);
        }
        // Priorities are a permutation of depth..depth+n.
        let mut pr: Vec<u32> = (0..4).map(|v| p.priority(v)).collect();
        pr.sort_unstable();
        assert_eq!(pr, [1, 2, 3, 4]);
        // Depth 3 over 10 steps: two change points, each demotes the running thread
        // below every initial priority.
        let mut seen_demotion = false;
        for seed in 0..20 {
            let mut p = Pct::new(seed, 2, 3, 10);
            for _ in 0..10 {
                let i = p.pick(&ev);
                if p.priority(ev[i].vthread()) < 3 {
                    seen_demotion = true;
                }
            }
        }
        assert!(seen_demotion);
    }
}
