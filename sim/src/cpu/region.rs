//! One rank's memory (signal pad + two parity halves of data + the push region + the
//! lines region), in process or in POSIX shared memory.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use memmap2::MmapMut;

use inc_proto::lines::LinesLayout;

use crate::error::SimError;
use crate::push::PushLayout;
use crate::types::{PadLayout, CHUNK_BYTES};

/// Size of a [`Region`]: the pad, two data halves of `half_bytes` each, then the push
/// one-shot region ([`PushLayout`]) with `push_slot_bytes` per slot, then the two-shot's
/// lines region ([`LinesLayout`], sized from the same slot: PROTOCOL.md "two-shot of
/// lines").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionLayout {
    /// Bytes of one parity half (a multiple of 16).
    pub half_bytes: usize,
    /// Bytes of one push slot (a multiple of 32; twice the largest push call, since every
    /// 4 data bytes travel with a 4-byte tag).
    pub push_slot_bytes: usize,
}

/// Push slot bytes of [`RegionLayout::new`] on the CPU backend (128 KiB: push calls of up
/// to 64 KiB; smaller than the GPU default [`crate::push::DEFAULT_PUSH_SLOT_BYTES`] to keep
/// the shared-memory regions small).
pub const CPU_PUSH_SLOT_BYTES: usize = 128 << 10;

impl RegionLayout {
    /// A layout whose halves hold `half_bytes` (rounded up to 16 bytes), with push slots of
    /// [`CPU_PUSH_SLOT_BYTES`].
    pub fn new(half_bytes: usize) -> Self {
        Self::with_push(half_bytes, CPU_PUSH_SLOT_BYTES)
    }
    /// A layout with explicit push slot bytes (rounded up to 32; a slot carries half of it
    /// as payload; 0 disables push calls).
    pub fn with_push(half_bytes: usize, push_slot_bytes: usize) -> Self {
        RegionLayout {
            half_bytes: half_bytes.div_ceil(CHUNK_BYTES) * CHUNK_BYTES,
            push_slot_bytes: PushLayout::round_slot(push_slot_bytes),
        }
    }
    /// Total bytes of the region.
    pub fn total_bytes(&self) -> usize {
        self.lines_offset() + LinesLayout::region_bytes(self.push_slot_bytes)
    }
    /// Byte offset of the lines region (right after the push region; a multiple of 8).
    pub fn lines_offset(&self) -> usize {
        self.push_offset() + PushLayout::region_bytes(self.push_slot_bytes)
    }
    /// Byte offset of the push region.
    pub fn push_offset(&self) -> usize {
        PadLayout::PAD_BYTES + 2 * self.half_bytes
    }
    /// Byte offset of parity half `parity` (0 or 1) in the region.
    pub fn half_offset(&self, parity: usize) -> usize {
        PadLayout::PAD_BYTES + (parity & 1) * self.half_bytes
    }
}

enum Backing {
    /// Kept alive for `base`; never read directly.
    Local(#[allow(dead_code)] Box<[AtomicU64]>),
    Shm {
        /// Kept alive for `base`.
        #[allow(dead_code)]
        map: MmapMut,
        path: PathBuf,
        owner: bool,
    },
}

/// One rank's pad + data, shared by every rank (threads or processes). All accesses go
/// through atomics, so concurrent use from many threads/processes is sound.
pub struct Region {
    base: NonNull<u8>,
    len: usize,
    layout: RegionLayout,
    backing: Backing,
}

// SAFETY: the region's memory is only accessed through `AtomicU32`/`AtomicU64`
// references (see `u32_at`/`u64_at`), so sharing it between threads is data-race free;
// the backing allocation/mapping lives as long as the Region.
unsafe impl Send for Region {}
// SAFETY: as above, every access is atomic.
unsafe impl Sync for Region {}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.backing {
            Backing::Local(_) => "local".to_string(),
            Backing::Shm { path, .. } => path.display().to_string(),
        };
        f.debug_struct("Region")
            .field("len", &self.len)
            .field("backing", &kind)
            .finish()
    }
}

fn shm_path(name: &str) -> Result<PathBuf, SimError> {
    if name.is_empty() || name.contains('/') || name.contains('\0') || name.len() > 200 {
        return Err(SimError::Config(format!(
            "shared memory name {name:?} must be 1..200 chars without '/'"
        )));
    }
    Ok(PathBuf::from("/dev/shm").join(name))
}

impl Region {
    /// A zeroed in-process region (the push and lines regions too: tag 0 is never a live
    /// epoch).
    pub fn new_local(layout: RegionLayout) -> Self {
        let words = layout.total_bytes() / 8;
        let mem: Box<[AtomicU64]> = (0..words).map(|_| AtomicU64::new(0)).collect();
        let base = NonNull::from(&*mem).cast::<u8>();
        Region {
            base,
            len: words * 8,
            layout,
            backing: Backing::Local(mem),
        }
    }

    /// Creates `/dev/shm/<name>` (must not exist), zeroed, of the layout's size; the file
    /// is unlinked when this Region is dropped.
    pub fn create_shm(name: &str, layout: RegionLayout) -> Result<Self, SimError> {
        let path = shm_path(name)?;
        let err = |source| SimError::Shm {
            path: path.display().to_string(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(err)?;
        let res = file
            .set_len(layout.total_bytes() as u64)
            .and_then(|()| map_file(&file));
        match res {
            // A new file reads as zeros: the pad, the push and the lines regions need
            // nothing else.
            Ok(map) => Self::from_map(map, path, true, layout),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(err(e))
            }
        }
    }

    /// Opens a region another process created; its size must match `layout`.
    pub fn open_shm(name: &str, layout: RegionLayout) -> Result<Self, SimError> {
        let path = shm_path(name)?;
        let err = |source| SimError::Shm {
            path: path.display().to_string(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        if len != layout.total_bytes() as u64 {
            return Err(SimError::Config(format!(
                "shared memory {} has {len} bytes, expected {}",
                path.display(),
                layout.total_bytes()
            )));
        }
        let map = map_file(&file).map_err(err)?;
        Self::from_map(map, path, false, layout)
    }

    fn from_map(
        mut map: MmapMut,
        path: PathBuf,
        owner: bool,
        layout: RegionLayout,
    ) -> Result<Self, SimError> {
        let len = map.len();
        let base = NonNull::new(map.as_mut_ptr())
            .ok_or_else(|| SimError::Config(format!("mapping {} returned null", path.display())))?;
        if base.as_ptr().align_offset(8) != 0 || len < layout.total_bytes() {
            return Err(SimError::Config(format!(
                "mapping {} is misaligned or short",
                path.display()
            )));
        }
        Ok(Region {
            base,
            len,
            layout,
            backing: Backing::Shm { map, path, owner },
        })
    }

    /// The layout.
    pub fn layout(&self) -> RegionLayout {
        self.layout
    }

    /// The atomic u32 at byte offset `off` (4-aligned, in range).
    pub fn u32_at(&self, off: usize) -> Result<&AtomicU32, SimError> {
        if off % 4 != 0 || off.checked_add(4).is_none_or(|end| end > self.len) {
            return Err(SimError::Config(format!("u32 offset {off} out of region")));
        }
        // SAFETY: `off` is in bounds and 4-aligned (base is 8-aligned), the memory lives as
        // long as `self`, and it is only ever accessed atomically.
        Ok(unsafe { &*(self.base.as_ptr().add(off) as *const AtomicU32) })
    }

    /// The atomic u64 at byte offset `off` (8-aligned, in range).
    pub fn u64_at(&self, off: usize) -> Result<&AtomicU64, SimError> {
        if off % 8 != 0 || off.checked_add(8).is_none_or(|end| end > self.len) {
            return Err(SimError::Config(format!("u64 offset {off} out of region")));
        }
        // SAFETY: `off` is in bounds and 8-aligned (base is 8-aligned), the memory lives as
        // long as `self`, and it is only ever accessed atomically.
        Ok(unsafe { &*(self.base.as_ptr().add(off) as *const AtomicU64) })
    }

    /// Byte range of the data area (both parity halves): where a zero-copy call's
    /// symmetric tensor lives ([`crate::cpu::CpuRank::allreduce_symmetric`]).
    pub fn data_range(&self) -> std::ops::Range<usize> {
        self.layout.half_offset(0)..self.layout.push_offset()
    }

    /// Writes `data` at byte offset `off` (any alignment, in range) as relaxed atomic
    /// 4-byte words; a word only partly covered is merged by compare-exchange, so the
    /// bytes around the range are left as they are.
    pub fn write_bytes(&self, off: usize, data: &[u8]) -> Result<(), SimError> {
        self.check_range(off, data.len())?;
        let end = off + data.len();
        let mut w = off / 4 * 4;
        while w < end {
            let a = self.u32_at(w)?;
            let (lo, hi) = (off.max(w), end.min(w + 4));
            if lo == w && hi == w + 4 {
                let b = &data[w - off..w - off + 4];
                a.store(
                    u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
                    Ordering::Relaxed,
                );
            } else {
                let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                    let mut bytes = old.to_ne_bytes();
                    bytes[lo - w..hi - w].copy_from_slice(&data[lo - off..hi - off]);
                    Some(u32::from_ne_bytes(bytes))
                });
            }
            w += 4;
        }
        Ok(())
    }

    /// Reads `out.len()` bytes at byte offset `off` (any alignment, in range) as relaxed
    /// atomic 4-byte words.
    pub fn read_bytes(&self, off: usize, out: &mut [u8]) -> Result<(), SimError> {
        self.check_range(off, out.len())?;
        let end = off + out.len();
        let mut w = off / 4 * 4;
        while w < end {
            let bytes = self.u32_at(w)?.load(Ordering::Relaxed).to_ne_bytes();
            let (lo, hi) = (off.max(w), end.min(w + 4));
            out[lo - off..hi - off].copy_from_slice(&bytes[lo - w..hi - w]);
            w += 4;
        }
        Ok(())
    }

    fn check_range(&self, off: usize, len: usize) -> Result<(), SimError> {
        if off.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(SimError::Config(format!(
                "bytes {off}..{off}+{len} out of the {}-byte region",
                self.len
            )));
        }
        Ok(())
    }
}

fn map_file(file: &std::fs::File) -> std::io::Result<MmapMut> {
    // SAFETY: the file is a shared-memory object of the inc protocol; every process maps
    // it shared and only touches it through atomics (Region::u32_at/u64_at), so
    // concurrent modification by other processes is not undefined behaviour here.
    unsafe { MmapMut::map_mut(file) }
}

impl Drop for Region {
    fn drop(&mut self) {
        if let Backing::Shm {
            path, owner: true, ..
        } = &self.backing
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_access_at_any_alignment_leaves_neighbours_alone() {
        let r = Region::new_local(RegionLayout::new(64));
        let base = r.data_range().start;
        r.write_bytes(base, &[0xff; 16]).unwrap();
        r.write_bytes(base + 3, &[1, 2, 3, 4, 5, 6]).unwrap();
        let mut out = [0u8; 16];
        r.read_bytes(base, &mut out).unwrap();
        assert_eq!(
            out,
            [0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        let mut two = [0u8; 2];
        r.read_bytes(base + 5, &mut two).unwrap();
        assert_eq!(two, [3, 4]);
        let end = r.layout().total_bytes();
        assert!(r.write_bytes(end - 2, &[0; 4]).is_err());
        assert!(r.read_bytes(usize::MAX, &mut two).is_err());
        assert_eq!(r.data_range().end - r.data_range().start, 128);
    }

    #[test]
    fn local_region_bounds() {
        let r = Region::new_local(RegionLayout::new(100));
        assert_eq!(r.layout().half_bytes, 112);
        assert!(r.u64_at(PadLayout::PAD_BYTES).is_ok());
        assert!(r.u64_at(r.layout().total_bytes()).is_err());
        assert!(r.u64_at(4).is_err());
        assert!(r.u32_at(4).is_ok());
        r.u32_at(8).unwrap().store(5, Ordering::Relaxed);
        assert_eq!(
            r.u64_at(8).unwrap().load(Ordering::Relaxed) & 0xffff_ffff,
            5
        );
    }

    #[test]
    fn the_lines_region_follows_the_push_region_zeroed() {
        let l = RegionLayout::with_push(100, 1024);
        assert_eq!(
            l.lines_offset(),
            l.push_offset() + PushLayout::region_bytes(1024)
        );
        assert_eq!(
            l.total_bytes(),
            l.lines_offset() + LinesLayout::region_bytes(1024)
        );
        assert_eq!(l.lines_offset() % 8, 0);
        let r = Region::new_local(l);
        for off in (l.lines_offset()..l.total_bytes()).step_by(8) {
            assert_eq!(r.u64_at(off).unwrap().load(Ordering::Relaxed), 0);
        }
    }

    #[test]
    fn shm_create_open_validate() {
        let name = format!("inc-sim-test-{}", std::process::id());
        let layout = RegionLayout::new(256);
        let a = Region::create_shm(&name, layout).unwrap();
        assert!(Region::create_shm(&name, layout).is_err());
        let b = Region::open_shm(&name, layout).unwrap();
        a.u64_at(PadLayout::START)
            .unwrap()
            .store(42, Ordering::Release);
        assert_eq!(
            b.u64_at(PadLayout::START).unwrap().load(Ordering::Acquire),
            42
        );
        assert!(Region::open_shm(&name, RegionLayout::new(512)).is_err());
        assert!(Region::open_shm("bad/name", layout).is_err());
        drop(b);
        drop(a);
        assert!(Region::open_shm(&name, layout).is_err());
    }
}
