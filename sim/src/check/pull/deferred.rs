//! The deferred gather of the copy-in two-shot in pieces ([`SimConfig::deferred_gather`],
//! PROTOCOL.md "Deferred gather"): call k+1's GatherPrev reads call k's gather area in the
//! other parity half, and call k's output is read from it when its kernel completes.
//!
//! [`SimConfig::deferred_gather`]: crate::SimConfig::deferred_gather

use super::{g_off, Pull};
use crate::check::engine::Run;
use crate::check::oracle::{tag, WHAT_REDUCED};
use crate::check::Weakening;
use inc_proto::areas::area_index;

impl Run<Pull<'_>> {
    /// The parity half of the call that ran with epoch `e` (half 0 without rotation).
    fn half_of_epoch(&self, e: u32) -> usize {
        if self.fam.cfg.weaken == Some(Weakening::NoRotation) {
            0
        } else {
            (e % 2) as usize
        }
    }

    /// GatherPrev, one chunk per action: for my chunks c (this call's grid-stride
    /// partition) of every slice q != r of the previous call (its count and slice length),
    /// read my own `G[c]` of the previous call's half, which must hold the owner's reduced
    /// chunk of that call. The kernel writes it into the previous call's output; here that
    /// output was already read when the previous kernel completed (`read_deferred_output`),
    /// and a load with the same tag reads the same store, so only the tag is checked.
    /// Nothing to do in call 0.
    pub(super) fn gather_prev(&mut self, i: usize) {
        let r = i / self.max_g;
        let k = self.ranks[r].call;
        let Some(prev) = k.checked_sub(1) else {
            return self.next_step(i);
        };
        let w = self.set.world;
        let chunks = self.fam.count(r, prev).1;
        let s = chunks.div_ceil(w).max(1);
        let Some(c) = self.next_chunk_in(i, chunks, |c| c / s != r) else {
            return self.next_step(i);
        };
        let q = (c / s).min(w - 1);
        let half = if self.fam.cfg.weaken == Some(Weakening::GatherPrevSameParity) {
            self.data_parity(r)
        } else {
            self.half_of_epoch(self.epoch_of(r).wrapping_sub(1))
        };
        let loc = self
            .fam
            .half_loc(r, half, g_off(w, s, area_index(q, r), c - q * s));
        let want = tag(q, prev, WHAT_REDUCED);
        let place = format!("own G[{c}] of call {prev} (half {half})");
        self.read_loc(i, loc, q, want, "GatherPrev", &place);
    }

    /// A deferred call's kernel completed: rank r's output of the other slices is read
    /// from its own gather area of the call's half by a reader ordered after every block
    /// (the earliest point the copy could run; the next call's GatherPrev is the latest),
    /// so the oracle sees the whole output.
    pub(super) fn read_deferred_output(&mut self, r: usize) {
        let t0 = self.after_kernel(r);
        let k = self.ranks[r].call;
        let chunks = self.fam.count(r, k).1;
        let s = self.slice_len(r);
        let w = self.set.world;
        // The call's last epilogue advanced the epoch word to the call's own epoch.
        let half = self.half_of_epoch(self.ranks[r].epoch);
        for c in (0..chunks).filter(|&c| c / s != r) {
            let owner = (c / s).min(w - 1);
            let want = tag(owner, k, WHAT_REDUCED);
            let loc = self
                .fam
                .half_loc(r, half, g_off(w, s, area_index(owner, r), c - owner * s));
            let place = format!("own G[{c}] (half {half})");
            let v = self.read_loc(
                t0,
                loc,
                owner,
                want,
                "Gather (deferred, at kernel end)",
                &place,
            );
            self.set_out(r, c, v);
            if self.stop {
                return;
            }
        }
    }
}
