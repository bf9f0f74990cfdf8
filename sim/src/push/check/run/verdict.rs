//! Verdicts: deadlock or timeout when nothing can move, violations, the reference and
//! the final checks of every call.

use crate::check::{mix, BState, CallOutcome};
use crate::types::{ERR_CALL_MISMATCH, ERR_PEER_ABORT, ERR_SEQ_MISMATCH, ERR_TIMEOUT};
use crate::{Violation, ViolationKind};

use super::*;
use crate::push::PUSH_STEP_NAMES;

impl Run<'_> {
    pub(super) fn stuck(&mut self) {
        let waiting: Vec<usize> = (0..self.blocks.len())
            .filter(|&i| self.blocks[i].state == BState::Running)
            .collect();
        if waiting.is_empty() {
            self.stop = true;
            return;
        }
        if self.cfg.fault.is_none() {
            let desc: Vec<String> = waiting
                .iter()
                .take(8)
                .map(|&i| {
                    let pc = self.blocks[i].pc;
                    format!(
                        "r{} b{} in {} (cursor {})",
                        i / self.max_g,
                        i % self.max_g,
                        PUSH_STEP_NAMES.get(pc).copied().unwrap_or("?"),
                        self.blocks[i].cursor
                    )
                })
                .collect();
            self.violation(
                ViolationKind::Deadlock,
                format!("all live blocks wait: {}", desc.join("; ")),
            );
            self.stop = true;
            return;
        }
        let pick = self.rng.below(waiting.len());
        let i = waiting.get(pick).copied().unwrap_or(0);
        let q = self.blocks[i].cursor % self.cfg.world;
        self.fail(i, ERR_TIMEOUT, q);
    }

    pub(super) fn violation(&mut self, kind: ViolationKind, message: String) {
        if self.violations.iter().any(|v| v.kind == kind) {
            return;
        }
        let keep = 60;
        let start = self.trace.len().saturating_sub(keep);
        let mut trace = Vec::new();
        if start > 0 {
            trace.push(format!("... {start} earlier events omitted"));
        }
        trace.extend(self.trace.iter().skip(start).cloned());
        self.violations
            .push(Violation::unreplayable(kind, message, trace));
    }

    /// The expected result of chunk c of call k (rank-order fold of every rank's value).
    pub(super) fn reference(&self, k: usize, c: usize) -> u64 {
        let barrier = self.is_barrier_call(k);
        let mut acc = None;
        for q in 0..self.cfg.world {
            let v = if barrier {
                u64::from(half_value(q, k, c, 0))
            } else {
                chunk_value(&[0, 1, 2, 3].map(|h| half_value(q, k, c, h)))
            };
            acc = Some(match acc {
                None => v,
                Some(a) => mix(a, v),
            });
        }
        acc.unwrap_or(0)
    }

    pub(super) fn final_checks(&mut self) {
        let fault = self.cfg.fault;
        for r in 0..self.cfg.world {
            let results = std::mem::take(&mut self.ranks[r].results);
            for (k, res) in results.iter().enumerate() {
                let faulty = match fault {
                    Some(PushFault::Kill { call, .. })
                    | Some(PushFault::Mismatch { call, .. })
                    | Some(PushFault::OtherOp { call, .. }) => k >= call,
                    Some(PushFault::EpochSkew { .. }) => true,
                    None => false,
                };
                match res {
                    CallOutcome::Ok(out) => {
                        if faulty {
                            let (kind, what) = match fault {
                                Some(PushFault::Kill { .. }) => (
                                    ViolationKind::Timeout,
                                    "completed although a rank it depends on is dead",
                                ),
                                _ => (
                                    ViolationKind::SeqMismatch,
                                    "completed a call the ranks disagree on, undetected",
                                ),
                            };
                            self.violation(kind, format!("r{r} call {k} {what}"));
                            continue;
                        }
                        for (c, &v) in out.iter().enumerate() {
                            let want = self.reference(k, c);
                            if v != want {
                                self.violation(
                                    ViolationKind::WrongResult,
                                    format!(
                                        "r{r} call {k} chunk {c}: got {v:#018x}, reference {want:#018x}"
                                    ),
                                );
                                break;
                            }
                        }
                    }
                    CallOutcome::Err(code) => {
                        // A rank may lag one call behind the one that fails; the abort
                        // word then stops its in-flight call too (collateral PEER_ABORT).
                        let collateral = |call: usize| *code == ERR_PEER_ABORT && k + 1 == call;
                        let expected = match fault {
                            Some(PushFault::Kill { call, .. }) => {
                                (faulty && (*code == ERR_TIMEOUT || *code == ERR_PEER_ABORT))
                                    || collateral(call)
                            }
                            Some(PushFault::Mismatch { call, .. })
                            | Some(PushFault::OtherOp { call, .. }) => {
                                (faulty && *code != ERR_TIMEOUT) || collateral(call)
                            }
                            Some(PushFault::EpochSkew { .. }) => true,
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
                                    crate::error_code_name(*code)
                                ),
                            );
                        }
                    }
                }
            }
            let finished = results.len();
            let any_err = results.iter().any(|o| matches!(o, CallOutcome::Err(_)));
            self.ranks[r].results = results;
            if !self.ranks[r].killed && finished < self.cfg.bytes.len() && !any_err {
                self.violation(
                    ViolationKind::Deadlock,
                    format!("r{r} never finished call {finished}"),
                );
            }
        }
    }
}
