//! The store's state and the queries on it: keys and values, queues, parked WAITs and the
//! wake-ups that complete them, byte accounting against `max_total_bytes`.

use std::collections::{HashMap, HashSet, VecDeque};

use super::conn::{send, ConnReader, End};
use super::Conn;
use crate::proto::{
    Request, CHECK_NOT_READY, CHECK_READY, STOP_WAITING, VALIDATION_MAGIC, WAIT_CANCELED,
};
use crate::store::parse_counter;

/// Everything the server holds, behind one lock (`Shared::lock`).
#[derive(Default)]
pub(super) struct State {
    pub(super) kv: HashMap<Vec<u8>, Vec<u8>>,
    pub(super) queues: HashMap<Vec<u8>, VecDeque<Vec<u8>>>,
    pub(super) bytes: u64,
    pub(super) waiting: HashMap<Vec<u8>, Vec<u64>>,
    pub(super) awaited: HashMap<u64, usize>,
    pub(super) conns: HashMap<u64, Conn>,
}

impl ConnReader {
    /// Executes one query of a validated (and, with a token, authenticated) client under
    /// the state lock; replies are queued before the lock is released.
    pub(super) fn execute(&self, st: &mut State, req: Request) -> Result<(), End> {
        let drop = |r: String| End::Drop(r, true);
        let lim = self.shared.opts.limits;
        let max_total = self.shared.opts.max_total_bytes;
        match req {
            Request::Validate { magic } => {
                if magic != VALIDATION_MAGIC {
                    return Err(drop(format!("bad validation magic {magic:#x}")));
                }
            }
            Request::Auth { .. } => {}
            Request::Set { key, value } => {
                set(st, key, value, max_total).map_err(drop)?;
            }
            Request::CompareSet {
                key,
                expected,
                desired,
            } => {
                let out = match st.kv.get(&key) {
                    None if expected.is_empty() => {
                        set(st, key, desired.clone(), max_total).map_err(drop)?;
                        desired
                    }
                    None => {
                        wake(st, &key);
                        expected
                    }
                    Some(cur) if *cur == expected => {
                        set(st, key, desired.clone(), max_total).map_err(drop)?;
                        desired
                    }
                    Some(cur) => {
                        let cur = cur.clone();
                        wake(st, &key);
                        cur
                    }
                };
                self.reply(st, bytes_reply(&out))?;
            }
            Request::Get { key } => {
                let out = bytes_reply(st.kv.get(&key).map(Vec::as_slice).unwrap_or(&[]));
                self.reply(st, out)?;
            }
            Request::Add { key, delta } => {
                let old = match st.kv.get(&key) {
                    None => 0,
                    Some(v) => parse_counter(v)
                        .ok_or_else(|| drop("ADD on a value that is not an integer".into()))?,
                };
                let new = old
                    .checked_add(delta)
                    .ok_or_else(|| drop("ADD overflows i64".into()))?;
                set(st, key, new.to_string().into_bytes(), max_total).map_err(drop)?;
                self.reply(st, new.to_le_bytes().to_vec())?;
            }
            Request::Check { keys } => {
                let ready = keys.iter().all(|k| exists(st, k));
                self.reply(st, vec![if ready { CHECK_READY } else { CHECK_NOT_READY }])?;
            }
            Request::Wait { keys } => {
                let missing: HashSet<Vec<u8>> =
                    keys.into_iter().filter(|k| !exists(st, k)).collect();
                if missing.is_empty() {
                    self.reply(st, vec![STOP_WAITING])?;
                } else {
                    if st.awaited.contains_key(&self.id) {
                        return Err(drop("WAIT while another WAIT is pending".into()));
                    }
                    st.awaited.insert(self.id, missing.len());
                    for k in missing {
                        st.waiting.entry(k).or_default().push(self.id);
                    }
                }
            }
            Request::GetNumKeys => {
                let n = st.kv.len() as i64;
                self.reply(st, n.to_le_bytes().to_vec())?;
            }
            Request::DeleteKey { key } => {
                let n = match st.kv.remove(&key) {
                    Some(v) => {
                        st.bytes = st.bytes.saturating_sub((key.len() + v.len()) as u64);
                        1i64
                    }
                    None => 0,
                };
                self.reply(st, n.to_le_bytes().to_vec())?;
            }
            Request::Append { key, value } => {
                let mut v = st.kv.get(&key).cloned().unwrap_or_default();
                if (v.len() + value.len()) as u64 > lim.max_value_bytes {
                    return Err(drop("APPEND would exceed the value limit".into()));
                }
                v.extend_from_slice(&value);
                set(st, key, v, max_total).map_err(drop)?;
            }
            Request::MultiGet { keys } => {
                let total: u64 = keys
                    .iter()
                    .map(|k| 8 + st.kv.get(k).map_or(0, |v| v.len() as u64))
                    .sum();
                if total > self.shared.opts.max_pending_bytes {
                    return Err(drop(format!(
                        "MULTI_GET reply of {total} bytes is over the limit"
                    )));
                }
                let mut out = Vec::with_capacity(total as usize);
                for k in &keys {
                    let v = st.kv.get(k).map(Vec::as_slice).unwrap_or(&[]);
                    out.extend_from_slice(&(v.len() as u64).to_le_bytes());
                    out.extend_from_slice(v);
                }
                self.reply(st, out)?;
            }
            Request::MultiSet { pairs } => {
                for (k, v) in pairs {
                    set(st, k, v, max_total).map_err(drop)?;
                }
            }
            Request::CancelWait => {
                clear_wait(st, self.id);
                self.reply(st, vec![WAIT_CANCELED])?;
            }
            Request::Ping { nonce } => self.reply(st, nonce.to_le_bytes().to_vec())?,
            Request::QueuePush { key, value } => {
                let add = value.len() as u64;
                if st.bytes + add > max_total {
                    return Err(drop("store is full (max_total_bytes)".into()));
                }
                st.bytes += add;
                st.queues.entry(key.clone()).or_default().push_back(value);
                wake(st, &key);
            }
            Request::QueuePop { key } => {
                let q = st.queues.get_mut(&key);
                let len = q.as_ref().map_or(0, |q| q.len());
                let item = q.and_then(|q| q.pop_front());
                let mut out = (len as i64).to_le_bytes().to_vec();
                if let Some(item) = item {
                    st.bytes = st.bytes.saturating_sub(item.len() as u64);
                    out.extend_from_slice(&bytes_reply(&item));
                }
                if st.queues.get(&key).is_some_and(VecDeque::is_empty) {
                    st.queues.remove(&key);
                }
                self.reply(st, out)?;
            }
            Request::QueueLen { key } => {
                let n = st.queues.get(&key).map_or(0, |q| q.len()) as i64;
                self.reply(st, n.to_le_bytes().to_vec())?;
            }
        }
        Ok(())
    }
}

fn bytes_reply(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + v.len());
    out.extend_from_slice(&(v.len() as u64).to_le_bytes());
    out.extend_from_slice(v);
    out
}

fn exists(st: &State, k: &[u8]) -> bool {
    st.kv.contains_key(k) || st.queues.get(k).is_some_and(|q| !q.is_empty())
}

fn set(st: &mut State, key: Vec<u8>, value: Vec<u8>, max_total: u64) -> Result<(), String> {
    let old = st.kv.get(&key).map_or(0, |v| (key.len() + v.len()) as u64);
    let new = (key.len() + value.len()) as u64;
    let total = st.bytes.saturating_sub(old) + new;
    if total > max_total {
        return Err(format!(
            "store is full ({total} bytes over max_total_bytes {max_total})"
        ));
    }
    st.bytes = total;
    let k2 = key.clone();
    st.kv.insert(key, value);
    wake(st, &k2);
    Ok(())
}

/// Wakes the clients waiting for `key`: each whose last awaited key this was gets STOP_WAITING.
fn wake(st: &mut State, key: &[u8]) {
    let Some(ids) = st.waiting.remove(key) else {
        return;
    };
    for id in ids {
        let done = match st.awaited.get_mut(&id) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        if done {
            st.awaited.remove(&id);
            if let Some(c) = st.conns.get(&id) {
                let _ = send(c, vec![STOP_WAITING]);
            }
        }
    }
}

pub(super) fn clear_wait(st: &mut State, id: u64) {
    if st.awaited.remove(&id).is_none() {
        return;
    }
    st.waiting.retain(|_, ids| {
        ids.retain(|i| *i != id);
        !ids.is_empty()
    });
}
