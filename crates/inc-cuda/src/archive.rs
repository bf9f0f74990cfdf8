//! The CUBIN archive format of `kernels/cubin/` (precompiled kernels embedded in the
//! binary, see [`crate::embedded`]): one file per GPU architecture holding a text manifest
//! and (key, CUBIN) entries. The images are stored in a few zstd frames (one per algorithm:
//! the instances of one algorithm differ little, so a frame of 12 packs ~25x while one
//! instance alone packs ~7x), so that a process unpacks only the frames of the instances it
//! uses. Written by `cargo xtask cubins`, read at run time (pure-Rust zstd decoder).
//!
//! Layout (integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `INCCUBA1` |
//! | 4 | format version ([`FORMAT_VERSION`]) |
//! | 4 | manifest length M |
//! | M | manifest: UTF-8 `name=value` lines (`arch`, `nvrtc`, `options`, ...) |
//! | 4 | frame count F |
//! | | F frames, each: |
//! | 4 | packed length C |
//! | 4 | unpacked length R (at most [`MAX_FRAME`]) |
//! | C | one zstd frame of the R bytes: its entries' images back to back |
//! | 4 | entry count N |
//! | | N entries, each: |
//! | 4 | key length K |
//! | K | key (UTF-8; see [`crate::source::Program::key`]) |
//! | 4 | frame index |
//! | 4 | offset of the image in the unpacked frame |
//! | 4 | image length P |
//! | 8 | FNV-1a 64 of key, P (as u64) and image |
//!
//! Nothing may follow the last entry. [`Archive::parse`] checks the structure (every entry
//! inside its frame, no empty image, no duplicate key: microseconds); a frame is unpacked
//! at the first [`Archive::get`] of one of its entries (its length must be exactly R) and
//! kept; the entry's checksum is checked before its image is handed out, so a damaged
//! archive never reaches the driver. Any defect is an error string, never a panic.

use std::io::Read;
use std::sync::OnceLock;

use crate::source::fnv64;

/// First bytes of every archive.
pub const MAGIC: [u8; 8] = *b"INCCUBA1";
/// Version of the layout above.
pub const FORMAT_VERSION: u32 = 1;
/// Largest unpacked frame a reader accepts.
pub const MAX_FRAME: usize = 64 << 20;
/// Largest manifest, key, frame count or entry count a reader accepts (a corrupt length
/// cannot make it reserve absurd memory).
const MAX_SMALL: usize = 1 << 16;

/// One entry of a parsed archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The program key it was compiled for.
    pub key: &'a str,
    frame: usize,
    offset: usize,
    len: usize,
    sum: u64,
}

impl Entry<'_> {
    /// Image length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the image is empty (never, in a parsed archive).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One packed frame and, once unpacked, its bytes.
struct Frame<'a> {
    packed: &'a [u8],
    raw_len: usize,
    raw: OnceLock<Result<Vec<u8>, String>>,
}

impl std::fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("packed", &self.packed.len())
            .field("raw_len", &self.raw_len)
            .field("unpacked", &self.raw.get().map(|r| r.is_ok()))
            .finish()
    }
}

/// A parsed archive borrowing the archive bytes; frames are unpacked on demand.
#[derive(Debug)]
pub struct Archive<'a> {
    /// The manifest text.
    pub manifest: &'a str,
    frames: Vec<Frame<'a>>,
    entries: Vec<Entry<'a>>,
}

fn checksum(key: &[u8], image: &[u8]) -> u64 {
    let mut buf = Vec::with_capacity(key.len() + 8 + image.len());
    buf.extend_from_slice(key);
    buf.extend_from_slice(&(image.len() as u64).to_le_bytes());
    buf.extend_from_slice(image);
    fnv64(&buf)
}

fn put_u32(out: &mut Vec<u8>, n: usize, what: &str) -> Result<(), String> {
    let v = u32::try_from(n).map_err(|_| format!("{what} {n} is too large"))?;
    out.extend_from_slice(&v.to_le_bytes());
    Ok(())
}

/// A compressor of one frame: bytes in, one zstd frame out.
pub type Pack<'f> = &'f dyn Fn(&[u8]) -> Result<Vec<u8>, String>;

/// The bytes of an archive with `manifest` and `frames` of (key, CUBIN) entries, each frame
/// packed by `pack` (a zstd compressor; `cargo xtask cubins` uses libzstd at level 19).
/// Fails on an empty or duplicate key, an empty image or a size the format cannot hold.
pub fn encode(
    manifest: &str,
    frames: &[Vec<(String, Vec<u8>)>],
    pack: Pack<'_>,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    if manifest.len() > MAX_SMALL || frames.len() > MAX_SMALL {
        return Err("manifest or frame count too large".into());
    }
    put_u32(&mut out, manifest.len(), "manifest length")?;
    out.extend_from_slice(manifest.as_bytes());
    put_u32(&mut out, frames.len(), "frame count")?;
    let mut index = Vec::new();
    let mut count = 0usize;
    let mut seen = std::collections::HashSet::new();
    for (f, entries) in frames.iter().enumerate() {
        let mut raw = Vec::new();
        for (key, image) in entries {
            if key.is_empty() || key.len() > MAX_SMALL || !seen.insert(key.as_str()) {
                return Err(format!("bad or duplicate key {key:?}"));
            }
            if image.is_empty() {
                return Err(format!("empty image for {key}"));
            }
            put_u32(&mut index, key.len(), "key length")?;
            index.extend_from_slice(key.as_bytes());
            put_u32(&mut index, f, "frame index")?;
            put_u32(&mut index, raw.len(), "offset")?;
            put_u32(&mut index, image.len(), "image length")?;
            index.extend_from_slice(&checksum(key.as_bytes(), image).to_le_bytes());
            raw.extend_from_slice(image);
            count += 1;
        }
        if raw.len() > MAX_FRAME {
            return Err(format!("frame {f} of {} bytes is too large", raw.len()));
        }
        let packed = pack(&raw)?;
        put_u32(&mut out, packed.len(), "packed length")?;
        put_u32(&mut out, raw.len(), "frame length")?;
        out.extend_from_slice(&packed);
    }
    if count > MAX_SMALL {
        return Err("too many entries".into());
    }
    put_u32(&mut out, count, "entry count")?;
    out.extend_from_slice(&index);
    Ok(out)
}

/// Split `n` bytes off the front of `b`.
fn take<'a>(b: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], String> {
    if b.len() < n {
        return Err(format!("truncated in {what}"));
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

/// A u32 field, at most `max`.
fn u32_at(b: &mut &[u8], what: &str, max: usize) -> Result<usize, String> {
    let s = take(b, 4, what)?;
    let mut w = [0u8; 4];
    w.copy_from_slice(s);
    let v = usize::try_from(u32::from_le_bytes(w)).map_err(|_| format!("{what} out of range"))?;
    if v > max {
        return Err(format!("{what} {v} exceeds {max}"));
    }
    Ok(v)
}

fn u64_at(b: &mut &[u8], what: &str) -> Result<u64, String> {
    let s = take(b, 8, what)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(s);
    Ok(u64::from_le_bytes(w))
}

/// Unpack one zstd frame that must hold exactly `raw_len` bytes. A panic of the decoder
/// on hostile bytes is caught and reported as an error.
fn unpack(packed: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    let run = || -> Result<Vec<u8>, String> {
        let d = ruzstd::decoding::StreamingDecoder::new(packed)
            .map_err(|e| format!("bad zstd frame: {e}"))?;
        let mut out = Vec::with_capacity(raw_len);
        d.take(raw_len as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("zstd: {e}"))?;
        if out.len() != raw_len {
            return Err(format!(
                "frame unpacks to {} bytes, expected {raw_len}",
                out.len()
            ));
        }
        Ok(out)
    };
    std::panic::catch_unwind(run).unwrap_or_else(|_| Err("zstd decoder panicked".into()))
}

impl<'a> Archive<'a> {
    /// Parse the structure of `bytes` (magic, version, manifest, frames, every entry's key
    /// and place, nothing trailing, no empty image, no duplicate key). Frames are unpacked
    /// and entry checksums checked by [`Archive::get`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, String> {
        let mut b = bytes;
        if take(&mut b, 8, "magic")? != MAGIC {
            return Err("bad magic (not a CUBIN archive)".into());
        }
        let v = u32_at(&mut b, "version", usize::MAX)?;
        if v != FORMAT_VERSION as usize {
            return Err(format!("format version {v}, expected {FORMAT_VERSION}"));
        }
        let m = u32_at(&mut b, "manifest length", MAX_SMALL)?;
        let manifest = std::str::from_utf8(take(&mut b, m, "manifest")?)
            .map_err(|_| "manifest is not UTF-8".to_string())?;
        let nf = u32_at(&mut b, "frame count", MAX_SMALL)?;
        let mut frames = Vec::with_capacity(nf);
        for _ in 0..nf {
            let c = u32_at(&mut b, "packed length", usize::MAX)?;
            let raw_len = u32_at(&mut b, "frame length", MAX_FRAME)?;
            let packed = take(&mut b, c, "frame")?;
            frames.push(Frame {
                packed,
                raw_len,
                raw: OnceLock::new(),
            });
        }
        let n = u32_at(&mut b, "entry count", MAX_SMALL)?;
        let mut entries: Vec<Entry<'a>> = Vec::with_capacity(n);
        let mut seen = std::collections::HashSet::with_capacity(n);
        for i in 0..n {
            let k = u32_at(&mut b, "key length", MAX_SMALL)?;
            let key = std::str::from_utf8(take(&mut b, k, "key")?)
                .map_err(|_| format!("entry {i}: key is not UTF-8"))?;
            let frame = u32_at(&mut b, "frame index", usize::MAX)?;
            let offset = u32_at(&mut b, "offset", usize::MAX)?;
            let len = u32_at(&mut b, "image length", usize::MAX)?;
            let sum = u64_at(&mut b, "checksum")?;
            let fits = frames
                .get(frame)
                .is_some_and(|f| offset.checked_add(len).is_some_and(|end| end <= f.raw_len));
            if key.is_empty() || len == 0 || !fits {
                return Err(format!(
                    "entry {i}: empty key or image, or outside its frame"
                ));
            }
            if !seen.insert(key) {
                return Err(format!("entry {i}: duplicate key {key}"));
            }
            entries.push(Entry {
                key,
                frame,
                offset,
                len,
                sum,
            });
        }
        if !b.is_empty() {
            return Err(format!("{} bytes after the last entry", b.len()));
        }
        Ok(Archive {
            manifest,
            frames,
            entries,
        })
    }

    /// The entries, in archive order.
    pub fn entries(&self) -> &[Entry<'a>] {
        &self.entries
    }

    /// The keys, in archive order.
    pub fn keys(&self) -> Vec<&'a str> {
        self.entries.iter().map(|e| e.key).collect()
    }

    /// Whether an entry has `key` (from the index alone: nothing is unpacked).
    pub fn contains(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.key == key)
    }

    /// The unpacked bytes of frame `i` (unpacked at the first call, then kept).
    fn frame(&self, i: usize) -> Result<&[u8], String> {
        let f = self.frames.get(i).ok_or("no such frame")?;
        match f.raw.get_or_init(|| unpack(f.packed, f.raw_len)) {
            Ok(v) => Ok(v),
            Err(e) => Err(format!("frame {i}: {e}")),
        }
    }

    /// The image stored under `key`: `Ok(None)` when there is none, an error when its frame
    /// does not unpack or its checksum does not match (a damaged archive: the caller
    /// compiles instead).
    pub fn get(&self, key: &str) -> Result<Option<&[u8]>, String> {
        let Some(e) = self.entries.iter().find(|e| e.key == key) else {
            return Ok(None);
        };
        let image = self
            .frame(e.frame)?
            .get(e.offset..e.offset + e.len)
            .ok_or_else(|| format!("entry {key} outside its frame"))?;
        if checksum(e.key.as_bytes(), image) != e.sum {
            return Err(format!("checksum mismatch in the entry for {key}"));
        }
        Ok(Some(image))
    }

    /// Unpack now the frames holding `keys` (a background thread does this so that the
    /// first use finds them ready); unknown keys and damaged frames are ignored here (the
    /// [`Archive::get`] of the first use reports them).
    pub fn prefetch(&self, keys: &[String]) {
        for k in keys {
            if let Some(e) = self.entries.iter().find(|e| e.key == k) {
                let _ = self.frame(e.frame);
            }
        }
    }

    /// The value of manifest line `name=value` (first match, trimmed).
    pub fn manifest_value(&self, name: &str) -> Option<&'a str> {
        self.manifest.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == name).then(|| v.trim())
        })
    }

    /// The NVRTC version recorded in the manifest (`nvrtc=MAJOR.MINOR`).
    pub fn nvrtc(&self) -> Option<(i32, i32)> {
        let (a, b) = self.manifest_value("nvrtc")?.split_once('.')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    }

    /// Total bytes of the images (unpacked).
    pub fn image_bytes(&self) -> usize {
        self.entries.iter().map(|e| e.len).sum()
    }

    /// Number of frames.
    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zstd_fast(b: &[u8]) -> Result<Vec<u8>, String> {
        Ok(ruzstd::encoding::compress_to_vec(
            b,
            ruzstd::encoding::CompressionLevel::Fastest,
        ))
    }

    type Frames = Vec<Vec<(String, Vec<u8>)>>;

    fn sample() -> (String, Frames) {
        let manifest = "format=1\narch=sm_90\nnvrtc=13.0\n".to_string();
        let frames = vec![
            vec![
                ("inc-a-0000000000000001-10-sm_90".to_string(), vec![1u8; 33]),
                (
                    "inc-b-0000000000000002-20-sm_90".to_string(),
                    (0..200u8).collect(),
                ),
            ],
            vec![("inc-c-0000000000000003-30-sm_90".to_string(), vec![7u8; 5])],
        ];
        (manifest, frames)
    }

    fn all(frames: &[Vec<(String, Vec<u8>)>]) -> Vec<(String, Vec<u8>)> {
        frames.iter().flatten().cloned().collect()
    }

    #[test]
    fn roundtrip_and_lookup() {
        let (m, f) = sample();
        let bytes = encode(&m, &f, &zstd_fast).unwrap();
        let a = Archive::parse(&bytes).unwrap();
        assert_eq!(a.manifest, m);
        let e = all(&f);
        assert_eq!(
            a.keys(),
            e.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>()
        );
        for (k, img) in &e {
            assert_eq!(a.get(k).unwrap(), Some(&img[..]), "{k}");
        }
        assert_eq!(a.get("inc-z").unwrap(), None);
        assert_eq!(a.nvrtc(), Some((13, 0)));
        assert_eq!(a.manifest_value("arch"), Some("sm_90"));
        assert_eq!(a.manifest_value("missing"), None);
        assert_eq!(a.image_bytes(), 238);
        assert_eq!(a.frame_count(), 2);
        assert_eq!(a.entries()[0].len(), 33);
        a.prefetch(&["inc-z".into(), e[2].0.clone()]);
        assert!(a.contains(&e[0].0) && !a.contains("inc-z"));
        // an empty archive is valid
        let empty = encode("", &[], &zstd_fast).unwrap();
        assert!(Archive::parse(&empty).unwrap().entries().is_empty());
    }

    #[test]
    fn encode_refuses_bad_entries() {
        let img = vec![1u8];
        let enc = |e: Vec<(String, Vec<u8>)>| encode("", &[e], &zstd_fast);
        assert!(enc(vec![(String::new(), img.clone())]).is_err());
        assert!(enc(vec![("k".into(), vec![])]).is_err());
        assert!(enc(vec![("k".into(), img.clone()), ("k".into(), img.clone())]).is_err());
        // duplicate across frames
        let f = vec![
            vec![("k".to_string(), img.clone())],
            vec![("k".to_string(), img)],
        ];
        assert!(encode("", &f, &zstd_fast).is_err());
        // the packer's error is passed on
        let fail = |_: &[u8]| -> Result<Vec<u8>, String> { Err("no".into()) };
        assert!(encode("", &[vec![("k".into(), vec![1])]], &fail).is_err());
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_an_error() {
        let (m, f) = sample();
        let bytes = encode(&m, &f, &zstd_fast).unwrap();
        for n in 0..bytes.len() {
            assert!(Archive::parse(&bytes[..n]).is_err(), "truncated to {n}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(Archive::parse(&long)
            .unwrap_err()
            .contains("after the last"));
    }

    #[test]
    fn any_flipped_bit_never_hands_out_a_wrong_image() {
        // A flipped bit breaks the structure (parse error), a frame (get fails: it does not
        // unpack, or the checksum differs), a key (that key misses, or its checksum fails) or
        // only the manifest text. Never a wrong image handed out, never a panic.
        let (m, f) = sample();
        let bytes = encode(&m, &f, &zstd_fast).unwrap();
        let e = all(&f);
        let good: Vec<&[u8]> = e.iter().map(|(_, v)| v.as_slice()).collect();
        for i in 0..bytes.len() {
            for bit in [0u8, 1, 4, 7] {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                let Ok(a) = Archive::parse(&bad) else {
                    continue;
                };
                for (k, img) in &e {
                    if let Ok(Some(got)) = a.get(k) {
                        assert_eq!(got, &img[..], "flip {i}/{bit} gave a wrong image");
                    }
                }
                for k in a.keys() {
                    if let Ok(Some(got)) = a.get(k) {
                        assert!(good.contains(&got), "flip {i}/{bit}: key {k}");
                    }
                }
            }
        }
    }

    #[test]
    fn garbage_and_hostile_lengths_are_errors_not_panics() {
        assert!(Archive::parse(b"").unwrap_err().contains("truncated"));
        assert!(Archive::parse(b"INCKCUB1xxxxxxxxxxxx")
            .unwrap_err()
            .contains("magic"));
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&2u32.to_le_bytes());
        assert!(Archive::parse(&v).unwrap_err().contains("version"));
        let header = |v: &mut Vec<u8>| {
            v.extend_from_slice(&MAGIC);
            v.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            v.extend_from_slice(&0u32.to_le_bytes()); // manifest
        };
        // huge manifest length, frame count, frame length, entry count
        for fields in [
            vec![u32::MAX],
            vec![0, u32::MAX],
            vec![0, 1, 4, u32::MAX],
            vec![0, 0, u32::MAX],
        ] {
            let mut v = MAGIC.to_vec();
            v.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            for x in fields {
                v.extend_from_slice(&x.to_le_bytes());
            }
            v.extend_from_slice(&[0u8; 16]);
            assert!(Archive::parse(&v).is_err());
        }
        // an entry pointing outside its frame, or at a missing frame
        for (frame, offset, len) in [(0u32, 0u32, 9u32), (0, u32::MAX, 2), (1, 0, 1), (0, 0, 0)] {
            let mut v = Vec::new();
            header(&mut v);
            v.extend_from_slice(&1u32.to_le_bytes()); // one frame
            v.extend_from_slice(&1u32.to_le_bytes()); // packed 1 byte
            v.extend_from_slice(&8u32.to_le_bytes()); // unpacks to 8
            v.push(0);
            v.extend_from_slice(&1u32.to_le_bytes()); // one entry
            v.extend_from_slice(&1u32.to_le_bytes());
            v.push(b'k');
            for x in [frame, offset, len] {
                v.extend_from_slice(&x.to_le_bytes());
            }
            v.extend_from_slice(&[0u8; 8]);
            assert!(Archive::parse(&v).is_err(), "{frame} {offset} {len}");
        }
        // a frame that is not zstd, or unpacks to another length: get fails, parse does not
        for packed in [vec![1u8, 2, 3], zstd_fast(&[5u8; 7]).unwrap()] {
            let mut v = Vec::new();
            header(&mut v);
            v.extend_from_slice(&1u32.to_le_bytes());
            v.extend_from_slice(&(packed.len() as u32).to_le_bytes());
            v.extend_from_slice(&8u32.to_le_bytes());
            v.extend_from_slice(&packed);
            v.extend_from_slice(&1u32.to_le_bytes());
            v.extend_from_slice(&1u32.to_le_bytes());
            v.push(b'k');
            for x in [0u32, 0, 8] {
                v.extend_from_slice(&x.to_le_bytes());
            }
            v.extend_from_slice(&[0u8; 8]);
            let a = Archive::parse(&v).unwrap();
            assert!(a.get("k").is_err());
            a.prefetch(&["k".into()]);
        }
        // pseudo-random garbage after a valid header, and inside a frame
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x & 0xff) as u8
        };
        for _ in 0..200 {
            let mut v = Vec::new();
            header(&mut v);
            for _ in 0..64 {
                v.push(next());
            }
            if let Ok(a) = Archive::parse(&v) {
                for k in a.keys() {
                    let _ = a.get(k);
                }
            }
        }
        let (m, f) = sample();
        let bytes = encode(&m, &f, &zstd_fast).unwrap();
        let frame_at = 8 + 4 + 4 + m.len() + 4 + 8;
        for _ in 0..200 {
            let mut bad = bytes.clone();
            for _ in 0..4 {
                let i = frame_at + usize::from(next()) % 20;
                bad[i] = next();
            }
            if let Ok(a) = Archive::parse(&bad) {
                for (k, img) in all(&f) {
                    if let Ok(Some(got)) = a.get(&k) {
                        assert_eq!(got, &img[..]);
                    }
                }
            }
        }
        // non-UTF-8 key
        let mut v = encode("", &[vec![("k".into(), vec![1])]], &zstd_fast).unwrap();
        let key_at = v.len() - 8 - 12 - 1;
        v[key_at] = 0xff;
        assert!(Archive::parse(&v).unwrap_err().contains("UTF-8"));
    }
}
