//! The world-1 floors: rank 0 alone times NCCL with one rank on its GPU (virtual ranks,
//! where NCCL refuses the group).

use std::sync::Arc;

use cudarc::driver::{CudaContext, DeviceRepr, ValidAsZeroBits};
use inc_comm::nccl::NcclComm;
use inc_comm::Element;

use super::super::measure::expected_table;
use super::super::report::{median, Sample, Series};
use super::super::Plan;
use super::columns::{Col, ColKind};
use super::device::{Bufs, Target};
use super::points::{expected_buffer, pattern_buffer};
use super::rank::na_sample;
use super::timing::RankState;

/// Rank 0 alone: NCCL with one rank on its GPU, every size, into the floor columns.
pub(super) fn floors<T: Element + DeviceRepr + ValidAsZeroBits>(
    plan: &Plan,
    ctx: &Arc<CudaContext>,
    st: &mut RankState<'_, T>,
    cols: &[Col],
    series: &mut [Series],
    max_elems: usize,
) -> Result<(), String> {
    let set_all = |series: &mut [Series], symm: Option<bool>, why: &str| {
        for (c, s) in cols.iter().zip(series.iter_mut()) {
            if matches!(c.kind, ColKind::Floor { symm: x } if symm.is_none_or(|y| y == x)) {
                for smp in &mut s.samples {
                    *smp = na_sample(why);
                }
            }
        }
    };
    let alone = |m: &[u8]| Ok(vec![m.to_vec()]);
    let raw = match NcclComm::create(0, 1, ctx, None, alone, |e| e.to_string()) {
        Ok(r) => r,
        Err(e) => {
            set_all(series, None, &e);
            return Ok(());
        }
    };
    let max_bytes = max_elems * std::mem::size_of::<T>();
    let symm = if cols.iter().any(|c| c.kind == ColKind::Floor { symm: true }) {
        match raw.symmetric(max_bytes.max(1)) {
            Ok(s) => Some(s),
            Err(e) => {
                set_all(series, Some(true), &e.to_string());
                None
            }
        }
    } else {
        None
    };
    // World 1: the output is the input.
    let table = expected_table::<T>(1, plan.op)?;
    st.expected = expected_buffer(&table, max_elems);
    st.host_in = pattern_buffer::<T>(0, max_elems);
    st.sync = None;
    let elem = plan.dtype.size() as u64;
    for (si, &bytes) in plan.sizes.iter().enumerate() {
        let n = usize::try_from(bytes / elem)
            .unwrap_or(usize::MAX)
            .min(max_elems);
        let input = st
            .stream
            .alloc_zeros::<T>(n.max(1))
            .map_err(|e| format!("alloc of {bytes} B: {e}"))?;
        let mut output = st
            .stream
            .alloc_zeros::<T>(n.max(1))
            .map_err(|e| format!("alloc of {bytes} B: {e}"))?;
        for (ci, c) in cols.iter().enumerate() {
            let ColKind::Floor { symm: want_symm } = c.kind else {
                continue;
            };
            let r = match (&symm, want_symm) {
                (_, false) => st.point(
                    Target::Nccl(&raw),
                    &mut Bufs::Slices(&input, &mut output),
                    c.mode,
                ),
                (Some(b), true) => {
                    let mut bufs = Bufs::Raw {
                        input: b.input(),
                        output: b.output(),
                        count: n,
                    };
                    st.point(Target::Nccl(&raw), &mut bufs, c.mode)
                }
                (None, true) => continue,
            };
            let (times, wrong) = r.map_err(|e| format!("{} at {bytes} B: {e}", c.name))?;
            if let Some(smp) = series.get_mut(ci).and_then(|s| s.samples.get_mut(si)) {
                *smp = Sample {
                    time_us: median(&times.iter().map(|t| f64::from(*t)).collect::<Vec<_>>()),
                    wrong,
                    path: None,
                    note: None,
                };
            }
        }
        st.stream
            .synchronize()
            .map_err(|e| format!("cuStreamSynchronize: {e}"))?;
    }
    Ok(())
}
