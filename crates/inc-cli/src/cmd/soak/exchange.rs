//! The cross-rank part of the soak, through a store of its own (the launch's TCP store,
//! or an in-memory one for threads), not through the library under test: every few
//! thousand calls each rank publishes the digests of its outputs, its running counts and
//! whether it wants to stop (time limit); every rank then compares all digests (the
//! outputs must be bit-identical on every rank) and all ranks take the same decision.

use std::sync::Arc;
use std::time::Duration;

use inc_store::{store_all_gather, Store};

/// Calls between two exchanges (at least: an exchange follows the batch that reaches it).
pub const EXCHANGE_CALLS: usize = 4096;

const VERSION: u8 = 1;

/// What one rank publishes at an exchange.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// This rank wants to stop (its time limit passed).
    pub stop: bool,
    /// Calls done so far.
    pub calls: u64,
    /// Wrong elements found so far.
    pub wrong: u64,
    /// Index of the call of `digests[0]`.
    pub first_call: u64,
    /// Digests of the outputs of the calls since the last exchange, in call order.
    pub digests: Vec<u64>,
}

impl Report {
    /// Wire form: version, stop, calls, wrong, first call, count, digests (little endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(34 + 8 * self.digests.len());
        v.push(VERSION);
        v.push(u8::from(self.stop));
        for x in [self.calls, self.wrong, self.first_call] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(&(self.digests.len() as u64).to_le_bytes());
        for d in &self.digests {
            v.extend_from_slice(&d.to_le_bytes());
        }
        v
    }

    /// Parses [`Report::encode`]'s form.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        let u64_at = |at: usize| -> Result<u64, String> {
            b.get(at..at + 8)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| format!("report of {} bytes is truncated", b.len()))
        };
        if b.first() != Some(&VERSION) {
            return Err(format!(
                "report version {:?}, expected {VERSION}",
                b.first()
            ));
        }
        let stop = b.get(1).copied().unwrap_or(0) != 0;
        let (calls, wrong, first_call, count) = (u64_at(2)?, u64_at(10)?, u64_at(18)?, u64_at(26)?);
        let count = usize::try_from(count).map_err(|_| "digest count overflows".to_string())?;
        if b.len() != 34 + 8 * count {
            return Err(format!("report of {} bytes for {count} digests", b.len()));
        }
        let digests = (0..count)
            .map(|i| u64_at(34 + 8 * i))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            stop,
            calls,
            wrong,
            first_call,
            digests,
        })
    }
}

/// What every rank concludes from one exchange (the same on every rank).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Some rank wants to stop: no batch starts after this exchange's next one.
    pub stop: bool,
    /// Calls whose output digest differs between ranks.
    pub mismatched: u64,
    /// The first such call and the ranks' digests of it.
    pub first_mismatch: Option<String>,
    /// Wrong elements reported by all ranks together (running total).
    pub wrong_all: u64,
}

/// Compares the reports of all ranks (index = rank).
pub fn judge(reports: &[Report]) -> Verdict {
    let mut v = Verdict {
        stop: reports.iter().any(|r| r.stop),
        wrong_all: reports.iter().map(|r| r.wrong).sum(),
        ..Verdict::default()
    };
    let Some(r0) = reports.first() else {
        return v;
    };
    if reports
        .iter()
        .any(|r| r.first_call != r0.first_call || r.digests.len() != r0.digests.len())
    {
        v.mismatched = r0.digests.len().max(1) as u64;
        v.first_mismatch = Some(format!(
            "the ranks disagree on the calls of an exchange: {:?}",
            reports
                .iter()
                .map(|r| (r.first_call, r.digests.len()))
                .collect::<Vec<_>>()
        ));
        return v;
    }
    for (i, d0) in r0.digests.iter().enumerate() {
        if reports.iter().any(|r| r.digests.get(i) != Some(d0)) {
            v.mismatched += 1;
            if v.first_mismatch.is_none() {
                let all: Vec<String> = reports
                    .iter()
                    .map(|r| format!("{:016x}", r.digests.get(i).copied().unwrap_or(0)))
                    .collect();
                v.first_mismatch = Some(format!(
                    "call {}: output digests per rank {}",
                    r0.first_call + i as u64,
                    all.join(" ")
                ));
            }
        }
    }
    v
}

/// One rank's end of the exchanges.
pub struct Exchange {
    store: Arc<dyn Store>,
    prefix: String,
    rank: usize,
    world: usize,
    timeout: Duration,
}

impl Exchange {
    /// Exchanges of `rank` of `world` under `prefix` in `store`, each bounded by `timeout`.
    pub fn new(
        store: Arc<dyn Store>,
        prefix: String,
        rank: usize,
        world: usize,
        timeout: Duration,
    ) -> Self {
        Self {
            store,
            prefix,
            rank,
            world,
            timeout,
        }
    }

    /// Publishes `mine`, waits for every rank's report (at most the timeout: a dead peer
    /// makes it an error) and judges them.
    pub fn round(&self, mine: &Report) -> Result<(Verdict, Vec<Report>), String> {
        let all = store_all_gather(
            &*self.store,
            &self.prefix,
            self.rank,
            self.world,
            &mine.encode(),
            self.timeout,
        )
        .map_err(|e| format!("cross-rank exchange: {e}"))?;
        let reports = all
            .iter()
            .enumerate()
            .map(|(r, b)| Report::decode(b).map_err(|e| format!("rank {r}'s exchange: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((judge(&reports), reports))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inc_store::MemStore;

    fn rep(first_call: u64, digests: Vec<u64>) -> Report {
        Report {
            stop: false,
            calls: first_call + digests.len() as u64,
            wrong: 0,
            first_call,
            digests,
        }
    }

    #[test]
    fn reports_round_trip_and_reject_garbage() {
        let r = Report {
            stop: true,
            calls: 12,
            wrong: 3,
            first_call: 8,
            digests: vec![1, u64::MAX, 7, 0],
        };
        assert_eq!(Report::decode(&r.encode()).unwrap(), r);
        let e = r.encode();
        assert!(Report::decode(&e[..e.len() - 1]).is_err());
        assert!(Report::decode(&[]).is_err());
        assert!(Report::decode(&[9; 40]).is_err());
        let mut long = e.clone();
        long.push(0);
        assert!(Report::decode(&long).is_err());
    }

    #[test]
    fn judge_finds_differing_digests_and_any_stop() {
        let a = rep(100, vec![1, 2, 3]);
        let v = judge(&[a.clone(), a.clone(), a.clone()]);
        assert_eq!((v.stop, v.mismatched), (false, 0));
        let mut b = a.clone();
        b.digests[1] = 9;
        b.stop = true;
        b.wrong = 4;
        let v = judge(&[a.clone(), a.clone(), b]);
        assert_eq!((v.stop, v.mismatched, v.wrong_all), (true, 1, 4));
        assert!(v.first_mismatch.unwrap().starts_with("call 101:"));
        let v = judge(&[a.clone(), rep(101, vec![1, 2, 3])]);
        assert_eq!(v.mismatched, 3);
        let v = judge(&[a, rep(100, vec![1, 2])]);
        assert!(v.mismatched > 0);
    }

    #[test]
    fn ranks_agree_through_a_store_and_a_missing_rank_times_out() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let verdicts: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|rank| {
                    let store = store.clone();
                    s.spawn(move || {
                        let x = Exchange::new(store, "t".into(), rank, 3, Duration::from_secs(10));
                        let mut out = Vec::new();
                        for round in 0..3u64 {
                            let mut r = rep(round * 2, vec![round, round + 1]);
                            r.stop = rank == 2 && round == 1;
                            out.push(x.round(&r).unwrap().0);
                        }
                        out
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for v in &verdicts {
            assert_eq!(v, &verdicts[0]);
            assert_eq!(
                v.iter().map(|x| x.stop).collect::<Vec<_>>(),
                [false, true, false]
            );
            assert!(v.iter().all(|x| x.mismatched == 0));
        }
        let x = Exchange::new(store, "u".into(), 0, 2, Duration::from_millis(200));
        let t = std::time::Instant::now();
        let e = x.round(&rep(0, vec![])).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5), "{e}");
    }
}
