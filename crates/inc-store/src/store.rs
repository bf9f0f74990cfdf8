//! The [`Store`] trait and [`PrefixStore`].

use std::sync::Arc;
use std::time::Duration;

use crate::StoreError;

/// A key-value store used for rendezvous, with the semantics of c10d's `Store`.
///
/// Object safe and `Send + Sync`: hold it as `Arc<dyn Store>`. Every call that can block takes a
/// timeout and returns [`StoreError::Timeout`] when it passes.
pub trait Store: Send + Sync {
    /// Sets `key` to `value` (overwrites) and wakes everyone waiting for `key`.
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;

    /// Returns the value of `key`, blocking until it exists or `timeout` passes.
    fn get(&self, key: &str, timeout: Duration) -> Result<Vec<u8>, StoreError>;

    /// Atomically adds `delta` to the integer stored at `key` (a decimal string; a missing key
    /// counts as 0) and returns the new value.
    fn add(&self, key: &str, delta: i64) -> Result<i64, StoreError>;

    /// Compare-and-set, with c10d's semantics: if `key` is missing and `expected` is empty, sets
    /// it to `desired`; if `key` holds `expected`, replaces it with `desired`. Returns the value
    /// held afterwards (for a missing key with a non-empty `expected`: `expected`, as c10d does).
    fn compare_set(
        &self,
        key: &str,
        expected: &[u8],
        desired: &[u8],
    ) -> Result<Vec<u8>, StoreError>;

    /// True when every key in `keys` exists (does not block).
    fn check(&self, keys: &[&str]) -> Result<bool, StoreError>;

    /// Blocks until every key in `keys` exists, or returns [`StoreError::Timeout`].
    fn wait(&self, keys: &[&str], timeout: Duration) -> Result<(), StoreError>;

    /// Deletes `key`; true when it existed.
    fn delete(&self, key: &str) -> Result<bool, StoreError>;

    /// The number of keys in the store (for a TCP store: in the whole server, all prefixes).
    fn num_keys(&self) -> Result<u64, StoreError>;

    /// Sets several keys. The default calls [`Store::set`] for each; the TCP client sends one
    /// MULTI_SET frame.
    fn multi_set(&self, pairs: &[(&str, &[u8])]) -> Result<(), StoreError> {
        for (k, v) in pairs {
            self.set(k, v)?;
        }
        Ok(())
    }

    /// Gets several keys, blocking until all exist or `timeout` passes. The default waits then
    /// calls [`Store::get`] for each; the TCP client sends one WAIT and one MULTI_GET frame.
    fn multi_get(&self, keys: &[&str], timeout: Duration) -> Result<Vec<Vec<u8>>, StoreError> {
        self.wait(keys, timeout)?;
        keys.iter().map(|k| self.get(k, timeout)).collect()
    }
}

impl<S: Store + ?Sized> Store for Arc<S> {
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        (**self).set(key, value)
    }
    fn get(&self, key: &str, timeout: Duration) -> Result<Vec<u8>, StoreError> {
        (**self).get(key, timeout)
    }
    fn add(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        (**self).add(key, delta)
    }
    fn compare_set(
        &self,
        key: &str,
        expected: &[u8],
        desired: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        (**self).compare_set(key, expected, desired)
    }
    fn check(&self, keys: &[&str]) -> Result<bool, StoreError> {
        (**self).check(keys)
    }
    fn wait(&self, keys: &[&str], timeout: Duration) -> Result<(), StoreError> {
        (**self).wait(keys, timeout)
    }
    fn delete(&self, key: &str) -> Result<bool, StoreError> {
        (**self).delete(key)
    }
    fn num_keys(&self) -> Result<u64, StoreError> {
        (**self).num_keys()
    }
    fn multi_set(&self, pairs: &[(&str, &[u8])]) -> Result<(), StoreError> {
        (**self).multi_set(pairs)
    }
    fn multi_get(&self, keys: &[&str], timeout: Duration) -> Result<Vec<Vec<u8>>, StoreError> {
        (**self).multi_get(keys, timeout)
    }
}

/// A view of another store where every key is `"{prefix}/{key}"`, like c10d's `PrefixStore`
/// (so `PrefixStore::new("grp", s).set("k", ..)` is `s.set("grp/k", ..)`, which a Python
/// `PrefixStore("grp", store)` reads as `"k"`).
pub struct PrefixStore {
    prefix: String,
    inner: Arc<dyn Store>,
}

impl PrefixStore {
    /// Wraps `inner`, namespacing every key under `prefix`.
    pub fn new(prefix: impl Into<String>, inner: Arc<dyn Store>) -> Self {
        Self {
            prefix: prefix.into(),
            inner,
        }
    }

    fn k(&self, key: &str) -> String {
        format!("{}/{}", self.prefix, key)
    }

    fn ks(&self, keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| self.k(k)).collect()
    }

    fn unprefix(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Timeout { keys, timeout } => {
                let strip = format!("{}/", self.prefix);
                let keys = keys
                    .into_iter()
                    .map(|k| k.strip_prefix(&strip).map(str::to_owned).unwrap_or(k))
                    .collect();
                StoreError::Timeout { keys, timeout }
            }
            other => other,
        }
    }
}

impl Store for PrefixStore {
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.inner.set(&self.k(key), value)
    }
    fn get(&self, key: &str, timeout: Duration) -> Result<Vec<u8>, StoreError> {
        self.inner
            .get(&self.k(key), timeout)
            .map_err(|e| self.unprefix(e))
    }
    fn add(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.inner.add(&self.k(key), delta)
    }
    fn compare_set(
        &self,
        key: &str,
        expected: &[u8],
        desired: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        self.inner.compare_set(&self.k(key), expected, desired)
    }
    fn check(&self, keys: &[&str]) -> Result<bool, StoreError> {
        let ks = self.ks(keys);
        let refs: Vec<&str> = ks.iter().map(String::as_str).collect();
        self.inner.check(&refs)
    }
    fn wait(&self, keys: &[&str], timeout: Duration) -> Result<(), StoreError> {
        let ks = self.ks(keys);
        let refs: Vec<&str> = ks.iter().map(String::as_str).collect();
        self.inner
            .wait(&refs, timeout)
            .map_err(|e| self.unprefix(e))
    }
    fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.delete(&self.k(key))
    }
    fn num_keys(&self) -> Result<u64, StoreError> {
        self.inner.num_keys()
    }
    fn multi_set(&self, pairs: &[(&str, &[u8])]) -> Result<(), StoreError> {
        let ks: Vec<String> = pairs.iter().map(|(k, _)| self.k(k)).collect();
        let p: Vec<(&str, &[u8])> = ks
            .iter()
            .zip(pairs)
            .map(|(k, (_, v))| (k.as_str(), *v))
            .collect();
        self.inner.multi_set(&p)
    }
    fn multi_get(&self, keys: &[&str], timeout: Duration) -> Result<Vec<Vec<u8>>, StoreError> {
        let ks = self.ks(keys);
        let refs: Vec<&str> = ks.iter().map(String::as_str).collect();
        self.inner
            .multi_get(&refs, timeout)
            .map_err(|e| self.unprefix(e))
    }
}

/// Parses a c10d ADD value: a decimal i64 (c10d writes it with `std::to_string`).
pub(crate) fn parse_counter(v: &[u8]) -> Option<i64> {
    std::str::from_utf8(v).ok()?.trim().parse::<i64>().ok()
}
