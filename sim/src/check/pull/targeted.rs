//! Targeted barriers of the copy-in two-shot (PROTOCOL.md "Targeted barriers", proposed,
//! [`crate::SimConfig::targeted_barriers`]): which peers a block signals and waits for at
//! the start and mid barriers, from the owners of its chunks.

use super::Pull;
use crate::check::engine::Run;
use crate::types::BarrierKind;

impl Run<Pull<'_>> {
    /// Bit mask of the ranks whose slices hold a chunk of block b in rank r's current call
    /// (the two-shot's owners of b; PROTOCOL.md "Targeted barriers").
    fn owners(&self, r: usize, b: usize) -> u32 {
        let k = self.ranks.get(r).map_or(0, |st| st.call);
        let chunks = self.fam.count(r, k).1;
        let s = self.slice_len(r);
        let mut m = 0u32;
        let mut idx = 0;
        while let Some(c) = self.nth_chunk_in(r, b, idx, chunks) {
            m |= 1u32 << (c / s).min(31);
            idx += 1;
        }
        m
    }

    /// The `idx`-th peer block b of rank r signals (`waiting` false) or waits for (true) at
    /// a barrier of `kind` over `set`: `set`'s members, or with
    /// [`crate::SimConfig::targeted_barriers`] at the start and mid barriers only the ranks
    /// whose data moves between the two (PROTOCOL.md "Targeted barriers").
    pub(super) fn barrier_peer(
        &self,
        r: usize,
        b: usize,
        kind: BarrierKind,
        set: crate::program::PeerSet,
        waiting: bool,
        idx: usize,
    ) -> Option<usize> {
        if !self.fam.cfg.targeted_barriers || kind == BarrierKind::End {
            return self.fam.nth_member(r, set, idx);
        }
        let me = 1u32 << r;
        let own = self.owners(r, b);
        let others = ((1u32 << self.set.world) - 1) & !me;
        let all_if_owner = if own & me != 0 { others } else { 0 };
        let mut m = match (kind, waiting) {
            // start: writers signal the owners; an owner waits for every writer
            (BarrierKind::Start, false) | (BarrierKind::Mid, true) => own & !me,
            // mid: an owner signals every reader; a reader waits for the owners
            _ => all_if_owner,
        };
        for _ in 0..idx {
            if m == 0 {
                return None;
            }
            m &= m - 1;
        }
        (m != 0).then(|| m.trailing_zeros() as usize)
    }
}
