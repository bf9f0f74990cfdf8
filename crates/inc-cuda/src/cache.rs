//! The on-disk kernel cache: one file per compiled program (one kernel instance), written
//! atomically and validated before use, plus an advisory cross-process compile lock.
//!
//! File layout (little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `INCKCUB1` |
//! | 4 | format version ([`FORMAT_VERSION`]) |
//! | 4 | key length K |
//! | K | key (the file name: entry, source hash, arch, driver, NVRTC) |
//! | 8 | payload length P |
//! | 8 | FNV-1a 64 of key, payload length and payload |
//! | P | payload (the CUBIN image) |
//!
//! A file that is short, long, for another key, of another version or whose checksum does
//! not match is [`Lookup::Invalid`]: the caller recompiles and overwrites it, it never hands
//! the bytes to the driver. Writers write a uniquely named temp file in the same folder,
//! fsync it and rename it over the final name, so a reader sees either no file or a whole
//! one; concurrent writers of the same key simply replace each other with equal content.
//!
//! The lock ([`FileLock`]) only saves CPU: while one process compiles a key, others wait for
//! its file instead of compiling the same program. It is a `create_new` file holding the
//! owner's pid and start time; a lock whose owner is gone (no `/proc/<pid>`, or that pid
//! now belongs to a process started at another time) or that is older than [`LOCK_STALE`]
//! is broken. Correctness never depends on it: the worst case of a lost or
//! broken lock is a duplicate compile.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::source::fnv64;

/// First bytes of every cache file.
pub const MAGIC: [u8; 8] = *b"INCKCUB1";
/// Version of the layout above.
pub const FORMAT_VERSION: u32 = 1;
/// A compile lock older than this is considered abandoned (one instance compiles in about
/// a second; a wrongly broken lock only costs a duplicate compile).
pub const LOCK_STALE: Duration = Duration::from_secs(30);

/// Result of reading one cache file.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A whole, valid file for the key: the payload.
    Hit(Vec<u8>),
    /// No file.
    Miss,
    /// A file that must not be trusted (why).
    Invalid(String),
}

fn checksum(key: &[u8], payload: &[u8]) -> u64 {
    let mut buf = Vec::with_capacity(key.len() + 8 + payload.len());
    buf.extend_from_slice(key);
    buf.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    buf.extend_from_slice(payload);
    fnv64(&buf)
}

/// The bytes of a cache file for `key` holding `payload`.
pub fn encode(key: &str, payload: &[u8]) -> Vec<u8> {
    let k = key.as_bytes();
    let mut out = Vec::with_capacity(40 + k.len() + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&u32::try_from(k.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(k);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(k, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
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

fn le_u32(b: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(b);
    u32::from_le_bytes(w)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    u64::from_le_bytes(w)
}

/// Validate `file` (the bytes of a cache file) for `key`; gives the payload or why not.
pub fn decode<'a>(key: &str, file: &'a [u8]) -> Result<&'a [u8], String> {
    let mut b = file;
    if take(&mut b, 8, "magic")? != MAGIC {
        return Err("bad magic".into());
    }
    let v = le_u32(take(&mut b, 4, "version")?);
    if v != FORMAT_VERSION {
        return Err(format!("format version {v}, expected {FORMAT_VERSION}"));
    }
    let klen = le_u32(take(&mut b, 4, "key length")?) as usize;
    let k = take(&mut b, klen, "key")?;
    if k != key.as_bytes() {
        return Err("written for another key".into());
    }
    let plen = le_u64(take(&mut b, 8, "payload length")?);
    let sum = le_u64(take(&mut b, 8, "checksum")?);
    if plen != b.len() as u64 {
        return Err(format!("payload length {} but header says {plen}", b.len()));
    }
    if plen == 0 {
        return Err("empty payload".into());
    }
    if checksum(k, b) != sum {
        return Err("checksum mismatch".into());
    }
    Ok(b)
}

/// Read and validate the cache file `path` for `key`.
pub fn read(path: &Path, key: &str) -> Lookup {
    match std::fs::read(path) {
        Ok(bytes) => match decode(key, &bytes) {
            Ok(p) => Lookup::Hit(p.to_vec()),
            Err(why) => Lookup::Invalid(why),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Lookup::Miss,
        Err(e) => Lookup::Invalid(format!("unreadable: {e}")),
    }
}

/// A temp name in `path`'s folder that no other writer (thread or process) uses.
fn temp_name(path: &Path) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let base = path.file_name().map(|f| f.to_string_lossy().into_owned());
    let name = format!(
        ".{}.tmp.{}.{n}",
        base.as_deref().unwrap_or("inc"),
        std::process::id()
    );
    path.with_file_name(name)
}

/// Write the cache file `path` for `key` atomically: temp file in the same folder, fsync,
/// rename over `path`, fsync of the folder (best effort). Creates the folder.
pub fn write_atomic(path: &Path, key: &str, payload: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "cache path has no folder"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = temp_name(path);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(&encode(key, payload))?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// An advisory compile lock held by this process (removed on drop if still ours).
#[derive(Debug)]
pub struct FileLock {
    path: PathBuf,
    token: String,
}

impl FileLock {
    /// Take the lock at `path` if nobody holds it: `Ok(None)` when another holder has it.
    /// Creates the folder. An error means locking is not possible here (e.g. a read-only
    /// folder); callers then go on without it.
    pub fn try_acquire(path: &Path) -> io::Result<Option<FileLock>> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let pid = std::process::id();
        let token = format!(
            "{pid} {} {}",
            proc_start_time(pid).unwrap_or(0),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(mut f) => {
                let lock = FileLock {
                    path: path.to_path_buf(),
                    token,
                };
                if let Err(e) = f.write_all(lock.token.as_bytes()) {
                    let _ = std::fs::remove_file(path);
                    return Err(e);
                }
                Ok(Some(lock))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        if std::fs::read_to_string(&self.path).is_ok_and(|t| t == self.token) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether the lock file at `path` is abandoned: its owner process is gone (Linux
/// `/proc`), or it is older than `max_age`. Gives the content judged, to break it with
/// [`break_lock`]; `None` = held (or already gone).
pub fn stale_lock(path: &Path, max_age: Duration) -> Option<String> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    if age > max_age {
        return Some(text);
    }
    let mut words = text.split_whitespace();
    let pid = words.next().and_then(|p| p.parse::<u32>().ok());
    let start = words
        .next()
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0);
    match pid {
        Some(pid) => {
            let proc_fs = Path::new("/proc/self").exists();
            let gone = proc_fs && !Path::new(&format!("/proc/{pid}")).exists();
            // same pid, another process (a restarted container reuses small pids)
            let reused = proc_fs && start != 0 && proc_start_time(pid).is_some_and(|s| s != start);
            (gone || reused).then_some(text)
        }
        // being written right now, or its writer died between create and write
        None => (age > Duration::from_secs(5)).then_some(text),
    }
}

/// Start time of process `pid` in clock ticks since boot (`/proc/<pid>/stat` field 22), so
/// that a lock of a dead process whose pid was reused is recognised. `None` off Linux.
fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) may hold spaces and parentheses: fields 3.. follow the
    // last ')'
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Remove the lock file at `path` if it still holds `judged` (see [`stale_lock`]).
pub fn break_lock(path: &Path, judged: &str) {
    if std::fs::read_to_string(path).is_ok_and(|t| t == judged) {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("inc-cache-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn roundtrip_and_every_corruption_is_rejected() {
        let key = "inc-inc_one_shot_f32_sum-0123-sm_90.cubin";
        let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let file = encode(key, &payload);
        assert_eq!(decode(key, &file).unwrap(), &payload[..]);
        // another key
        assert!(decode("other", &file).unwrap_err().contains("another key"));
        // every truncation
        for n in 0..file.len() {
            assert!(decode(key, &file[..n]).is_err(), "truncated to {n}");
        }
        // trailing garbage
        let mut long = file.clone();
        long.push(0);
        assert!(decode(key, &long).is_err());
        // any single flipped bit
        for i in 0..file.len() {
            for bit in [0u8, 3, 7] {
                let mut bad = file.clone();
                bad[i] ^= 1 << bit;
                assert!(decode(key, &bad).is_err(), "flip byte {i} bit {bit}");
            }
        }
        assert!(decode(key, &encode(key, &[])).is_err());
        assert!(decode(key, b"").unwrap_err().contains("truncated"));
    }

    #[test]
    fn read_reports_miss_hit_and_invalid() {
        let d = tmp_dir("read");
        let p = d.join("k.cubin");
        assert_eq!(read(&p, "k"), Lookup::Miss);
        write_atomic(&p, "k", b"cubin bytes").unwrap();
        assert_eq!(read(&p, "k"), Lookup::Hit(b"cubin bytes".to_vec()));
        // torn file (a crash of a non-atomic writer would leave this)
        let whole = std::fs::read(&p).unwrap();
        std::fs::write(&p, &whole[..whole.len() - 3]).unwrap();
        assert!(matches!(read(&p, "k"), Lookup::Invalid(_)));
        // rewritten over the corrupt file
        write_atomic(&p, "k", b"cubin bytes 2").unwrap();
        assert_eq!(read(&p, "k"), Lookup::Hit(b"cubin bytes 2".to_vec()));
        // no temp files left behind
        let names: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["k.cubin"]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn concurrent_writers_and_readers_never_see_a_torn_file() {
        let d = tmp_dir("race");
        let p = d.join("k.cubin");
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let (p, big) = (&p, &big);
                s.spawn(move || {
                    for _ in 0..20 {
                        let mut v = big.clone();
                        v[0] = t;
                        write_atomic(p, "k", &v).unwrap();
                    }
                });
            }
            for _ in 0..2 {
                let p = &p;
                s.spawn(move || {
                    for _ in 0..200 {
                        match read(p, "k") {
                            Lookup::Hit(v) => assert_eq!(v.len(), 300_000),
                            Lookup::Miss => {}
                            Lookup::Invalid(why) => panic!("reader saw an invalid file: {why}"),
                        }
                    }
                });
            }
        });
        assert!(matches!(read(&p, "k"), Lookup::Hit(_)));
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1, "temp files left");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn lock_is_exclusive_released_on_drop_and_broken_when_abandoned() {
        let d = tmp_dir("lock");
        let p = d.join("k.lock");
        let a = FileLock::try_acquire(&p).unwrap().unwrap();
        assert!(FileLock::try_acquire(&p).unwrap().is_none());
        // our own process is alive: not stale
        assert_eq!(stale_lock(&p, LOCK_STALE), None);
        // too old: stale
        assert!(stale_lock(&p, Duration::ZERO).is_some());
        drop(a);
        assert!(!p.exists());
        // a lock of a process that does not exist is broken
        std::fs::write(&p, "4294967295 0").unwrap();
        if Path::new("/proc/self").exists() {
            let judged = stale_lock(&p, LOCK_STALE).unwrap();
            break_lock(&p, &judged);
            assert!(!p.exists());
        }
        // a lock of a live pid with another start time (pid reused) is broken
        if let Some(start) = proc_start_time(std::process::id()) {
            std::fs::write(&p, format!("{} {} 0", std::process::id(), start + 1)).unwrap();
            assert!(stale_lock(&p, LOCK_STALE).is_some());
            std::fs::write(&p, format!("{} {} 0", std::process::id(), start)).unwrap();
            assert!(stale_lock(&p, LOCK_STALE).is_none());
        }
        // a lock that changed since it was judged is left alone
        std::fs::write(&p, "1 0").unwrap();
        break_lock(&p, "2 0");
        assert!(p.exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}
