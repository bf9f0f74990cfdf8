//! [`MemStore`]: an in-process store for multi-thread mode and tests.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::store::parse_counter;
use crate::{Store, StoreError};

/// An in-process [`Store`]: a map behind a mutex, blocking calls served by a condition
/// variable (no polling). Share it between threads as `Arc<MemStore>` / `Arc<dyn Store>`.
#[derive(Default)]
pub struct MemStore {
    map: Mutex<HashMap<String, Vec<u8>>>,
    changed: Condvar,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-updated (every update is
        // one insert/remove), so recover from poisoning instead of propagating it.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks until `ready(map)` holds or `timeout` passes; returns the guard when ready.
    fn wait_until<'a>(
        &'a self,
        keys: &[&str],
        timeout: Duration,
    ) -> Result<MutexGuard<'a, HashMap<String, Vec<u8>>>, StoreError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut g = self.lock();
        loop {
            if keys.iter().all(|k| g.contains_key(*k)) {
                return Ok(g);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                let missing = keys
                    .iter()
                    .filter(|k| !g.contains_key(**k))
                    .map(|k| (*k).to_owned());
                return Err(StoreError::Timeout {
                    keys: missing.collect(),
                    timeout,
                });
            }
            g = match self.changed.wait_timeout(g, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

impl Store for MemStore {
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.lock().insert(key.to_owned(), value.to_vec());
        self.changed.notify_all();
        Ok(())
    }

    fn get(&self, key: &str, timeout: Duration) -> Result<Vec<u8>, StoreError> {
        let g = self.wait_until(&[key], timeout)?;
        g.get(key).cloned().ok_or_else(|| StoreError::Timeout {
            keys: vec![key.to_owned()],
            timeout,
        })
    }

    fn add(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let mut g = self.lock();
        let old = match g.get(key) {
            None => 0,
            Some(v) => parse_counter(v).ok_or_else(|| StoreError::NotAnInteger {
                key: key.to_owned(),
            })?,
        };
        let new = old
            .checked_add(delta)
            .ok_or_else(|| StoreError::NotAnInteger {
                key: key.to_owned(),
            })?;
        g.insert(key.to_owned(), new.to_string().into_bytes());
        drop(g);
        self.changed.notify_all();
        Ok(new)
    }

    fn compare_set(
        &self,
        key: &str,
        expected: &[u8],
        desired: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let mut g = self.lock();
        let out = match g.get_mut(key) {
            None if expected.is_empty() => {
                g.insert(key.to_owned(), desired.to_vec());
                desired.to_vec()
            }
            None => expected.to_vec(),
            Some(cur) => {
                if cur.as_slice() == expected {
                    *cur = desired.to_vec();
                }
                cur.clone()
            }
        };
        drop(g);
        self.changed.notify_all();
        Ok(out)
    }

    fn check(&self, keys: &[&str]) -> Result<bool, StoreError> {
        let g = self.lock();
        Ok(keys.iter().all(|k| g.contains_key(*k)))
    }

    fn wait(&self, keys: &[&str], timeout: Duration) -> Result<(), StoreError> {
        self.wait_until(keys, timeout).map(|_| ())
    }

    fn delete(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.lock().remove(key).is_some())
    }

    fn num_keys(&self) -> Result<u64, StoreError> {
        Ok(self.lock().len() as u64)
    }

    fn multi_set(&self, pairs: &[(&str, &[u8])]) -> Result<(), StoreError> {
        let mut g = self.lock();
        for (k, v) in pairs {
            g.insert((*k).to_owned(), v.to_vec());
        }
        drop(g);
        self.changed.notify_all();
        Ok(())
    }

    fn multi_get(&self, keys: &[&str], timeout: Duration) -> Result<Vec<Vec<u8>>, StoreError> {
        let g = self.wait_until(keys, timeout)?;
        keys.iter()
            .map(|k| {
                g.get(*k).cloned().ok_or_else(|| StoreError::Timeout {
                    keys: vec![(*k).to_owned()],
                    timeout,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn set_get_add_delete() {
        let s = MemStore::new();
        s.set("a", b"1").unwrap();
        assert_eq!(s.get("a", Duration::from_millis(10)).unwrap(), b"1");
        assert_eq!(s.add("a", 41).unwrap(), 42);
        assert_eq!(s.add("n", -3).unwrap(), -3);
        assert_eq!(s.get("n", Duration::ZERO).unwrap(), b"-3");
        assert_eq!(s.num_keys().unwrap(), 2);
        assert!(s.delete("a").unwrap());
        assert!(!s.delete("a").unwrap());
        assert!(!s.check(&["a", "n"]).unwrap());
        assert!(s.check(&["n"]).unwrap());
    }

    #[test]
    fn add_on_text_is_an_error() {
        let s = MemStore::new();
        s.set("t", b"abc").unwrap();
        assert!(matches!(
            s.add("t", 1),
            Err(StoreError::NotAnInteger { .. })
        ));
        s.set("m", i64::MAX.to_string().as_bytes()).unwrap();
        assert!(matches!(
            s.add("m", 1),
            Err(StoreError::NotAnInteger { .. })
        ));
    }

    #[test]
    fn compare_set_semantics() {
        let s = MemStore::new();
        // missing key, non-empty expected: not set, returns expected
        assert_eq!(s.compare_set("k", b"x", b"y").unwrap(), b"x");
        assert!(!s.check(&["k"]).unwrap());
        // missing key, empty expected: set
        assert_eq!(s.compare_set("k", b"", b"v1").unwrap(), b"v1");
        // mismatch: unchanged
        assert_eq!(s.compare_set("k", b"zz", b"v2").unwrap(), b"v1");
        // match: replaced
        assert_eq!(s.compare_set("k", b"v1", b"v2").unwrap(), b"v2");
    }

    #[test]
    fn get_times_out_with_typed_error() {
        let s = MemStore::new();
        let t0 = Instant::now();
        let e = s.get("missing", Duration::from_millis(50)).unwrap_err();
        assert!(e.is_timeout(), "{e}");
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert!(e.to_string().contains("missing"));
    }

    #[test]
    fn wait_is_woken_by_set_from_another_thread() {
        let s = Arc::new(MemStore::new());
        let s2 = s.clone();
        let h = std::thread::spawn(move || s2.multi_get(&["a", "b"], Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        s.set("a", b"A").unwrap();
        s.set("b", b"B").unwrap();
        assert_eq!(
            h.join().unwrap().unwrap(),
            vec![b"A".to_vec(), b"B".to_vec()]
        );
    }

    #[test]
    fn prefix_store_namespaces_keys() {
        let inner: Arc<dyn Store> = Arc::new(MemStore::new());
        let p = crate::PrefixStore::new("grp", inner.clone());
        p.set("k", b"v").unwrap();
        assert_eq!(inner.get("grp/k", Duration::ZERO).unwrap(), b"v");
        let e = p.get("nope", Duration::from_millis(5)).unwrap_err();
        match e {
            StoreError::Timeout { keys, .. } => assert_eq!(keys, vec!["nope".to_owned()]),
            other => panic!("{other}"),
        }
    }
}
