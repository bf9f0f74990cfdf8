//! The trace of a run (events, formatted only when a violation is reported) and the
//! violations with their traces and replayable schedules.

use super::*;

/// Event kinds of the trace; `Note` is the family's own.
#[derive(Clone, Debug)]
pub(crate) enum Ev<N> {
    Launch { grid: usize, epoch: u32 },
    StepDone { step: usize },
    Error { code: u32, peer: usize },
    Ended { ok: bool },
    Killed,
    BadRead { text: String },
    Note(N),
}

#[derive(Clone, Debug)]
pub(super) struct Event<N> {
    n: u64,
    rank: usize,
    block: Option<usize>,
    call: usize,
    ev: Ev<N>,
}

impl<F: Family> Run<F> {
    /// Records an event of rank r (block `block`) at the current step.
    pub(crate) fn log(&mut self, rank: usize, block: Option<usize>, ev: Ev<F::Note>) {
        let call = self.ranks.get(rank).map_or(0, |s| s.call);
        self.events.push(Event {
            n: self.steps,
            rank,
            block,
            call,
            ev,
        });
    }

    /// Reports a violation (the first of its kind in this run) with the trace so far and
    /// the decisions that replay it; `focus`: the ranks a long trace is cut down to.
    pub(crate) fn violation(
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
    pub(crate) fn render_trace(&self, focus: Option<(usize, usize)>) -> Vec<String> {
        const MAX_LINES: usize = 60;
        let all = self.events.len() <= MAX_LINES;
        let keep =
            |e: &&Event<F::Note>| all || focus.is_none_or(|(a, b)| e.rank == a || e.rank == b);
        let lines: Vec<String> = self
            .events
            .iter()
            .filter(keep)
            .map(|e| {
                let who = match e.block {
                    Some(b) => format!("r{} b{}", e.rank, b),
                    None => format!("r{}   ", e.rank),
                };
                let what = match &e.ev {
                    Ev::Launch { grid, epoch } => {
                        self.fam.launch_text(e.rank, e.call, *grid, *epoch)
                    }
                    Ev::StepDone { step } => {
                        format!("{step} {} done", self.fam.step_name(e.call, *step))
                    }
                    Ev::Error { code, peer } => format!(
                        "ERROR {} (peer r{peer})",
                        crate::types::error_code_name(*code)
                    ),
                    Ev::Ended { ok } => {
                        format!("kernel complete ({})", if *ok { "ok" } else { "error" })
                    }
                    Ev::Killed => "rank killed (never calls again)".into(),
                    Ev::BadRead { text } => format!("!! {text}"),
                    Ev::Note(n) => self.fam.note_text(n),
                };
                format!("#{:<5} {who} call {}: {what}", e.n, e.call)
            })
            .collect();
        match lines.len().checked_sub(MAX_LINES) {
            Some(skip) if skip > 0 => {
                let mut out = vec![format!("... {skip} earlier events omitted")];
                out.extend(lines.into_iter().skip(skip));
                out
            }
            _ => lines,
        }
    }
}
