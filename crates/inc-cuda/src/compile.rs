//! Getting the CUBIN of one kernel program: from the disk cache, from a compile that
//! another thread of this process is already running ("single flight": one compile per key
//! and process at a time, the others wait for its bytes), or from NVRTC, with an advisory
//! cross-process lock so that processes sharing a cache folder wait for each other's
//! compile instead of repeating it. Also the background warming thread.
//!
//! Nothing here needs a CUDA context: the bytes are loaded into a context by `Kernels`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::cache::{self, FileLock, Lookup};
use crate::error::{CudaError, Result};
use crate::sys;

/// Where the CUBIN of an instance came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// NVRTC compiled it in this process (on the calling thread or the warming thread).
    Compiled,
    /// A valid file of the disk cache.
    DiskCache,
    /// Another thread of this process was compiling it; this one waited for its bytes.
    Shared,
    /// The CUBIN embedded in the binary for this program and arch ([`crate::embedded`]).
    Embedded,
}

impl Origin {
    /// Short name for logs: `compiled`, `disk`, `shared` or `embedded`.
    pub fn name(self) -> &'static str {
        match self {
            Origin::Compiled => "compiled",
            Origin::DiskCache => "disk",
            Origin::Shared => "shared",
            Origin::Embedded => "embedded",
        }
    }
}

/// Longest wait for another process's compile of the same key before compiling anyway.
pub const MAX_LOCK_WAIT: Duration = Duration::from_secs(30);

/// One program to compile: its source, cache key, target arch and cache folder.
#[derive(Clone, Debug)]
pub struct Job {
    /// Cache key (also the cache file name).
    pub key: String,
    /// The full NVRTC program.
    pub source: Arc<String>,
    /// NVRTC options.
    pub options: Arc<Vec<String>>,
    /// Compute capability.
    pub arch: (u32, u32),
    /// Cache folder (`None` = no disk cache).
    pub dir: Option<PathBuf>,
}

impl Job {
    fn path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(&self.key))
    }
}

/// The CUBIN bytes and where they came from.
pub type Image = (Arc<Vec<u8>>, Origin);

enum State {
    Running,
    Done(Arc<Vec<u8>>),
    Failed,
}

struct Flight {
    state: Mutex<State>,
    cv: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn flights() -> &'static Mutex<HashMap<String, Arc<Flight>>> {
    static F: OnceLock<Mutex<HashMap<String, Arc<Flight>>>> = OnceLock::new();
    F.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The leader's duty: publish the outcome and leave the map, also when unwinding.
struct Lead {
    id: String,
    flight: Arc<Flight>,
    outcome: Option<Arc<Vec<u8>>>,
}

impl Drop for Lead {
    fn drop(&mut self) {
        let mut map = lock(flights());
        if map
            .get(&self.id)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            map.remove(&self.id);
        }
        drop(map);
        *lock(&self.flight.state) = match self.outcome.take() {
            Some(b) => State::Done(b),
            None => State::Failed,
        };
        self.flight.cv.notify_all();
    }
}

/// The CUBIN of `job`. `fresh` skips the disk cache (its file was valid but the driver
/// rejected the image) and overwrites it. Threads asking for the same key at once share
/// one compile; if that compile fails, each waiter tries on its own and gets its own error.
pub fn obtain(job: &Job, fresh: bool) -> Result<Image> {
    // never `None` when not skipping busy keys; an error instead of a panic all the same
    obtain_inner(job, fresh, false)?
        .ok_or_else(|| CudaError::Launch(format!("kernel image {} unavailable", job.key)))
}

/// [`obtain`], except that it gives `Ok(None)` at once instead of waiting when another
/// thread of this process or another process (its lock) is compiling the same key. The
/// warming thread uses it to spread work: processes sharing a cache folder each take the
/// instances nobody is compiling yet, and come back for the others at the end.
pub fn obtain_unless_busy(job: &Job) -> Result<Option<Image>> {
    obtain_inner(job, false, true)
}

fn obtain_inner(job: &Job, fresh: bool, skip_busy: bool) -> Result<Option<Image>> {
    let id = format!(
        "{}/{}{}",
        job.dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        job.key,
        if fresh { "#fresh" } else { "" }
    );
    loop {
        let (flight, leader) = {
            let mut map = lock(flights());
            match map.get(&id) {
                Some(f) => (f.clone(), false),
                None => {
                    let f = Arc::new(Flight {
                        state: Mutex::new(State::Running),
                        cv: Condvar::new(),
                    });
                    map.insert(id.clone(), f.clone());
                    (f, true)
                }
            }
        };
        if leader {
            let mut lead = Lead {
                id,
                flight,
                outcome: None,
            };
            let r = produce(job, fresh, skip_busy);
            if let Ok(Some((b, _))) = &r {
                lead.outcome = Some(b.clone());
            }
            return r;
        }
        if skip_busy {
            return Ok(None);
        }
        let mut st = lock(&flight.state);
        while matches!(*st, State::Running) {
            st = flight.cv.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        if let State::Done(b) = &*st {
            return Ok(Some((b.clone(), Origin::Shared)));
        }
        // Failed: try again (as the leader if nobody else is).
    }
}

/// Disk cache, else wait for another process's compile (or give `None` if `skip_busy`),
/// else NVRTC (and write the cache).
fn produce(job: &Job, fresh: bool, skip_busy: bool) -> Result<Option<Image>> {
    let path = job.path();
    let hit = |b: Vec<u8>| Ok(Some((Arc::new(b), Origin::DiskCache)));
    if let (Some(p), false) = (&path, fresh) {
        if let Lookup::Hit(b) = cache::read(p, &job.key) {
            return hit(b);
        }
    }
    let mut _guard = None;
    if let Some(p) = &path {
        let lock_path = p.with_extension("lock");
        let start = Instant::now();
        loop {
            match FileLock::try_acquire(&lock_path) {
                Ok(Some(g)) => {
                    // the previous holder may have finished just before
                    if !fresh {
                        if let Lookup::Hit(b) = cache::read(p, &job.key) {
                            return hit(b);
                        }
                    }
                    _guard = Some(g);
                    break;
                }
                Ok(None) => {
                    if !fresh {
                        if let Lookup::Hit(b) = cache::read(p, &job.key) {
                            return hit(b);
                        }
                    }
                    if let Some(judged) = cache::stale_lock(&lock_path, cache::LOCK_STALE) {
                        cache::break_lock(&lock_path, &judged);
                        continue;
                    }
                    if skip_busy {
                        return Ok(None);
                    }
                    if start.elapsed() > MAX_LOCK_WAIT {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                // no locking possible here (read-only folder, ...): compile anyway
                Err(_) => break,
            }
        }
    }
    let bin = compile(&job.source, &job.options, job.arch)?;
    if let Some(p) = &path {
        // Best effort: a cache that cannot be written only costs a compile next time.
        let _ = cache::write_atomic(p, &job.key, &bin);
    }
    Ok(Some((Arc::new(bin), Origin::Compiled)))
}

/// The version of the NVRTC this process loads (loading it): [`CudaError::NoNvrtc`] when
/// libnvrtc cannot be loaded.
pub fn nvrtc_version() -> Result<(i32, i32)> {
    if !sys::nvrtc_present() {
        return Err(CudaError::NoNvrtc);
    }
    // SAFETY: libnvrtc is present (checked above).
    unsafe { sys::nvrtc_version() }.map_err(|code| CudaError::Nvrtc {
        op: "nvrtcVersion",
        code,
    })
}

/// NVRTC-compile `src` to a CUBIN for `arch`; errors carry the NVRTC log.
pub fn compile(src: &str, options: &[String], arch: (u32, u32)) -> Result<Vec<u8>> {
    if !sys::nvrtc_present() {
        return Err(CudaError::NoNvrtc);
    }
    let arch_s = format!("sm_{}{}", arch.0, arch.1);
    // SAFETY: libnvrtc is present (checked above).
    match unsafe { sys::nvrtc_compile_cubin(src, "inc_kernels.cu", options) } {
        Ok(sys::NvrtcOutcome::Cubin(b)) => Ok(b),
        Ok(sys::NvrtcOutcome::Failed(code, log)) => Err(CudaError::Compile {
            arch: arch_s,
            log: format!("(nvrtc status {code})\n{log}"),
        }),
        Err((op, code)) => Err(CudaError::Nvrtc { op, code }),
    }
}

/// Images compiled ahead by a warming thread, by instance, for its `Kernels` to load.
pub type Warmed<K> = Arc<Mutex<HashMap<K, Image>>>;

/// A background thread that obtains the images of a list of jobs in order, so that first
/// use finds them ready. A job that another thread or process is compiling right now is put
/// off to a second pass (then it waits for that compile, usually finding the file). It
/// stops between jobs once `cancel` is set; errors are dropped (the instance's first use
/// compiles it again and reports its own error). Gives `None` if no thread could be
/// started.
pub fn spawn_warm<K>(
    jobs: Vec<(K, Job)>,
    warmed: Warmed<K>,
    cancel: Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>>
where
    K: Eq + std::hash::Hash + Send + 'static,
{
    std::thread::Builder::new()
        .name("inc-kernel-warm".into())
        .spawn(move || {
            let mut later = Vec::new();
            for (k, job) in jobs {
                if cancel.load(Ordering::Relaxed) {
                    return;
                }
                match obtain_unless_busy(&job) {
                    Ok(Some(img)) => {
                        lock(&warmed).insert(k, img);
                    }
                    Ok(None) => later.push((k, job)),
                    Err(_) => {}
                }
            }
            for (k, job) in later {
                if cancel.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(img) = obtain(&job, false) {
                    lock(&warmed).insert(k, img);
                }
            }
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(dir: &std::path::Path, key: &str) -> Job {
        Job {
            key: key.into(),
            source: Arc::new("not compiled in these tests".into()),
            options: Arc::new(vec![]),
            arch: (9, 0),
            dir: Some(dir.to_path_buf()),
        }
    }

    fn tmp_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("inc-compile-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_valid_cache_file_is_used_without_nvrtc() {
        let d = tmp_dir("hit");
        let j = job(&d, "k1.cubin");
        cache::write_atomic(&d.join("k1.cubin"), "k1.cubin", b"image").unwrap();
        let (b, o) = obtain(&j, false).unwrap();
        assert_eq!((b.as_slice(), o), (&b"image"[..], Origin::DiskCache));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_corrupt_cache_file_is_not_trusted() {
        // Without NVRTC the recompile fails with NoNvrtc; with it, NVRTC rejects the dummy
        // source. Either way the corrupt bytes are never returned.
        let d = tmp_dir("corrupt");
        let j = job(&d, "k2.cubin");
        let mut f = cache::encode("k2.cubin", b"image");
        let last = f.len() - 1;
        f[last] ^= 1;
        std::fs::write(d.join("k2.cubin"), f).unwrap();
        let e = obtain(&j, false).unwrap_err();
        assert!(
            matches!(e, CudaError::NoNvrtc | CudaError::Compile { .. }),
            "{e}"
        );
        // the lock was released
        assert!(!d.join("k2.lock").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn waits_for_another_process_lock_then_uses_its_file() {
        let d = tmp_dir("wait");
        let j = job(&d, "k3.cubin");
        // a live holder (this process) has the lock; the file appears later
        let g = FileLock::try_acquire(&d.join("k3.lock")).unwrap().unwrap();
        let t = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(150));
                cache::write_atomic(&d.join("k3.cubin"), "k3.cubin", b"theirs").unwrap();
            });
            let (b, o) = obtain(&j, false).unwrap();
            assert_eq!((b.as_slice(), o), (&b"theirs"[..], Origin::DiskCache));
        });
        assert!(t.elapsed() >= Duration::from_millis(150));
        drop(g);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn threads_asking_at_once_share_one_result() {
        let d = tmp_dir("share");
        let j = job(&d, "k4.cubin");
        // hold the cross-process lock so every thread's produce() waits; then publish
        let g = FileLock::try_acquire(&d.join("k4.lock")).unwrap().unwrap();
        let results: Vec<Image> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| obtain(&j, false).unwrap()))
                .collect();
            std::thread::sleep(Duration::from_millis(100));
            cache::write_atomic(&d.join("k4.cubin"), "k4.cubin", b"one").unwrap();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        drop(g);
        for (b, _) in &results {
            assert_eq!(b.as_slice(), b"one");
        }
        let disk = results.iter().filter(|r| r.1 == Origin::DiskCache).count();
        assert!(disk >= 1);
        assert!(results
            .iter()
            .all(|r| matches!(r.1, Origin::DiskCache | Origin::Shared)));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn busy_keys_are_skipped_not_awaited() {
        let d = tmp_dir("busy");
        let j = job(&d, "k5.cubin");
        let g = FileLock::try_acquire(&d.join("k5.lock")).unwrap().unwrap();
        let t = Instant::now();
        assert!(obtain_unless_busy(&j).unwrap().is_none());
        assert!(t.elapsed() < Duration::from_secs(1));
        // the warming thread comes back for it and finds the other process's file
        let warmed: Warmed<u32> = Arc::default();
        let h = spawn_warm(vec![(5, j)], warmed.clone(), Arc::default()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        cache::write_atomic(&d.join("k5.cubin"), "k5.cubin", b"late").unwrap();
        h.join().unwrap();
        drop(g);
        let got = lock(&warmed).remove(&5).unwrap();
        assert_eq!((got.0.as_slice(), got.1), (&b"late"[..], Origin::DiskCache));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn warm_thread_fills_the_map_and_stops_when_cancelled() {
        let d = tmp_dir("warm");
        for k in ["a.cubin", "b.cubin"] {
            cache::write_atomic(&d.join(k), k, k.as_bytes()).unwrap();
        }
        let warmed: Warmed<u32> = Arc::default();
        let jobs = vec![(1, job(&d, "a.cubin")), (2, job(&d, "b.cubin"))];
        let h = spawn_warm(jobs.clone(), warmed.clone(), Arc::default()).unwrap();
        h.join().unwrap();
        assert_eq!(lock(&warmed).len(), 2);
        let cancelled: Warmed<u32> = Arc::default();
        let h = spawn_warm(jobs, cancelled.clone(), Arc::new(AtomicBool::new(true))).unwrap();
        h.join().unwrap();
        assert!(lock(&cancelled).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}
