//! Per-path call counters and the last fallback reason of a communicator (the seed kept
//! one global usage counter; we count every path and say why a call fell back).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use crate::options::AlgoPath;

/// Live counters (atomics: the hot path does one relaxed add).
#[derive(Debug, Default)]
pub struct Counters {
    calls: [AtomicU64; 5],
    bytes: [AtomicU64; 5],
    fallbacks: AtomicU64,
    errors: AtomicU64,
    last_fallback: Mutex<Option<String>>,
}

/// A snapshot of a communicator's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CommStats {
    /// Calls that ran one-shot.
    pub one_shot: u64,
    /// Calls that ran two-shot.
    pub two_shot: u64,
    /// Calls that ran hcm.
    pub hcm: u64,
    /// Calls that ran NCCL (forced or fallback).
    pub nccl: u64,
    /// Calls that ran push-one-shot.
    pub push_one_shot: u64,
    /// Bytes reduced per path, in [`AlgoPath::ALL`] order.
    pub bytes: [u64; 5],
    /// Calls that went to NCCL because no intra-node path fit.
    pub fallbacks: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// Why the last fallback happened.
    pub last_fallback: Option<String>,
}

impl CommStats {
    /// Calls that took `path`.
    pub fn calls(&self, path: AlgoPath) -> u64 {
        match path {
            AlgoPath::OneShot => self.one_shot,
            AlgoPath::TwoShot => self.two_shot,
            AlgoPath::Hcm => self.hcm,
            AlgoPath::Nccl => self.nccl,
            AlgoPath::PushOneShot => self.push_one_shot,
        }
    }

    /// All calls that completed a path.
    pub fn total(&self) -> u64 {
        self.one_shot + self.two_shot + self.hcm + self.nccl + self.push_one_shot
    }
}

impl Counters {
    /// Counts one call of `bytes` bytes on `path`.
    pub fn record(&self, path: AlgoPath, bytes: u64) {
        let i = path.index();
        if let (Some(c), Some(b)) = (self.calls.get(i), self.bytes.get(i)) {
            c.fetch_add(1, Ordering::Relaxed);
            b.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Counts one fallback and remembers why.
    pub fn record_fallback(&self, reason: &str) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut g) = self.last_fallback.lock() {
            *g = Some(reason.to_string());
        }
    }

    /// Counts one failed call.
    pub fn record_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A consistent-enough snapshot (each counter read once).
    pub fn snapshot(&self) -> CommStats {
        let get = |p: AlgoPath| {
            self.calls
                .get(p.index())
                .map(|c| c.load(Ordering::Relaxed))
                .unwrap_or(0)
        };
        let mut bytes = [0u64; 5];
        for (dst, src) in bytes.iter_mut().zip(&self.bytes) {
            *dst = src.load(Ordering::Relaxed);
        }
        CommStats {
            one_shot: get(AlgoPath::OneShot),
            two_shot: get(AlgoPath::TwoShot),
            hcm: get(AlgoPath::Hcm),
            nccl: get(AlgoPath::Nccl),
            push_one_shot: get(AlgoPath::PushOneShot),
            bytes,
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            last_fallback: self.last_fallback.lock().ok().and_then(|g| g.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_paths_and_fallbacks() {
        let c = Counters::default();
        c.record(AlgoPath::OneShot, 10);
        c.record(AlgoPath::OneShot, 6);
        c.record(AlgoPath::Nccl, 100);
        c.record_fallback("too big");
        c.record_error();
        let s = c.snapshot();
        assert_eq!(s.calls(AlgoPath::OneShot), 2);
        assert_eq!(s.calls(AlgoPath::TwoShot), 0);
        assert_eq!(s.nccl, 1);
        assert_eq!(s.bytes, [16, 0, 0, 100, 0]);
        c.record(AlgoPath::PushOneShot, 8);
        assert_eq!(c.snapshot().calls(AlgoPath::PushOneShot), 1);
        assert_eq!(c.snapshot().bytes[AlgoPath::PushOneShot.index()], 8);
        assert_eq!(s.fallbacks, 1);
        assert_eq!(s.errors, 1);
        assert_eq!(s.total(), 3);
        assert_eq!(s.last_fallback.as_deref(), Some("too big"));
    }

    #[test]
    fn concurrent_records_are_not_lost() {
        let c = std::sync::Arc::new(Counters::default());
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.record(AlgoPath::TwoShot, 1);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(c.snapshot().two_shot, 4000);
    }
}
