//! The oracle: provenance tags of every data word, the values the families compute
//! with, and the verdict on every call as it completes (errors only where a fault
//! explains them, results equal to the family's reference, no call completed that a
//! fault should have stopped) and on every rank at the end of a run.

use super::engine::{Family, Run};
use super::ViolationKind;
use crate::types::{ERR_CALL_MISMATCH, ERR_PEER_ABORT, ERR_SEQ_MISMATCH, ERR_TIMEOUT};

/// Provenance kinds of data words (the low byte of a [`tag`]).
pub(crate) const WHAT_INPUT: u64 = 1;
pub(crate) const WHAT_REDUCED: u64 = 2;
pub(crate) const WHAT_PARTIAL: u64 = 3;
/// LL line data, LL header half, v1 parity-half chunk and v1 flag of the push family.
pub(crate) const WHAT_LINE: u64 = 4;
pub(crate) const WHAT_HDR: u64 = 5;
pub(crate) const WHAT_HALF: u64 = 6;
pub(crate) const WHAT_FLAG: u64 = 7;

/// A value's provenance: who wrote it in which call, and what (`WHAT_*`).
pub(crate) fn tag(rank: usize, call: usize, what: u64) -> u64 {
    ((rank as u64 + 1) << 40) | ((call as u64 + 1) << 8) | what
}

/// A [`tag`] in words.
pub(crate) fn describe_tag(t: u64) -> String {
    if t == 0 {
        return "initial zero (never written)".into();
    }
    let rank = (t >> 40).wrapping_sub(1);
    let call = ((t >> 8) & 0xffff_ffff).wrapping_sub(1);
    let what = match t & 0xff {
        WHAT_INPUT => "input",
        WHAT_REDUCED => "reduced",
        WHAT_PARTIAL => "partial",
        WHAT_LINE => "line data",
        WHAT_HDR => "header",
        WHAT_HALF => "parity-half data",
        WHAT_FLAG => "barrier flag",
        _ => "?",
    };
    format!("r{rank} call {call} {what}")
}

/// Rank `rank`'s input chunk `chunk` of call `call` (pull family).
pub(crate) fn input_value(rank: usize, call: usize, chunk: usize) -> u64 {
    let mut z = ((rank as u64) << 48) ^ ((call as u64) << 24) ^ chunk as u64;
    z = (z ^ (z >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z ^ (z >> 29)
}

/// Order-sensitive fold: a different summation order gives a different value.
pub(crate) fn mix(acc: u64, x: u64) -> u64 {
    (acc.rotate_left(7) ^ x).wrapping_mul(0x0100_0000_01B3)
}

/// [`mix`] over `vals` in order (0 when empty).
pub(crate) fn fold_over(vals: impl Iterator<Item = u64>) -> u64 {
    let mut acc = None;
    for v in vals {
        acc = Some(match acc {
            None => v,
            Some(a) => mix(a, v),
        });
    }
    acc.unwrap_or(0)
}

/// How a rank's call ended: its output values, or its error code.
#[derive(Clone, Debug)]
pub(crate) enum CallOutcome {
    Ok(Vec<u64>),
    Err(u32),
}

impl CallOutcome {
    /// The outcome of a call whose blocks are all done: the rank's recorded error, else
    /// a peer abort when a block failed, else the output (unwritten values as 0).
    pub(crate) fn of(failed: bool, error: u32, out: &[Option<u64>]) -> Self {
        if failed || error != 0 {
            CallOutcome::Err(if error != 0 { error } else { ERR_PEER_ABORT })
        } else {
            CallOutcome::Ok(out.iter().map(|v| v.unwrap_or(0)).collect())
        }
    }
}

/// What the injected fault makes of one call ([`Family::fate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Not affected: it must complete with the reference result.
    Clean,
    /// A rank it depends on is dead: it must not complete.
    Dead,
    /// The ranks disagree on it: it must not complete.
    Disagree,
}

/// The injected fault of a push or lines run as the engine and the outcome rules see it
/// (both families' [`Family::fate`] and [`Family::error_expected`], their set-up and
/// their validation): `rank` dead from `call`, `rank` disagreeing with the others from
/// `call` (another count, dtype or op), or `rank`'s epoch `delta` ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LlFault {
    Kill { rank: usize, call: usize },
    Disagree { rank: usize, call: usize },
    Skew { rank: usize, delta: u32 },
}

impl LlFault {
    /// The rank the fault is injected into.
    pub(crate) fn rank(self) -> usize {
        match self {
            LlFault::Kill { rank, .. }
            | LlFault::Disagree { rank, .. }
            | LlFault::Skew { rank, .. } => rank,
        }
    }

    /// The engine's `kill` of the fault ([`super::Setup`]): (rank, first call it misses).
    pub(crate) fn kill(self) -> Option<(usize, usize)> {
        match self {
            LlFault::Kill { rank, call } => Some((rank, call)),
            _ => None,
        }
    }

    /// The engine's `skew` of the fault ([`super::Setup`]): (rank, epochs ahead).
    pub(crate) fn skew(self) -> Option<(usize, u32)> {
        match self {
            LlFault::Skew { rank, delta } => Some((rank, delta)),
            _ => None,
        }
    }

    /// What the fault makes of call k.
    pub(crate) fn fate(fault: Option<Self>, k: usize) -> Fate {
        match fault {
            Some(LlFault::Kill { call, .. }) if k >= call => Fate::Dead,
            Some(LlFault::Disagree { call, .. }) if k >= call => Fate::Disagree,
            Some(LlFault::Skew { .. }) => Fate::Disagree,
            _ => Fate::Clean,
        }
    }

    /// Whether call k may end with error `code`. A rank may lag one call behind the one
    /// that fails; the abort word then stops its in-flight call too (collateral PEER_ABORT).
    pub(crate) fn error_expected(fault: Option<Self>, k: usize, code: u32) -> bool {
        let collateral = |call: usize| code == ERR_PEER_ABORT && k + 1 == call;
        match fault {
            Some(LlFault::Kill { call, .. }) => {
                (k >= call && (code == ERR_TIMEOUT || code == ERR_PEER_ABORT)) || collateral(call)
            }
            Some(LlFault::Disagree { call, .. }) => {
                (k >= call && code != ERR_TIMEOUT) || collateral(call)
            }
            Some(LlFault::Skew { .. }) => true,
            None => false,
        }
    }
}

impl<F: Family> Run<F> {
    /// Checks the outcome of call k of rank r as its kernel completes (so a violation's
    /// trace ends there).
    pub(crate) fn check_outcome(&mut self, r: usize, k: usize) {
        let Some(res) = self.ranks.get_mut(r).and_then(|s| s.results.get_mut(k)) else {
            return;
        };
        let res = std::mem::replace(res, CallOutcome::Err(0));
        match &res {
            CallOutcome::Ok(out) => match self.fam.fate(k) {
                Fate::Clean => {
                    if let Some((c, v, want)) = out
                        .iter()
                        .enumerate()
                        .map(|(c, &v)| (c, v, self.fam.reference(r, k, c)))
                        .find(|&(_, v, want)| v != want)
                    {
                        self.violation(
                            ViolationKind::WrongResult,
                            format!(
                                "r{r} call {k} chunk {c}: got {v:#018x}, reference {want:#018x}"
                            ),
                            None,
                        );
                    }
                }
                Fate::Dead => self.violation(
                    ViolationKind::Timeout,
                    format!("r{r} call {k} completed although a rank it depends on is dead"),
                    None,
                ),
                Fate::Disagree => self.violation(
                    ViolationKind::SeqMismatch,
                    format!("r{r} call {k} completed a call the ranks disagree on, undetected"),
                    None,
                ),
            },
            CallOutcome::Err(code) => {
                if !self.fam.error_expected(k, *code) {
                    let kind = match *code {
                        ERR_SEQ_MISMATCH | ERR_CALL_MISMATCH => ViolationKind::SeqMismatch,
                        _ => ViolationKind::Timeout,
                    };
                    let name = crate::types::error_code_name(*code);
                    self.violation(kind, format!("r{r} call {k} failed with {name}"), None);
                }
            }
        }
        if let Some(slot) = self.ranks.get_mut(r).and_then(|s| s.results.get_mut(k)) {
            *slot = res;
        }
    }

    /// At the end of a run: every rank that is alive finished every call.
    pub(crate) fn final_checks(&mut self) {
        for r in 0..self.set.world {
            let done = self.ranks[r].results.len();
            if !self.ranks[r].killed && done < self.set.calls {
                let m = format!("r{r} never finished call {done}");
                self.violation(ViolationKind::Deadlock, m, None);
            }
        }
    }
}
