//! [`store_all_gather`]: every rank contributes bytes, every rank gets all contributions.
//!
//! # Key layout and the round rule
//!
//! For group prefix `P`, rank `r` of `world`:
//!
//! * `P/calls/r` — rank `r`'s own call counter. Each call does `add(P/calls/r, 1)` and uses the
//!   result `n` as its round number. The counter is per rank (never shared), so no two ranks
//!   race on it: the `n`-th all-gather of every rank is round `n`, as long as all ranks of the
//!   group call their all-gathers on `P` in the same order (which a collective requires anyway).
//!   It lives in the store, not in the process, so it is right in multi-thread mode (many ranks
//!   in one process) and for a rank that re-creates its communicator on the same store.
//! * `P/n/r` — rank `r`'s contribution to round `n`.
//!
//! Two rendezvous never collide when they use different prefixes (a group name, e.g.
//! `inc/<group-id>/hs1`), and two rounds on one prefix never collide thanks to `n`.
//!
//! # Clean-up
//!
//! When rank `r` has read all contributions of round `n`, every rank has *started* round `n`,
//! hence finished reading round `n-1`. So rank `r` then deletes its own `P/(n-1)/r`. At most one
//! round of keys (plus one counter per rank) stays in the store per prefix.

use std::time::{Duration, Instant};

use crate::{Store, StoreError};

/// All-gathers `bytes` over `world` ranks through `store`; returns the contributions indexed by
/// rank (this rank's own included). Blocks until all ranks contributed or `timeout` passes; the
/// timeout error names the ranks that never wrote.
pub fn store_all_gather(
    store: &dyn Store,
    prefix: &str,
    rank: usize,
    world: usize,
    bytes: &[u8],
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, StoreError> {
    if world == 0 || rank >= world {
        return Err(StoreError::InvalidArgument(format!(
            "all-gather `{prefix}`: rank {rank} is not in a world of {world}"
        )));
    }
    let start = Instant::now();
    let round = store.add(&format!("{prefix}/calls/{rank}"), 1)?;
    store.set(&format!("{prefix}/{round}/{rank}"), bytes)?;
    let keys: Vec<String> = (0..world)
        .map(|r| format!("{prefix}/{round}/{r}"))
        .collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let left = timeout.saturating_sub(start.elapsed());
    let out = match store.multi_get(&refs, left) {
        Ok(v) => v,
        Err(e) if e.is_timeout() => {
            // Name the ranks that never wrote (best effort: a failing check counts as missing).
            let missing = (0..world)
                .filter(|r| !matches!(refs.get(*r).map(|k| store.check(&[k])), Some(Ok(true))))
                .collect();
            return Err(StoreError::GatherTimeout {
                prefix: prefix.to_owned(),
                round,
                missing,
                timeout,
            });
        }
        Err(e) => return Err(e),
    };
    if out.len() != world {
        return Err(StoreError::Protocol(format!(
            "all-gather `{prefix}`: store returned {} values for {world} ranks",
            out.len()
        )));
    }
    if round > 1 {
        // Safe: see the module docs. A failure here only leaves a stale key behind.
        let _ = store.delete(&format!("{prefix}/{}/{rank}", round - 1));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStore;
    use std::sync::Arc;

    fn run_group(store: Arc<dyn Store>, prefix: &str, world: usize, rounds: usize) {
        let hs: Vec<_> = (0..world)
            .map(|r| {
                let s = store.clone();
                let p = prefix.to_owned();
                std::thread::spawn(move || {
                    for n in 0..rounds {
                        let mine = format!("{p}:{n}:{r}").into_bytes();
                        let all =
                            store_all_gather(&*s, &p, r, world, &mine, Duration::from_secs(20))
                                .unwrap();
                        for (q, v) in all.iter().enumerate() {
                            assert_eq!(v, format!("{p}:{n}:{q}").as_bytes());
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    }

    #[test]
    fn many_rounds_two_groups_concurrently() {
        let s: Arc<dyn Store> = Arc::new(MemStore::new());
        let a = {
            let s = s.clone();
            std::thread::spawn(move || run_group(s, "ga", 5, 20))
        };
        run_group(s.clone(), "gb", 3, 20);
        a.join().unwrap();
        // Clean-up: only the last round's contributions and the counters remain.
        assert_eq!(s.num_keys().unwrap(), (5 + 5) + (3 + 3));
    }

    #[test]
    fn timeout_names_missing_ranks() {
        let s = MemStore::new();
        let e = store_all_gather(&s, "g", 1, 4, b"x", Duration::from_millis(30)).unwrap_err();
        match e {
            StoreError::GatherTimeout { missing, round, .. } => {
                assert_eq!(missing, vec![0, 2, 3]);
                assert_eq!(round, 1);
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn bad_rank_is_rejected() {
        let s = MemStore::new();
        assert!(matches!(
            store_all_gather(&s, "g", 4, 4, b"", Duration::ZERO),
            Err(StoreError::InvalidArgument(_))
        ));
    }
}
