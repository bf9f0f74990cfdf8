//! Verdicts: deadlock or timeout when nothing can move, violations and their traces, the
//! reference result and the check of every call's outcome.

use super::*;
use crate::program::{Protocol, Step};
use crate::types::{
    flag_epoch, flag_sig, Algo, ERR_CALL_MISMATCH, ERR_PEER_ABORT, ERR_SEQ_MISMATCH, ERR_TIMEOUT,
};

impl Run<'_> {
    /// Nothing can run and no store can land.
    pub(super) fn stuck(&mut self) {
        let waiting: Vec<usize> = (0..self.blocks.len())
            .filter(|&i| self.blocks[i].state == BState::Running)
            .collect();
        if waiting.is_empty() {
            // Ranks whose blocks are all done end their call in maybe_end_call; nothing
            // else can be pending. Avoid spinning forever.
            self.stop = true;
            return;
        }
        if self.is_seed() || self.cfg.fault.is_none() {
            let desc: Vec<String> = waiting
                .iter()
                .take(8)
                .map(|&i| {
                    let step = self.cur_step(i).map_or("?".into(), |s| s.describe());
                    let peers = self
                        .cur_step(i)
                        .and_then(Self::barrier_of)
                        .map(|(_, set)| self.members(i / self.max_g, set))
                        .unwrap_or_default();
                    let q = peers.get(self.blocks[i].cursor).copied().unwrap_or(0);
                    format!(
                        "r{} b{} {} waits on r{}",
                        i / self.max_g,
                        i % self.max_g,
                        step,
                        q
                    )
                })
                .collect();
            self.violation(
                ViolationKind::Deadlock,
                format!("all live blocks wait: {}", desc.join("; ")),
                None,
            );
            self.stop = true;
            return;
        }
        // Bounded waits: time passes, the scheduler picks who times out first.
        self.timeouts_fired = true;
        let g = self.max_g;
        let i = if let Chooser::Replay { script, pos } = &mut self.chooser {
            replay_pick(script, pos, |d| match d {
                Decision::Timeout { rank, block } => waiting
                    .iter()
                    .copied()
                    .find(|&i| block < g && i == rank * g + block),
                _ => None,
            })
            .or(waiting.first().copied())
        } else {
            let menu = Menu {
                blocks: &waiting,
                groups: &[],
            };
            match self.chooser.choose(&menu, g, &mut self.events_buf) {
                Pick::Block(i) => Some(i),
                Pick::Land(..) => None,
            }
        };
        let i = i.unwrap_or(0);
        self.trail.push(Decision::Timeout {
            rank: i / g,
            block: i % g,
        });
        let r = i / self.max_g;
        let peers = self
            .cur_step(i)
            .and_then(Self::barrier_of)
            .map(|(_, set)| self.members(r, set))
            .unwrap_or_default();
        let q = peers.get(self.blocks[i].cursor).copied().unwrap_or(r);
        self.fail(i, ERR_TIMEOUT, q);
    }

    pub(super) fn violation(
        &mut self,
        kind: ViolationKind,
        message: String,
        focus: Option<(usize, usize)>,
    ) {
        if self.violations.iter().any(|v| v.kind == kind) {
            return;
        }
        let trace = self.render_trace(focus);
        self.violations.push(Violation {
            kind,
            message,
            seed: 0,
            trace,
            schedule: self.trail.clone(),
            shrink: None,
            events: self.events.len(),
            focus,
        });
        if self.stop_on == Some(kind) {
            self.stop = true;
        }
    }

    /// The events so far, one line each: every rank's when they fit in `MAX_LINES`,
    /// else only the `focus` ranks' (when given), and at most the last `MAX_LINES`.
    pub(super) fn render_trace(&self, focus: Option<(usize, usize)>) -> Vec<String> {
        const MAX_LINES: usize = 60;
        let all = self.events.len() <= MAX_LINES;
        let keep = |e: &Event| all || focus.is_none_or(|(a, b)| e.rank == a || e.rank == b);
        let lines: Vec<String> = self
            .events
            .iter()
            .filter(|e| keep(e))
            .map(|e| {
                let who = match e.block {
                    Some(b) => format!("r{} b{}", e.rank, b),
                    None => format!("r{}   ", e.rank),
                };
                let what = match &e.ev {
                    Ev::Input { chunks } => {
                        format!("user writes its input into its own buffer ({chunks} chunks)")
                    }
                    Ev::Launch { grid, epoch } => {
                        if self.is_seed() {
                            format!("launch kernel ({grid} blocks)")
                        } else {
                            format!("launch kernel ({grid} blocks, epoch {epoch})")
                        }
                    }
                    Ev::StepDone { step } => {
                        let s = self
                            .steps_prog
                            .get(*step)
                            .map_or("?".into(), Step::describe);
                        format!("{step} {s} done")
                    }
                    Ev::Signal { peer, val } => {
                        if self.is_seed() {
                            format!("signal r{peer}: atomicAdd_system(+1)")
                        } else {
                            format!(
                                "signal r{peer}: st.release flag = epoch {} sig {:#010x}",
                                flag_epoch(*val),
                                flag_sig(*val)
                            )
                        }
                    }
                    Ev::Passed { peer, val } => {
                        if self.is_seed() {
                            format!("wait r{peer}: counter {val} -> CAS down, passed")
                        } else {
                            format!(
                                "wait r{peer}: ld.acquire saw epoch {}, passed",
                                flag_epoch(*val)
                            )
                        }
                    }
                    Ev::Error { code, peer } => {
                        format!(
                            "ERROR {} (peer r{peer})",
                            crate::types::error_code_name(*code)
                        )
                    }
                    Ev::Ended { ok } => {
                        format!("kernel complete ({})", if *ok { "ok" } else { "error" })
                    }
                    Ev::Killed => "rank killed (never calls again)".into(),
                    Ev::BadRead { text } => format!("!! {text}"),
                };
                format!("#{:<5} {who} call {}: {what}", e.n, e.call)
            })
            .collect();
        if lines.len() > MAX_LINES {
            let mut out = vec![format!(
                "... {} earlier events omitted",
                lines.len() - MAX_LINES
            )];
            out.extend(lines[lines.len() - MAX_LINES..].iter().cloned());
            out
        } else {
            lines
        }
    }

    /// Reference value of chunk c of call k on rank r.
    pub(super) fn reference(&self, r: usize, k: usize, c: usize) -> u64 {
        let w = self.cfg.world;
        let inp = |q: usize| input_value(q, k, c);
        match (self.cfg.protocol, self.cfg.algo) {
            (Protocol::Inc, Algo::OneShot | Algo::TwoShot) => fold_over((0..w).map(inp)),
            (Protocol::Seed, Algo::OneShot) => fold_over((0..w).map(|j| inp((r + j) % w))),
            (Protocol::Seed, Algo::TwoShot) => {
                let chunks = self.count(r, k).1;
                let s = chunks.div_ceil(w).max(1);
                let owner = (c / s).min(w - 1);
                fold_over((0..w).map(|j| inp((owner + j) % w)))
            }
            // Checked by crate::push (check() dispatches before a Run exists).
            (_, Algo::PushOneShot) => fold_over((0..w).map(inp)),
            (_, Algo::Hcm) => {
                let quad = |x: usize| {
                    let row = self.hcm.get(x).copied().unwrap_or([0; 4]);
                    let mut q = vec![x, row[0], row[1], row[2]];
                    if !self.is_seed() {
                        q.sort_unstable();
                    }
                    fold_over(q.into_iter().map(inp))
                };
                let (a, b) = self.relay_order(r);
                mix(quad(a), quad(b))
            }
        }
    }

    /// Checks the outcome of call k of rank r as its kernel completes (so a violation's
    /// trace ends there): errors only where a fault explains them, results equal to the
    /// reference, and no completed call that a fault should have stopped.
    pub(super) fn check_outcome(&mut self, r: usize, k: usize) {
        let fault = self.cfg.fault;
        let Some(res) = self.ranks.get_mut(r).and_then(|s| s.results.get_mut(k)) else {
            return;
        };
        let res = std::mem::replace(res, CallOutcome::Err(0));
        match &res {
            CallOutcome::Ok(out) => {
                let faulty_call = match fault {
                    Some(Fault::Kill { call, .. }) => k >= call,
                    Some(Fault::Mismatch { call, .. }) => k >= call,
                    Some(Fault::EpochSkew { .. }) => true,
                    None => false,
                };
                if faulty_call {
                    let (kind, what) = match fault {
                        Some(Fault::Kill { .. }) => (
                            ViolationKind::Timeout,
                            "completed although a rank it depends on is dead",
                        ),
                        _ => (
                            ViolationKind::SeqMismatch,
                            "completed a call the ranks disagree on, undetected",
                        ),
                    };
                    self.violation(kind, format!("r{r} call {k} {what}"), None);
                } else if let Some((c, v, want)) = out
                    .iter()
                    .enumerate()
                    .map(|(c, &v)| (c, v, self.reference(r, k, c)))
                    .find(|&(_, v, want)| v != want)
                {
                    self.violation(
                        ViolationKind::WrongResult,
                        format!("r{r} call {k} chunk {c}: got {v:#018x}, reference {want:#018x}"),
                        None,
                    );
                }
            }
            CallOutcome::Err(code) => {
                let expected = match fault {
                    // A rank still in an earlier (matched) call may see the abort word
                    // of a faster rank that already failed the faulty call: the comm is
                    // poisoned (PROTOCOL.md, barrier step 3), so its call ends with
                    // PEER_ABORT. The originating error is checked on its own rank.
                    Some(Fault::Kill { call, .. }) => {
                        *code == ERR_PEER_ABORT || (k >= call && *code == ERR_TIMEOUT)
                    }
                    Some(Fault::Mismatch { call, .. }) => k >= call || *code == ERR_PEER_ABORT,
                    Some(Fault::EpochSkew { .. }) => true,
                    None => false,
                };
                if !expected {
                    let kind = match *code {
                        ERR_SEQ_MISMATCH | ERR_CALL_MISMATCH => ViolationKind::SeqMismatch,
                        _ => ViolationKind::Timeout,
                    };
                    self.violation(
                        kind,
                        format!(
                            "r{r} call {k} failed with {}",
                            crate::types::error_code_name(*code)
                        ),
                        None,
                    );
                }
            }
        }
        if let Some(slot) = self.ranks.get_mut(r).and_then(|s| s.results.get_mut(k)) {
            *slot = res;
        }
    }

    pub(super) fn final_checks(&mut self) {
        for r in 0..self.cfg.world {
            if !self.ranks[r].killed && self.ranks[r].results.len() < self.cfg.calls {
                self.violation(
                    ViolationKind::Deadlock,
                    format!("r{r} never finished call {}", self.ranks[r].results.len()),
                    None,
                );
            }
        }
    }
}
