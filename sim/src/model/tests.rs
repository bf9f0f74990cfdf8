//! Litmus tests of the memory model and a differential test of its store buffer.

#[cfg(test)] // (the whole file is the parent's test module)
use super::*;

/// Message passing: T0 writes data then flag; T1 reads flag then data.
/// Returns the set of data values T1 can see after seeing the flag.
fn mp(flag_store: MemOrder, flag_load: MemOrder, fences: bool) -> Vec<u64> {
    let mut seen = Vec::new();
    for pick in 0..2 {
        let mut m = Memory::new(2, 2);
        m.store(0, 0, 42, 0, MemOrder::Relaxed);
        if fences {
            m.fence(0);
        }
        m.store(0, 1, 1, 0, flag_store);
        // Land the flag first when allowed (relaxed stores may reorder).
        let mut l = Vec::new();
        m.landable(&mut l);
        let flag_first = l.iter().position(|&(_, i)| i == 1);
        if let Some(pos) = flag_first {
            let (t, i) = l[pos];
            m.land(t, i);
        } else {
            m.flush(0);
        }
        if m.load(1, 1, flag_load, 0).0 == 1 {
            if fences {
                m.fence(1);
            }
            seen.push(m.load(1, 0, MemOrder::Relaxed, pick).0);
        }
        m.flush(0);
    }
    seen.sort_unstable();
    seen.dedup();
    seen
}

#[test]
fn release_acquire_forbids_stale_data() {
    assert_eq!(mp(MemOrder::Release, MemOrder::Acquire, false), [42]);
    assert_eq!(mp(MemOrder::Relaxed, MemOrder::Relaxed, true), [42]);
}

#[test]
fn relaxed_message_passing_can_read_stale_data() {
    assert!(mp(MemOrder::Relaxed, MemOrder::Relaxed, false).contains(&0));
    // Release without acquire is not enough either.
    let mut m = Memory::new(2, 2);
    m.store(0, 0, 42, 0, MemOrder::Relaxed);
    m.store(0, 1, 1, 0, MemOrder::Release);
    m.flush(0);
    assert_eq!(m.load(1, 1, MemOrder::Relaxed, 0).0, 1);
    assert_eq!(m.load_choices(1, 0, MemOrder::Relaxed), 2);
    assert_eq!(m.load(1, 0, MemOrder::Relaxed, 1).0, 0);
}

#[test]
fn coherence_and_nc_loads() {
    let mut m = Memory::new(1, 2);
    m.store(0, 0, 1, 0, MemOrder::Relaxed);
    m.store(0, 0, 2, 0, MemOrder::Relaxed);
    let mut l = Vec::new();
    m.landable(&mut l);
    assert_eq!(l, [(0, 0)], "same-location stores land in order");
    assert_eq!(m.load(0, 0, MemOrder::Relaxed, 5).0, 2, "forwarding");
    m.flush(0);
    assert_eq!(m.load(1, 0, MemOrder::Relaxed, 0).0, 2);
    // Coherent loads never go back; .nc loads may.
    assert_eq!(m.load(1, 0, MemOrder::Relaxed, 2).0, 2);
    assert_eq!(m.load(1, 0, MemOrder::NonCoherent, 2).0, 0);
}

#[test]
fn release_store_waits_for_earlier_stores() {
    let mut m = Memory::new(2, 1);
    m.store(0, 0, 1, 0, MemOrder::Relaxed);
    m.store(0, 1, 1, 0, MemOrder::Release);
    let mut l = Vec::new();
    m.landable(&mut l);
    assert_eq!(l, [(0, 0)]);
    // A relaxed store after a release may overtake it.
    m.store(0, 0, 5, 0, MemOrder::Relaxed);
    let mut m2 = Memory::new(3, 1);
    m2.store(0, 1, 1, 0, MemOrder::Release);
    m2.store(0, 2, 1, 0, MemOrder::Relaxed);
    let mut l2 = Vec::new();
    m2.landable(&mut l2);
    assert_eq!(l2, [(0, 0), (0, 1)]);
}

#[test]
fn ready_list_matches_the_landing_rules_and_reset_restores_all() {
    let mut m = Memory::new(4, 2);
    let brute = |m: &Memory| {
        let mut v = Vec::new();
        for (tid, th) in m.threads.iter().enumerate() {
            // The landing rules, from scratch over the live slots.
            let first = th.pending.iter().position(|p| p.live);
            for (i, p) in th.pending.iter().enumerate() {
                let ok = p.live
                    && if p.release {
                        first == Some(i)
                    } else {
                        th.pending[..i].iter().all(|q| !q.live || q.loc != p.loc)
                    };
                if ok {
                    v.push((tid, i));
                }
            }
        }
        v
    };
    let ops: [(usize, usize, MemOrder); 8] = [
        (0, 0, MemOrder::Relaxed),
        (0, 1, MemOrder::Relaxed),
        (0, 0, MemOrder::Relaxed),
        (0, 2, MemOrder::Release),
        (1, 3, MemOrder::Relaxed),
        (0, 3, MemOrder::Relaxed),
        (1, 3, MemOrder::Release),
        (1, 0, MemOrder::Relaxed),
    ];
    for (k, &(t, l, o)) in ops.iter().enumerate() {
        m.store(t, l, k as u64 + 1, 0, o);
        let mut got = Vec::new();
        m.landable(&mut got);
        assert_eq!(got, brute(&m));
    }
    let mut landed = Vec::new();
    while let Some(&(t, i)) = {
        let mut l = Vec::new();
        m.landable(&mut l);
        l.last().copied().as_ref()
    } {
        m.land(t, i);
        let mut got = Vec::new();
        m.landable(&mut got);
        assert_eq!(got, brute(&m));
    }
    m.take_landed(&mut landed);
    assert_eq!(landed.len(), ops.len());
    assert_eq!(m.load_choices(1, 1, MemOrder::Relaxed), 2);
    assert_eq!(m.load(1, 1, MemOrder::Relaxed, 0).0, 2);
    m.reset();
    assert_eq!(m.load_choices(1, 1, MemOrder::Relaxed), 1);
    assert_eq!(m.load(1, 0, MemOrder::Relaxed, 0), (0, 0));
    assert!(!m.has_pending(0));
    m.take_landed(&mut landed);
    assert!(landed.is_empty());
}

#[test]
fn store_buffer_matches_a_naive_model_over_random_ops() {
    // Naive reference: per thread a program-order list of (loc, val, release).
    let mut x = 0x2545_f491_u64;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for _round in 0..50 {
        let mut m = Memory::new(4, 3);
        let mut naive: Vec<Vec<(usize, u64, bool)>> = vec![Vec::new(); 3];
        for step in 0..200u64 {
            let t = rnd(3) as usize;
            match rnd(10) {
                0..=4 => {
                    let loc = rnd(4) as usize;
                    let rel = rnd(4) == 0;
                    let o = if rel {
                        MemOrder::Release
                    } else {
                        MemOrder::Relaxed
                    };
                    m.store(t, loc, step + 1, 0, o);
                    naive[t].push((loc, step + 1, rel));
                }
                5..=8 => {
                    let mut l = Vec::new();
                    m.landable_of(t, &mut l);
                    // Naive landable set, as values.
                    let nv = &naive[t];
                    let want: Vec<u64> = nv
                        .iter()
                        .enumerate()
                        .filter(|&(i, &(loc, _, rel))| {
                            if rel {
                                i == 0
                            } else {
                                nv[..i].iter().all(|q| q.0 != loc)
                            }
                        })
                        .map(|(_, p)| p.1)
                        .collect();
                    let got: Vec<u64> = l
                        .iter()
                        .map(|&(_, s)| m.threads[t].pending[s].write.val)
                        .collect();
                    assert_eq!(got, want);
                    assert_eq!(m.ready_len(t), want.len());
                    if !l.is_empty() {
                        let j = rnd(l.len() as u64) as usize;
                        let (_, s) = l[j];
                        let stamp = m.pending_stamp(t, s).unwrap();
                        assert_eq!(m.landable_by_stamp(t, stamp), Some(s));
                        assert_eq!(m.ready_nth(t, j), Some(s));
                        let v = m.threads[t].pending[s].write.val;
                        m.land(t, s);
                        let k = naive[t].iter().position(|p| p.1 == v).unwrap();
                        naive[t].remove(k);
                    }
                }
                _ => {
                    m.flush(t);
                    naive[t].clear();
                }
            }
            for (tt, nv) in naive.iter().enumerate() {
                assert_eq!(m.has_pending(tt), !nv.is_empty());
                for loc in 0..4 {
                    if let Some(p) = nv.iter().rev().find(|p| p.0 == loc) {
                        assert_eq!(m.newest(tt, loc).0, p.1, "forwarding");
                        assert_eq!(m.load_choices(tt, loc, MemOrder::Relaxed), 1);
                    }
                }
            }
        }
    }
}

#[test]
fn rmw_reads_newest_and_synchronises() {
    let mut m = Memory::new(2, 2);
    m.store(0, 0, 7, 0, MemOrder::Relaxed);
    assert_eq!(m.rmw(0, 1, |v| Some((v + 1, 0))), 0);
    assert_eq!(
        m.rmw(1, 1, |v| if v > 0 { Some((v - 1, 0)) } else { None }),
        1
    );
    // T1 acquired T0's rmw, so it cannot read the initial data any more.
    assert_eq!(m.load_choices(1, 0, MemOrder::Relaxed), 1);
    assert_eq!(m.load(1, 0, MemOrder::Relaxed, 1).0, 7);
}
