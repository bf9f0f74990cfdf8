//! Reading and setting a quiescent rank's device state for tests: the epoch words
//! (PROTOCOL.md "Wrap") and the lines region's words (PROTOCOL.md "two-shot of lines").

use super::PeerBuffers;
use crate::error::{drv, Result};
use crate::proto::{PadLayout, MAX_BLOCKS, MAX_RANKS};
use crate::sys;
use inc_proto::push::PushLayout;

impl PeerBuffers {
    /// This rank's completed epoch (number of finished calls), read from the device pad
    /// (block 0's word: after a call every block's word holds its epoch).
    pub fn epoch(&self) -> Result<u32> {
        self.ctx.bind_to_thread().map_err(drv("cuCtxSetCurrent"))?;
        let mut b = [0u8; 4];
        // SAFETY: the epoch word is inside our pad.
        unsafe { sys::copy_dtoh(&mut b, self.base + PadLayout::epoch(0) as u64) }
            .map_err(drv("cuMemcpyDtoH"))?;
        Ok(u32::from_le_bytes(b))
    }

    /// The lines region's words as the device holds them (PROTOCOL.md "two-shot of lines"):
    /// `(header words hdr[2][MAX_RANKS], flag words of both parities that are not 0)`, for
    /// tests of the clear rule (after every call every flag word is 0). The rank must be
    /// quiescent.
    pub fn lines_words(&self) -> Result<(Vec<u64>, usize)> {
        use inc_proto::lines::{LinesLayout, FLAG_WORD, LINE};
        self.ctx.bind_to_thread().map_err(drv("cuCtxSetCurrent"))?;
        let slot = self.push_slot_bytes as usize;
        let mut b = vec![0u8; LinesLayout::region_bytes(slot)];
        let base = self.push_ptr() + PushLayout::region_bytes(slot) as u64;
        // SAFETY: the lines region lies inside our allocation, after the push region.
        unsafe { sys::copy_dtoh(&mut b, base) }.map_err(drv("cuMemcpyDtoH"))?;
        let word = |off: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[off..off + 8]);
            u64::from_le_bytes(w)
        };
        let hdr = (0..2 * MAX_RANKS).map(|i| word(8 * i)).collect();
        let set = (LinesLayout::HEADER_BYTES..b.len())
            .step_by(LINE)
            .filter(|&l| word(l + 8 * FLAG_WORD) != 0)
            .count();
        Ok((hdr, set))
    }

    /// Sets every block's epoch word of this rank to `e`, as if calls up to epoch `e` had
    /// completed: for tests of the epoch's wrap (PROTOCOL.md "Wrap"). Every rank must be
    /// quiescent and get the same `e`, or its next call fails (SEQ_MISMATCH or a timeout).
    pub fn set_epoch(&self, e: u32) -> Result<()> {
        self.ctx.bind_to_thread().map_err(drv("cuCtxSetCurrent"))?;
        let words: Vec<u8> = (0..MAX_BLOCKS).flat_map(|_| e.to_le_bytes()).collect();
        // SAFETY: the MAX_BLOCKS epoch words are contiguous inside our pad.
        unsafe { sys::copy_htod(self.base + PadLayout::epoch(0) as u64, &words) }
            .map_err(drv("cuMemcpyHtoD"))
    }
}
