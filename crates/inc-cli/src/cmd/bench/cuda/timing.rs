//! One point's timing on one rank: [`RankState::point`].

use std::sync::Arc;

use cudarc::driver::{CudaEvent, CudaSlice, CudaStream, DeviceRepr};
use inc_comm::{Comm, Element, ReduceOp};

use super::super::report::Mode;
use super::super::Plan;
use super::device::{capture, download, enqueue, poison, upload, wait_event, Bufs, Target};
use super::points::{calls_per_timing, count_wrong_bits, per_call_us, rep_offset};

/// One rank's device state shared by every point.
pub(super) struct RankState<'a, T> {
    pub(super) plan: &'a Plan,
    pub(super) stream: Arc<CudaStream>,
    pub(super) start: CudaEvent,
    pub(super) end: CudaEvent,
    /// The control communicator whose 16-element call lines the ranks up.
    pub(super) sync: Option<&'a Comm>,
    pub(super) sync_in: CudaSlice<T>,
    pub(super) sync_out: CudaSlice<T>,
    pub(super) host_in: Vec<T>,
    pub(super) expected: Vec<T>,
    pub(super) host_out: Vec<T>,
}

impl<T: Element + DeviceRepr> RankState<'_, T> {
    /// Times one (column, size, mode): local times (µs per call) and #wrong.
    pub(super) fn point(
        &mut self,
        target: Target<'_>,
        bufs: &mut Bufs<'_, T>,
        mode: Mode,
    ) -> Result<(Vec<f32>, u64), String> {
        let plan = self.plan;
        let stream = self.stream.clone();
        let (ip, op, n) = bufs.raw(&stream);
        let calls = calls_per_timing(mode, plan.graph_calls);
        let bytes = n * std::mem::size_of::<T>();
        // In place (a symmetric tensor), repeated calls reduce their own results: one
        // checked call first, then the timed ones unchecked.
        let in_place = ip == op;
        let mut wrong = 0u64;
        if in_place {
            let src = self.host_in.get(..n).ok_or("pattern out of range")?;
            upload(ip, src, &stream)?;
            if let Some(w) = enqueue(target, bufs, plan.op, &stream)? {
                w.wait().map_err(|e| e.to_string())?;
            }
            let out = self.host_out.get_mut(..n).ok_or("output out of range")?;
            download(out, op, &stream)?;
            let want = self.expected.get(..n).ok_or("reference out of range")?;
            wrong = count_wrong_bits(out, want);
        }
        let graph = match mode {
            Mode::Graph => Some(capture(target, bufs, plan.op, &stream, calls)?),
            Mode::Eager => None,
        };
        let mut times = Vec::with_capacity(plan.iters);
        let mut host_us: Vec<f64> = Vec::new();
        for rep in 0..plan.warmup + plan.iters {
            let off = rep_offset(rep);
            let src = self
                .host_in
                .get(off..off + n)
                .ok_or("pattern out of range")?;
            upload(ip, src, &stream)?;
            if !in_place {
                poison(op, bytes, &stream)?;
            }
            let sync = match self.sync {
                Some(c) => Some(
                    c.allreduce_out(&self.sync_in, &mut self.sync_out, ReduceOp::Sum, &stream)
                        .map_err(|e| format!("lining up the ranks: {e}"))?,
                ),
                None => None,
            };
            self.start
                .record(&stream)
                .map_err(|e| format!("cuEventRecord: {e}"))?;
            let work = match &graph {
                Some(g) => {
                    g.launch().map_err(|e| format!("cuGraphLaunch: {e}"))?;
                    None
                }
                None => {
                    let h0 = std::time::Instant::now();
                    let w = enqueue(target, bufs, plan.op, &stream)?;
                    if rep >= plan.warmup {
                        host_us.push(h0.elapsed().as_secs_f64() * 1e6);
                    }
                    w
                }
            };
            self.end
                .record(&stream)
                .map_err(|e| format!("cuEventRecord: {e}"))?;
            wait_event(&self.end, plan.opts.timeout)?;
            if let Some(w) = sync {
                w.wait().map_err(|e| format!("lining up the ranks: {e}"))?;
            }
            if let Some(w) = work {
                w.wait().map_err(|e| e.to_string())?;
            }
            if let (Some(_), Target::Inc { comm, .. } | Target::IncSym { comm, .. }) =
                (&graph, target)
            {
                comm.check().map_err(|e| e.to_string())?;
            }
            let ms = self
                .start
                .elapsed_ms(&self.end)
                .map_err(|e| format!("cuEventElapsedTime: {e}"))?;
            if !in_place {
                let out = self.host_out.get_mut(..n).ok_or("output out of range")?;
                download(out, op, &stream)?;
                let want = self
                    .expected
                    .get(off..off + n)
                    .ok_or("reference out of range")?;
                wrong = wrong.saturating_add(count_wrong_bits(out, want));
            }
            if rep >= plan.warmup {
                times.push(per_call_us(ms, calls) as f32);
            }
        }
        drop(graph);
        if !host_us.is_empty() {
            // CPU time of one eager call (validation, selection, launch, event record).
            host_us.sort_by(f64::total_cmp);
            let who = match target {
                Target::Inc { path, .. } => path.map_or("auto", |p| p.name()),
                Target::IncSym { path, .. } => path.map_or("zero-copy", |p| p.name()),
                Target::Nccl(_) => "nccl",
            };
            // Steady state: calls enqueued back to back (warm caches, no sync between),
            // each Work dropped at once as a fire-and-forget caller would.
            let b2b = 64u32;
            let h0 = std::time::Instant::now();
            for _ in 0..b2b {
                drop(enqueue(target, bufs, plan.op, &stream)?);
            }
            let per = h0.elapsed().as_secs_f64() * 1e6 / f64::from(b2b);
            eprintln!(
                "# host time per eager call: {who} {bytes} B: median {:.2} us, back to back {per:.2} us",
                host_us[host_us.len() / 2]
            );
        }
        stream
            .synchronize()
            .map_err(|e| format!("cuStreamSynchronize: {e}"))?;
        Ok((times, wrong))
    }
}
