//! One rank's soak loop: the warm-up, two batches in flight (batch k+1 enqueued, then
//! batch k finished and checked while it runs), the exchanges every few thousand calls,
//! the counts and the summary lines.

use std::time::{Duration, Instant};

use inc_comm::{AlgoPath as Path, Comm, DType};

use super::check::{check_batch, Checked, Reference};
use super::exchange::{Exchange, Report, EXCHANGE_CALLS};
use super::plan::{Batch, Planner, SAMPLES};
use super::{Args, Exec};

/// Everything one rank counted.
#[derive(Default, Debug)]
pub struct Totals {
    calls: u64,
    graph_calls: u64,
    in_place: u64,
    zero_copy: u64,
    forced: u64,
    bytes: u64,
    checked: Checked,
    warm_up_calls: u64,
    warm_up_wrong: u64,
    mismatched: u64,
    wrong_all: u64,
    stopped_early: bool,
    secs: f64,
}

impl Totals {
    fn add(&mut self, r: &Checked) {
        let c = &mut self.checked;
        c.full_calls += r.full_calls;
        c.sampled_calls += r.sampled_calls;
        c.elements += r.elements;
        c.checked += r.checked;
        c.wrong += r.wrong;
        c.wrong_calls += r.wrong_calls;
        if c.first_wrong.is_none() {
            c.first_wrong.clone_from(&r.first_wrong);
        }
    }

    pub fn passed(&self) -> bool {
        self.checked.wrong == 0
            && self.warm_up_wrong == 0
            && self.mismatched == 0
            && self.wrong_all == 0
    }
}

/// The inputs of one rank's soak.
pub struct Soak<'a> {
    /// This rank's communicator.
    pub comm: &'a Comm,
    /// The command line.
    pub args: &'a Args,
    /// The call sequence.
    pub planner: Planner,
    /// The expected outputs.
    pub reference: &'a Reference,
    /// The cross-rank comparison.
    pub exchange: Exchange,
}

impl Soak<'_> {
    fn check(&self, batch: &Batch, out: &[u8]) -> Checked {
        let threads = self.args.check_threads.max(1);
        match self.args.inject_wrong {
            Some(i) if self.comm.rank() == 0 => {
                if let Some(c) = batch.calls.iter().find(|c| c.index == i) {
                    let mut bad = out.to_vec();
                    if let Some(b) = bad.get_mut(c.out_off) {
                        *b ^= 1;
                    }
                    return check_batch(self.planner.seed, self.reference, batch, &bad, threads);
                }
                check_batch(self.planner.seed, self.reference, batch, out, threads)
            }
            _ => check_batch(self.planner.seed, self.reference, batch, out, threads),
        }
    }

    fn exchange(&self, t: &mut Totals, report: Report) -> Result<bool, String> {
        let (v, _) = self.exchange.round(&report)?;
        t.mismatched += v.mismatched;
        t.wrong_all = v.wrong_all;
        if let Some(m) = v.first_mismatch {
            if t.mismatched == v.mismatched {
                eprintln!("rank {}: ranks differ: {m}", self.comm.rank());
            }
        }
        Ok(v.stop)
    }

    pub fn run(&self, exec: &mut dyn Exec) -> Result<Totals, String> {
        let rank = self.comm.rank();
        let mut t = Totals::default();
        // Warm-up: every kernel compiled before the first capture; checked, not counted.
        let warm = self.planner.warm_up();
        let mut digests = Vec::new();
        if !warm.calls.is_empty() {
            exec.launch(0, &warm)?;
            let r = self.check(&warm, exec.finish(0, &warm)?);
            t.warm_up_calls = warm.calls.len() as u64;
            t.warm_up_wrong = r.wrong;
            if let Some(w) = &r.first_wrong {
                eprintln!("rank {rank}: warm-up {w}");
            }
            digests = r.digests;
        }
        // also the start line: every rank begins the timed part together
        let start = Report {
            stop: false,
            calls: 0,
            wrong: t.warm_up_wrong,
            first_call: u64::MAX,
            digests,
        };
        self.exchange(&mut t, start)?;
        let t0 = Instant::now();
        let limit = (self.args.time_limit > 0.0)
            .then(|| Duration::try_from_secs_f64(self.args.time_limit).ok())
            .flatten();
        let can = |p: Path, bytes: u64, dtype: DType| self.comm.check_path(p, bytes, dtype).is_ok();
        let (mut next, mut number, mut stop) = (0u64, 0u64, false);
        let mut pending: Option<Batch> = None;
        let mut report = Report::default();
        let mut last_print = Instant::now();
        loop {
            // start batch k+1 ...
            let launched = if !stop && next < self.args.calls {
                let b = self.planner.batch(number, next, self.args.calls, can);
                exec.launch((number % 2) as usize, &b)?;
                next += b.calls.len() as u64;
                number += 1;
                Some(b)
            } else {
                None
            };
            // ... then finish and check batch k while it runs
            if let Some(b) = pending.take() {
                let r = self.check(&b, exec.finish((b.number % 2) as usize, &b)?);
                self.note_wrong(&t, &r);
                t.add(&r);
                t.calls += b.calls.len() as u64;
                t.graph_calls += if b.graph { b.calls.len() as u64 } else { 0 };
                for c in &b.calls {
                    // host calls on a forced path (sim) are out of place
                    t.in_place += u64::from(
                        !c.zero_copy && c.in_place && (self.planner.graphs || c.path.is_none()),
                    );
                    t.zero_copy += u64::from(c.zero_copy);
                    t.forced += u64::from(c.path.is_some());
                    t.bytes += c.bytes() as u64;
                }
                if report.digests.is_empty() {
                    report.first_call = b.calls.first().map_or(0, |c| c.index);
                }
                report.digests.extend_from_slice(&r.digests);
                if report.digests.len() >= EXCHANGE_CALLS || launched.is_none() {
                    report.stop = limit.is_some_and(|l| t0.elapsed() >= l);
                    report.calls = t.calls;
                    report.wrong = t.checked.wrong + t.warm_up_wrong;
                    stop |= self.exchange(&mut t, std::mem::take(&mut report))?;
                    if rank == 0 && last_print.elapsed() >= Duration::from_secs(10) {
                        last_print = Instant::now();
                        let s = t0.elapsed().as_secs_f64();
                        println!(
                            "soak: {} calls in {s:.1} s ({:.0} calls/s), {} wrong element(s) on all ranks, {} call(s) differing between ranks",
                            t.calls,
                            t.calls as f64 / s.max(1e-9),
                            t.wrong_all,
                            t.mismatched
                        );
                    }
                }
            }
            pending = launched;
            if pending.is_none() {
                break;
            }
        }
        t.secs = t0.elapsed().as_secs_f64();
        t.stopped_early = t.calls < self.args.calls;
        Ok(t)
    }

    fn note_wrong(&self, t: &Totals, r: &Checked) {
        if t.checked.wrong == 0 {
            if let Some(w) = &r.first_wrong {
                eprintln!("rank {}: {w}", self.comm.rank());
            }
        }
    }
}

/// The summary lines of one rank (and of all ranks, on rank 0).
pub fn summary(rank: usize, world: usize, args: &Args, t: &Totals) -> String {
    let c = &t.checked;
    let pct = |a: u64, b: u64| 100.0 * a as f64 / (b.max(1)) as f64;
    let verdict = if t.passed() { "PASS" } else { "FAIL" };
    let mut s = format!(
        "rank {rank}: {verdict}: {} calls in {:.1} s = {:.0} calls/s ({:.2} GB/s of outputs); {} in CUDA graphs, {} eager, {} in place, {} zero-copy, {} on a forced path (+{} warm-up calls)\n",
        t.calls,
        t.secs,
        t.calls as f64 / t.secs.max(1e-9),
        t.bytes as f64 / t.secs.max(1e-9) / 1e9,
        t.graph_calls,
        t.calls - t.graph_calls,
        t.in_place,
        t.zero_copy,
        t.forced,
        t.warm_up_calls,
    );
    s += &format!(
        "rank {rank}: element-wise vs the CPU reference: {} calls ({:.1}%) in full, {} at <= {} sampled elements; {} of {} output elements compared ({:.2}%): {} wrong in {} call(s)\n",
        c.full_calls,
        pct(c.full_calls, t.calls),
        c.sampled_calls,
        SAMPLES + 2,
        c.checked,
        c.elements,
        pct(c.checked, c.elements),
        c.wrong,
        c.wrong_calls,
    );
    s += &format!(
        "rank {rank}: cross-rank bit identity (digest of every output byte, every call, {world} ranks): {}",
        if t.mismatched == 0 {
            "identical".to_string()
        } else {
            format!("{} call(s) differ", t.mismatched)
        }
    );
    if t.stopped_early {
        s += &format!(
            "\nrank {rank}: stopped by --time-limit {} s after {} of {} calls",
            args.time_limit, t.calls, args.calls
        );
    }
    if rank == 0 {
        s += &format!(
            "\nsoak: {}: {world} ranks, {} calls each, {:.0} calls/s, {} wrong element(s) on all ranks, {} call(s) differing between ranks",
            if t.passed() { "PASS" } else { "FAIL" },
            t.calls,
            t.calls as f64 / t.secs.max(1e-9),
            t.wrong_all,
            t.mismatched
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn the_summary_states_the_checked_fraction_and_the_verdict() {
        let args = Cli::try_parse_from(["soak", "--calls", "100"])
            .unwrap()
            .args;
        let mut t = Totals {
            calls: 100,
            graph_calls: 50,
            secs: 2.0,
            ..Totals::default()
        };
        t.checked.full_calls = 25;
        t.checked.sampled_calls = 75;
        t.checked.elements = 10_000;
        t.checked.checked = 2_500;
        let s = summary(0, 4, &args, &t);
        assert!(
            s.contains("rank 0: PASS: 100 calls in 2.0 s = 50 calls/s"),
            "{s}"
        );
        assert!(s.contains("50 in CUDA graphs, 50 eager"), "{s}");
        assert!(
            s.contains("25 calls (25.0%) in full, 75 at <= 64 sampled"),
            "{s}"
        );
        assert!(
            s.contains("2500 of 10000 output elements compared (25.00%)"),
            "{s}"
        );
        assert!(s.contains("4 ranks): identical"), "{s}");
        assert!(s.contains("soak: PASS: 4 ranks"), "{s}");
        t.mismatched = 2;
        let s = summary(1, 4, &args, &t);
        assert!(
            s.starts_with("rank 1: FAIL") && s.contains("2 call(s) differ"),
            "{s}"
        );
        assert!(!s.contains("soak:"), "{s}");
        t.mismatched = 0;
        t.wrong_all = 1;
        assert!(!t.passed());
        t.wrong_all = 0;
        t.warm_up_wrong = 1;
        assert!(!t.passed());
        t.warm_up_wrong = 0;
        t.stopped_early = true;
        assert!(summary(0, 4, &args, &t).contains("stopped by --time-limit"));
    }
}
