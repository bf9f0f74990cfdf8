//! How a run picks its next action and load value: seeded random walk, PCT, adversarial,
//! exhaustive depth-first enumeration ([`Dfs`]) and replay of recorded decisions.

use super::{Decision, RandomMode, Scheduler, SimConfig};
use crate::sched::{Event as SchedEvent, Pct, Strategy};

/// The chooser of schedule seed `s` under `cfg`'s scheduler (`pct_steps`: PCT's `k`).
pub(super) fn chooser_for(cfg: &SimConfig, s: u64, dfs: &mut Dfs, pct_steps: u64) -> Chooser {
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
pub(super) struct Dfs {
    /// The choice sequence to replay next.
    next: Vec<usize>,
    started: bool,
}

impl Dfs {
    pub(super) fn next_script(&mut self) -> Vec<usize> {
        self.started = true;
        self.next.clone()
    }
    /// `record` = (choice, options) of the run just done; false when exhausted.
    pub(super) fn advance(&mut self, record: Vec<(usize, usize)>) -> bool {
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

/// xorshift64* seeded through splitmix64 (shared with the push checker).
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
pub(super) enum Pick {
    Block(usize),
    Land(usize, usize),
}

/// The enabled actions of one step: blocks (thread ids) and, per thread with landable
/// stores, `(thread, how many)`. Flat index order: blocks, then each group's stores.
pub(super) struct Menu<'m> {
    pub(super) blocks: &'m [usize],
    pub(super) groups: &'m [(usize, usize)],
}

impl Menu<'_> {
    pub(super) fn len(&self) -> usize {
        self.blocks.len() + self.groups.iter().map(|g| g.1).sum::<usize>()
    }
    /// The action at flat index `i` (the first one when out of range).
    pub(super) fn flat(&self, i: usize) -> Pick {
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
    pub(super) fn first(&self) -> Pick {
        match (self.blocks.first(), self.groups.first()) {
            (Some(&b), _) => Pick::Block(b),
            (None, Some(&(t, _))) => Pick::Land(t, 0),
            (None, None) => Pick::Block(0),
        }
    }
}

pub(super) enum Chooser {
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
    pub(super) fn choose(&mut self, menu: &Menu, g: usize, events: &mut Vec<SchedEvent>) -> Pick {
        match self {
            Chooser::Random(rng) => menu.flat(rng.below(menu.len())),
            Chooser::Pct(pct) => {
                events.clear();
                events.extend(menu.blocks.iter().map(|&b| SchedEvent::Step(b)));
                events.extend(menu.groups.iter().map(|&(t, _)| SchedEvent::Land(t)));
                match events.get(pct.pick(events)) {
                    Some(&SchedEvent::Step(b)) => Pick::Block(b),
                    Some(&SchedEvent::Land(t)) => {
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
    pub(super) fn value(&mut self, n: usize) -> usize {
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
