//! Scheduling: strategies over enabled events ([`Strategy`], [`Pct`]) and the chooser a
//! checker run consults at every step (`Chooser`: seeded random walk, PCT, adversarial,
//! exhaustive depth-first enumeration with `Dfs`, and replay of recorded decisions).
//!
//! A checker builds, at every step, the list of [`Event`]s that can happen now, one per
//! *virtual thread*: a block that can take its next step ([`Event::Step`]) and a block's
//! store buffer that has a store able to land ([`Event::Land`]). A [`Strategy`] picks
//! one; for a `Land` it then picks which of that buffer's landable stores lands
//! ([`Strategy::pick_store`]), and it picks the value of every load that may read one of
//! several writes ([`Strategy::value`]). The checker ([`crate::check()`], every protocol
//! family) drives [`Pct`] through this trait.
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

use crate::check::{Decision, RandomMode, Scheduler, Setup};

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

// ---------------------------------------------------------------- the checker's chooser

/// The chooser of schedule seed `s` under `cfg`'s scheduler (`pct_steps`: PCT's `k`).
pub(crate) fn chooser_for(cfg: &Setup, s: u64, dfs: &mut Dfs, pct_steps: u64) -> Chooser {
    match cfg.scheduler {
        Scheduler::Random => match cfg.random {
            RandomMode::Walk => Chooser::Random(Rng::new(s)),
            RandomMode::Pct { depth } => {
                let threads = cfg.world * cfg.blocks.iter().copied().max().unwrap_or(1);
                Chooser::Pct(Pct::new(s, threads, depth, pct_steps))
            }
        },
        Scheduler::Adversarial { slow_rank, stall } => Chooser::Adversarial {
            rng: Rng::new(s),
            slow_rank,
            stall,
        },
        Scheduler::Exhaustive { depth } => Chooser::Exhaustive {
            script: dfs.next_script(),
            pos: 0,
            depth,
            record: Vec::new(),
        },
    }
}

/// Depth-first enumeration of choice sequences.
#[derive(Default)]
pub(crate) struct Dfs {
    /// The choice sequence to replay next.
    next: Vec<usize>,
    started: bool,
}

impl Dfs {
    pub(crate) fn next_script(&mut self) -> Vec<usize> {
        self.started = true;
        self.next.clone()
    }
    /// `record` = (choice, options) of the run just done; false when exhausted.
    pub(crate) fn advance(&mut self, record: Vec<(usize, usize)>) -> bool {
        let mut rec = record;
        while let Some((c, n)) = rec.pop() {
            if c + 1 < n {
                let mut s: Vec<usize> = rec.iter().map(|&(c, _)| c).collect();
                s.push(c + 1);
                self.next = s;
                return true;
            }
        }
        false
    }
}

/// xorshift64* seeded through splitmix64.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// An action picked by a [`Chooser`]: a block, or the `j`-th landable store (program
/// order) of a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pick {
    Block(usize),
    Land(usize, usize),
}

/// The enabled actions of one step: blocks (thread ids) and, per thread with landable
/// stores, `(thread, how many)`. Flat index order: blocks, then each group's stores.
pub(crate) struct Menu<'m> {
    pub(crate) blocks: &'m [usize],
    pub(crate) groups: &'m [(usize, usize)],
}

impl Menu<'_> {
    pub(crate) fn len(&self) -> usize {
        self.blocks.len() + self.groups.iter().map(|g| g.1).sum::<usize>()
    }
    /// The action at flat index `i` (the first one when out of range).
    pub(crate) fn flat(&self, i: usize) -> Pick {
        if let Some(&b) = self.blocks.get(i) {
            return Pick::Block(b);
        }
        let mut j = i - self.blocks.len();
        for &(t, c) in self.groups {
            if j < c {
                return Pick::Land(t, j);
            }
            j -= c;
        }
        self.first()
    }
    pub(crate) fn first(&self) -> Pick {
        match (self.blocks.first(), self.groups.first()) {
            (Some(&b), _) => Pick::Block(b),
            (None, Some(&(t, _))) => Pick::Land(t, 0),
            (None, None) => Pick::Block(0),
        }
    }
}

pub(crate) enum Chooser {
    Random(Rng),
    /// PCT ([`crate::sched`]).
    Pct(Pct),
    Adversarial {
        rng: Rng,
        slow_rank: usize,
        stall: Option<(usize, usize)>,
    },
    Exhaustive {
        script: Vec<usize>,
        pos: usize,
        depth: usize,
        record: Vec<(usize, usize)>,
    },
    /// Feeds back recorded [`Decision`]s (actions are matched by the run itself).
    Replay {
        script: Vec<Decision>,
        pos: usize,
    },
}

impl Chooser {
    fn exhaustive(
        script: &[usize],
        pos: &mut usize,
        depth: usize,
        record: &mut Vec<(usize, usize)>,
        n: usize,
    ) -> usize {
        let i = *pos;
        *pos += 1;
        if i >= depth {
            return 0;
        }
        let c = script.get(i).copied().unwrap_or(0).min(n.saturating_sub(1));
        record.push((c, n.max(1)));
        c
    }

    /// Picks an action of `menu` (non-empty); `g` = blocks per rank (thread t is block
    /// t % g of rank t / g); `events` is a reusable buffer.
    pub(crate) fn choose(&mut self, menu: &Menu, g: usize, events: &mut Vec<Event>) -> Pick {
        match self {
            Chooser::Random(rng) => menu.flat(rng.below(menu.len())),
            Chooser::Pct(pct) => {
                events.clear();
                events.extend(menu.blocks.iter().map(|&b| Event::Step(b)));
                events.extend(menu.groups.iter().map(|&(t, _)| Event::Land(t)));
                match events.get(pct.pick(events)) {
                    Some(&Event::Step(b)) => Pick::Block(b),
                    Some(&Event::Land(t)) => {
                        let n = menu.groups.iter().find(|x| x.0 == t).map_or(1, |x| x.1);
                        Pick::Land(t, pct.pick_store(n))
                    }
                    None => menu.first(),
                }
            }
            Chooser::Adversarial {
                rng,
                slow_rank,
                stall,
            } => {
                // Blocks are fast unless on the slow rank or the stalled block; stores
                // are fast unless the slow rank's.
                let fast_block = |b: usize| b / g != *slow_rank && *stall != Some((b / g, b % g));
                let fast_group = |t: usize| t / g != *slow_rank;
                let fb = menu.blocks.iter().filter(|&&b| fast_block(b)).count();
                let fl: usize = menu
                    .groups
                    .iter()
                    .filter(|x| fast_group(x.0))
                    .map(|x| x.1)
                    .sum();
                if fb + fl == 0 {
                    return menu.flat(rng.below(menu.len()));
                }
                let k = rng.below(fb + fl);
                if k < fb {
                    let b = menu.blocks.iter().filter(|&&b| fast_block(b)).nth(k);
                    return b.map_or(menu.first(), |&b| Pick::Block(b));
                }
                let mut j = k - fb;
                for &(t, c) in menu.groups.iter().filter(|x| fast_group(x.0)) {
                    if j < c {
                        return Pick::Land(t, j);
                    }
                    j -= c;
                }
                menu.first()
            }
            Chooser::Exhaustive {
                script,
                pos,
                depth,
                record,
            } => menu.flat(Self::exhaustive(script, pos, *depth, record, menu.len())),
            // Replay picks are made by `replay_pick`; this is its fallback.
            Chooser::Replay { .. } => menu.first(),
        }
    }

    /// Picks a load value: 0 = newest.
    pub(crate) fn value(&mut self, n: usize) -> usize {
        match self {
            Chooser::Random(rng) => {
                if n <= 1 || rng.below(2) == 0 {
                    0
                } else {
                    1 + rng.below(n - 1)
                }
            }
            Chooser::Adversarial { .. } => 0,
            Chooser::Pct(p) => p.value(n),
            Chooser::Exhaustive {
                script,
                pos,
                depth,
                record,
            } => Self::exhaustive(script, pos, *depth, record, n),
            Chooser::Replay { script, pos } => {
                if n <= 1 {
                    return 0;
                }
                match script.get(*pos) {
                    Some(Decision::Value(p)) => {
                        *pos += 1;
                        (*p).min(n - 1)
                    }
                    _ => 0,
                }
            }
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
