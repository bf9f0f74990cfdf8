//! The results of one `inc bench` run and their renderings: the nccl-tests style table,
//! CSV and JSON.
//!
//! A [`Report`] holds the sizes and one [`Series`] per (algorithm or NCCL variant, mode).
//! Every series has one [`Sample`] per size, in the order of [`Report::sizes`].
//! Bandwidths follow nccl-tests: `algbw = bytes / time`, `busbw = algbw * 2(n-1)/n`.

use std::fmt::Write as _;

use inc_comm::{DType, ReduceOp};
use serde::Serialize;

/// How calls were issued while timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One call per timing, launched from the host each time.
    Eager,
    /// Many back-to-back calls captured in a CUDA graph, replayed, time divided by the
    /// number of calls (on the sim backend: a batch of back-to-back calls).
    Graph,
}

impl Mode {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Eager => "eager",
            Mode::Graph => "graph",
        }
    }
}

/// What produced a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// An inc path (or `auto`).
    Inc,
    /// NCCL, measured in the same run on the same buffers.
    Nccl,
}

/// The measurement of one size.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Median time of one call in microseconds; `None` when not measured (n/a).
    pub time_us: Option<f64>,
    /// Wrong elements summed over every repetition (and every rank when gathered).
    pub wrong: u64,
    /// The path taken, when the series chose it (`auto`).
    pub path: Option<String>,
    /// Why the sample is n/a, or anything else worth a footnote.
    pub note: Option<String>,
}

/// One line of the table (column group) / plot (line).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// `one-shot`, `two-shot`, `hcm`, `auto`, `nccl`, `nccl-symm`.
    pub name: String,
    /// inc or NCCL.
    pub source: Source,
    /// Eager or graph.
    pub mode: Mode,
    /// One per size of the report.
    pub samples: Vec<Sample>,
}

impl Series {
    /// An empty series.
    pub fn new(name: &str, source: Source, mode: Mode) -> Self {
        Self {
            name: name.to_string(),
            source,
            mode,
            samples: Vec::new(),
        }
    }

    /// Label used in plots and CSV: `name` or `name (graph)` when `both` modes are shown.
    pub fn label(&self, both: bool) -> String {
        if both {
            format!("{} ({})", self.name, self.mode.name())
        } else {
            self.name.clone()
        }
    }

    fn shows_path(&self) -> bool {
        self.samples.iter().any(|s| s.path.is_some())
    }
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `sim` or `cuda`.
    pub backend: String,
    /// Device description (GPU model, or "CPU simulator").
    pub device: String,
    /// Driver version (`sim` on the sim backend).
    pub driver: String,
    /// Topology class of the group (`fully_connected`, `hybrid_cube_mesh`, `none`).
    pub topology: String,
    /// Ranks.
    pub world: usize,
    /// Element type.
    pub dtype: DType,
    /// Reduction.
    pub op: ReduceOp,
    /// Timed repetitions per size.
    pub iters: usize,
    /// Untimed repetitions before them.
    pub warmup: usize,
    /// Calls per timing in graph mode.
    pub graph_calls: usize,
    /// Sizes in bytes.
    pub sizes: Vec<u64>,
    /// Column groups.
    pub series: Vec<Series>,
    /// Lines printed under the header (`# ...`).
    pub notes: Vec<String>,
}

/// nccl-tests' name of a data type.
pub fn type_name(d: DType) -> &'static str {
    match d {
        DType::Bf16 => "bfloat16",
        DType::F16 => "half",
        DType::F32 => "float",
    }
}

/// `2(n-1)/n`: bus bandwidth per algorithm bandwidth of an allreduce over `n` ranks.
pub fn bus_factor(world: usize) -> f64 {
    if world <= 1 {
        0.0
    } else {
        2.0 * (world as f64 - 1.0) / world as f64
    }
}

/// Algorithm bandwidth in GB/s (1e9 bytes per second).
pub fn algbw(bytes: u64, time_us: f64) -> f64 {
    if time_us > 0.0 {
        bytes as f64 / (time_us * 1e3)
    } else {
        0.0
    }
}

/// Median of `v` (mean of the two middle values for an even count); `None` when empty.
/// NaN values are ignored.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let hi = s.get(n / 2).copied()?;
    if n % 2 == 1 {
        Some(hi)
    } else {
        let lo = s.get(n / 2 - 1).copied()?;
        Some((lo + hi) / 2.0)
    }
}

impl Report {
    /// Number of elements of a size.
    pub fn count(&self, bytes: u64) -> u64 {
        bytes / self.dtype.size() as u64
    }

    /// Whether both modes appear.
    pub fn both_modes(&self) -> bool {
        let mut it = self.series.iter().map(|s| s.mode);
        match it.next() {
            Some(first) => it.any(|m| m != first),
            None => false,
        }
    }

    /// Modes in order of first appearance.
    pub fn modes(&self) -> Vec<Mode> {
        let mut out = Vec::new();
        for s in &self.series {
            if !out.contains(&s.mode) {
                out.push(s.mode);
            }
        }
        out
    }

    /// Total #wrong over every series and size.
    pub fn total_wrong(&self) -> u64 {
        self.series
            .iter()
            .flat_map(|s| s.samples.iter())
            .map(|s| s.wrong)
            .fold(0u64, u64::saturating_add)
    }

    /// Best (smallest) inc time at size index `i` in `mode`.
    pub fn best_inc_time(&self, mode: Mode, i: usize) -> Option<f64> {
        self.series
            .iter()
            .filter(|s| s.source == Source::Inc && s.mode == mode)
            .filter_map(|s| s.samples.get(i).and_then(|x| x.time_us))
            .filter(|t| *t > 0.0)
            .min_by(f64::total_cmp)
    }

    /// NCCL time / best inc time at size index `i` for the NCCL series `s`.
    pub fn ratio(&self, s: &Series, i: usize) -> Option<f64> {
        if s.source != Source::Nccl {
            return None;
        }
        let n = s.samples.get(i)?.time_us?;
        let inc = self.best_inc_time(s.mode, i)?;
        Some(n / inc)
    }

    /// The header lines (`# ...`): what ran where, and the notes.
    pub fn header(&self) -> String {
        let mut h = String::new();
        let _ = writeln!(
            h,
            "# inc bench: allreduce, backend {}, device {} (driver {}), world {} ({}), type {}, redop {}, iters {}, warmup {}",
            self.backend,
            self.device,
            self.driver,
            self.world,
            self.topology,
            type_name(self.dtype),
            self.op.name(),
            self.iters,
            self.warmup
        );
        if self.backend == "sim" {
            let _ = writeln!(
                h,
                "# NOTE: CPU simulator numbers (threads and shared memory on the CPU), NOT GPU numbers"
            );
        }
        for n in &self.notes {
            let _ = writeln!(h, "# {n}");
        }
        h
    }

    /// The nccl-tests style table: one block per mode, one row per size, one column group
    /// per series (NCCL groups add the ratio NCCL time / best inc time).
    pub fn table(&self) -> String {
        let mut out = self.header();
        for mode in self.modes() {
            let group: Vec<&Series> = self.series.iter().filter(|s| s.mode == mode).collect();
            out.push_str(&self.mode_table(mode, &group));
        }
        let _ = writeln!(out, "# #wrong total: {}", self.total_wrong());
        out
    }

    fn mode_table(&self, mode: Mode, group: &[&Series]) -> String {
        const LEFT: usize = 12 + 14 + 10 + 7;
        let mut t = String::new();
        let what = match mode {
            Mode::Eager => "one call per timing, launched from the host".to_string(),
            Mode::Graph => format!(
                "{} back-to-back calls per timing (CUDA graph on cuda), time per call",
                self.graph_calls
            ),
        };
        let _ = writeln!(
            t,
            "#\n# mode: {} ({what}); time is the median over {} repetitions",
            mode.name(),
            self.iters
        );
        let widths: Vec<usize> = group.iter().map(|s| group_width(s)).collect();
        // Group titles.
        let mut l0 = format!("#{:width$}", "", width = LEFT - 1);
        for (s, w) in group.iter().zip(&widths) {
            let title = if s.source == Source::Nccl {
                format!("{} (ratio = {}/inc)", s.name, s.name)
            } else {
                s.name.clone()
            };
            let _ = write!(l0, " {:^width$}", truncate(&title, *w), width = w);
        }
        let mut l1 = format!("#{:>11}{:>14}{:>10}{:>7}", "size", "count", "type", "redop");
        let mut l2 = format!("#{:>11}{:>14}{:>10}{:>7}", "(B)", "(elements)", "", "");
        for s in group {
            l1.push_str(&format!(
                " {:>9}{:>8}{:>8}{:>7}",
                "time", "algbw", "busbw", "#wrong"
            ));
            l2.push_str(&format!(
                " {:>9}{:>8}{:>8}{:>7}",
                "(us)", "(GB/s)", "(GB/s)", ""
            ));
            if s.source == Source::Nccl {
                l1.push_str(&format!("{:>7}", "ratio"));
                l2.push_str(&format!("{:>7}", ""));
            }
            if s.shows_path() {
                l1.push_str(&format!(" {:>8}", "algo"));
                l2.push_str(&format!(" {:>8}", ""));
            }
        }
        for l in [l0, l1, l2] {
            let _ = writeln!(t, "{}", l.trim_end());
        }
        let factor = bus_factor(self.world);
        for (i, &bytes) in self.sizes.iter().enumerate() {
            let mut row = format!(
                "{:>12}{:>14}{:>10}{:>7}",
                bytes,
                self.count(bytes),
                type_name(self.dtype),
                self.op.name()
            );
            for s in group {
                let smp = s.samples.get(i);
                match smp.and_then(|x| x.time_us) {
                    Some(tu) => {
                        let a = algbw(bytes, tu);
                        let _ = write!(
                            row,
                            " {:>9.2}{:>8.2}{:>8.2}{:>7}",
                            tu,
                            a,
                            a * factor,
                            smp.map_or(0, |x| x.wrong)
                        );
                    }
                    None => {
                        let _ = write!(row, " {:>9}{:>8}{:>8}{:>7}", "n/a", "n/a", "n/a", "-");
                    }
                }
                if s.source == Source::Nccl {
                    match self.ratio(s, i) {
                        Some(r) => {
                            let _ = write!(row, "{:>7.2}", r);
                        }
                        None => {
                            let _ = write!(row, "{:>7}", "-");
                        }
                    }
                }
                if s.shows_path() {
                    let p = smp.and_then(|x| x.path.as_deref()).unwrap_or("-");
                    let _ = write!(row, " {:>8}", p);
                }
            }
            let _ = writeln!(t, "{row}");
        }
        // nccl-tests closes with the average bus bandwidth; one line per series.
        for s in group {
            let bws: Vec<f64> = self
                .sizes
                .iter()
                .zip(&s.samples)
                .filter_map(|(b, x)| x.time_us.map(|tu| algbw(*b, tu) * factor))
                .collect();
            let avg = if bws.is_empty() {
                None
            } else {
                Some(bws.iter().sum::<f64>() / bws.len() as f64)
            };
            let _ = match avg {
                Some(a) => writeln!(t, "# Avg bus bandwidth ({}): {a:.3} GB/s", s.name),
                None => writeln!(t, "# Avg bus bandwidth ({}): n/a", s.name),
            };
        }
        let mut notes: Vec<String> = Vec::new();
        for s in group {
            for (b, x) in self.sizes.iter().zip(&s.samples) {
                if let Some(n) = &x.note {
                    let line = format!("{} at {b} B: {n}", s.name);
                    if !notes
                        .iter()
                        .any(|m| m.ends_with(n.as_str()) && m.starts_with(&s.name))
                    {
                        notes.push(line);
                    }
                }
            }
        }
        for n in notes {
            let _ = writeln!(t, "# note: {n}");
        }
        t
    }

    /// CSV, one line per (mode, series, size):
    /// `mode,algo,size_bytes,count,type,redop,time_us,algbw_gbps,busbw_gbps,wrong,path,ratio`
    /// (empty cells where n/a; `ratio` is NCCL time / best inc time, NCCL rows only).
    pub fn csv(&self) -> String {
        let mut c = String::from(
            "mode,algo,size_bytes,count,type,redop,time_us,algbw_gbps,busbw_gbps,wrong,path,ratio\n",
        );
        let factor = bus_factor(self.world);
        for s in &self.series {
            for (i, (&bytes, x)) in self.sizes.iter().zip(&s.samples).enumerate() {
                let (t, a, b) = match x.time_us {
                    Some(tu) => {
                        let a = algbw(bytes, tu);
                        (
                            format!("{tu:.3}"),
                            format!("{a:.4}"),
                            format!("{:.4}", a * factor),
                        )
                    }
                    None => (String::new(), String::new(), String::new()),
                };
                let ratio = self
                    .ratio(s, i)
                    .map(|r| format!("{r:.4}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    c,
                    "{},{},{},{},{},{},{},{},{},{},{},{}",
                    s.mode.name(),
                    csv_cell(&s.name),
                    bytes,
                    self.count(bytes),
                    type_name(self.dtype),
                    self.op.name(),
                    t,
                    a,
                    b,
                    x.wrong,
                    csv_cell(x.path.as_deref().unwrap_or("")),
                    ratio
                );
            }
        }
        c
    }

    /// JSON: the report plus derived algbw/busbw/ratio per sample.
    pub fn json(&self) -> Result<String, String> {
        #[derive(Serialize)]
        struct Point<'a> {
            size_bytes: u64,
            count: u64,
            time_us: Option<f64>,
            algbw_gbps: Option<f64>,
            busbw_gbps: Option<f64>,
            wrong: u64,
            path: Option<&'a str>,
            ratio: Option<f64>,
            note: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Line<'a> {
            algo: &'a str,
            source: Source,
            mode: Mode,
            points: Vec<Point<'a>>,
        }
        #[derive(Serialize)]
        struct Doc<'a> {
            tool: &'static str,
            version: &'static str,
            backend: &'a str,
            device: &'a str,
            driver: &'a str,
            topology: &'a str,
            gpu_numbers: bool,
            world: usize,
            dtype: &'static str,
            redop: &'static str,
            iters: usize,
            warmup: usize,
            graph_calls: usize,
            sizes: &'a [u64],
            notes: &'a [String],
            wrong: u64,
            series: Vec<Line<'a>>,
        }
        let factor = bus_factor(self.world);
        let series = self
            .series
            .iter()
            .map(|s| Line {
                algo: &s.name,
                source: s.source,
                mode: s.mode,
                points: self
                    .sizes
                    .iter()
                    .zip(&s.samples)
                    .enumerate()
                    .map(|(i, (&b, x))| Point {
                        size_bytes: b,
                        count: self.count(b),
                        time_us: x.time_us,
                        algbw_gbps: x.time_us.map(|t| algbw(b, t)),
                        busbw_gbps: x.time_us.map(|t| algbw(b, t) * factor),
                        wrong: x.wrong,
                        path: x.path.as_deref(),
                        ratio: self.ratio(s, i),
                        note: x.note.as_deref(),
                    })
                    .collect(),
            })
            .collect();
        let doc = Doc {
            tool: "inc bench",
            version: env!("CARGO_PKG_VERSION"),
            backend: &self.backend,
            device: &self.device,
            driver: &self.driver,
            topology: &self.topology,
            gpu_numbers: self.backend != "sim",
            world: self.world,
            dtype: self.dtype.name(),
            redop: self.op.name(),
            iters: self.iters,
            warmup: self.warmup,
            graph_calls: self.graph_calls,
            sizes: &self.sizes,
            notes: &self.notes,
            wrong: self.total_wrong(),
            series,
        };
        serde_json::to_string_pretty(&doc).map_err(|e| format!("cannot encode JSON: {e}"))
    }
}

fn group_width(s: &Series) -> usize {
    let mut w = 9 + 8 + 8 + 7;
    if s.source == Source::Nccl {
        w += 7;
    }
    if s.shows_path() {
        w += 9;
    }
    w
}

fn truncate(s: &str, w: usize) -> String {
    s.chars().take(w).collect()
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small two-mode report with an inc series, an auto series and two NCCL series.
    pub(crate) fn sample_report() -> Report {
        let sizes = vec![1024u64, 4096, 1 << 20];
        let mk = |name: &str, src: Source, mode: Mode, times: &[Option<f64>]| Series {
            name: name.into(),
            source: src,
            mode,
            samples: times
                .iter()
                .map(|t| Sample {
                    time_us: *t,
                    wrong: 0,
                    path: if name == "auto" {
                        Some("one-shot".into())
                    } else {
                        None
                    },
                    note: if t.is_none() {
                        Some("NCCL < 2.27".into())
                    } else {
                        None
                    },
                })
                .collect(),
        };
        Report {
            backend: "cuda".into(),
            device: "NVIDIA H200".into(),
            driver: "570.00".into(),
            topology: "fully_connected".into(),
            world: 2,
            dtype: DType::Bf16,
            op: ReduceOp::Sum,
            iters: 20,
            warmup: 5,
            graph_calls: 100,
            sizes,
            series: vec![
                mk(
                    "one-shot",
                    Source::Inc,
                    Mode::Graph,
                    &[Some(2.0), Some(4.0), Some(10.0)],
                ),
                mk(
                    "auto",
                    Source::Inc,
                    Mode::Graph,
                    &[Some(2.5), Some(4.0), Some(8.0)],
                ),
                mk(
                    "nccl",
                    Source::Nccl,
                    Mode::Graph,
                    &[Some(10.0), Some(12.0), Some(20.0)],
                ),
                mk("nccl-symm", Source::Nccl, Mode::Graph, &[None, None, None]),
                mk(
                    "one-shot",
                    Source::Inc,
                    Mode::Eager,
                    &[Some(5.0), Some(6.0), Some(12.0)],
                ),
            ],
            notes: vec![],
        }
    }

    #[test]
    fn bandwidth_formulas() {
        // 1 MB in 10 us = 100 GB/s; busbw for 2 ranks = algbw, for 8 ranks = 1.75x.
        assert!((algbw(1_000_000, 10.0) - 100.0).abs() < 1e-9);
        assert_eq!(bus_factor(1), 0.0);
        assert!((bus_factor(2) - 1.0).abs() < 1e-12);
        assert!((bus_factor(8) - 1.75).abs() < 1e-12);
        assert_eq!(algbw(100, 0.0), 0.0);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 7.0, 1.0, 100.0]), Some(7.0));
        // Robust to one outlier, unlike a mean.
        assert_eq!(median(&[1.0, 1.0, 1.0, 1.0, 1000.0]), Some(1.0));
    }

    #[test]
    fn ratio_is_nccl_over_best_inc_same_mode() {
        let r = sample_report();
        let nccl = &r.series[2];
        // Size 0: best inc in graph mode is 2.0 (one-shot) -> 10/2.
        assert_eq!(r.ratio(nccl, 0), Some(5.0));
        // Size 2: best is auto's 8.0 -> 20/8.
        assert_eq!(r.ratio(nccl, 2), Some(2.5));
        assert_eq!(r.ratio(&r.series[3], 0), None);
        assert_eq!(r.ratio(&r.series[0], 0), None);
    }

    #[test]
    fn table_has_nccl_tests_columns_and_rows() {
        let r = sample_report();
        let t = r.table();
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("# inc bench: allreduce, backend cuda"));
        assert!(t.contains("# mode: graph"));
        assert!(t.contains("# mode: eager"));
        for col in [
            "size", "count", "type", "redop", "time", "algbw", "busbw", "#wrong", "ratio", "algo",
        ] {
            assert!(t.contains(col), "missing column {col}");
        }
        // One data row per size per mode.
        let rows: Vec<&&str> = lines.iter().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(rows.len(), 6);
        let first: Vec<&str> = rows[0].split_whitespace().collect();
        // size count type redop | one-shot t a b w | auto t a b w algo | nccl t a b w ratio | symm n/a.. - -
        assert_eq!(&first[..4], &["1024", "512", "bfloat16", "sum"]);
        assert_eq!(first[4], "2.00");
        assert_eq!(first[5], "0.51"); // 1024 B / 2 us = 0.512 GB/s
        assert_eq!(first[7], "0");
        assert_eq!(first[12], "one-shot");
        assert_eq!(first[17], "5.00"); // ratio 10 / 2
        assert_eq!(&first[18..], &["n/a", "n/a", "n/a", "-", "-"]);
        assert!(t.contains("# Avg bus bandwidth (one-shot)"));
        assert!(t.contains("# note: nccl-symm at 1024 B: NCCL < 2.27"));
        assert!(t.trim_end().ends_with("# #wrong total: 0"));
        assert!(!t.contains("NOT GPU numbers"));
    }

    #[test]
    fn sim_header_says_not_gpu() {
        let mut r = sample_report();
        r.backend = "sim".into();
        assert!(r.header().contains("NOT GPU numbers"));
        let j: serde_json::Value = serde_json::from_str(&r.json().unwrap()).unwrap();
        assert_eq!(j["gpu_numbers"], false);
    }

    #[test]
    fn csv_is_rectangular() {
        let r = sample_report();
        let c = r.csv();
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(lines.len(), 1 + 5 * 3);
        let ncol = lines[0].split(',').count();
        assert_eq!(ncol, 12);
        for l in &lines {
            assert_eq!(l.split(',').count(), ncol, "{l}");
        }
        assert!(lines.contains(&"graph,nccl,1024,512,bfloat16,sum,10.000,0.1024,0.1024,0,,5.0000"));
        assert!(lines.contains(&"graph,nccl-symm,4096,2048,bfloat16,sum,,,,0,,"));
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
    }

    #[test]
    fn json_round_trips() {
        let r = sample_report();
        let j: serde_json::Value = serde_json::from_str(&r.json().unwrap()).unwrap();
        assert_eq!(j["world"], 2);
        assert_eq!(j["dtype"], "bf16");
        assert_eq!(j["wrong"], 0);
        assert_eq!(j["series"].as_array().unwrap().len(), 5);
        assert_eq!(j["series"][2]["points"][0]["ratio"], 5.0);
        assert_eq!(j["series"][1]["points"][0]["path"], "one-shot");
        assert!(j["series"][3]["points"][0]["time_us"].is_null());
        assert_eq!(j["series"][4]["mode"], "eager");
    }

    #[test]
    fn wrong_counts_add_up() {
        let mut r = sample_report();
        r.series[0].samples[1].wrong = 3;
        r.series[4].samples[2].wrong = 2;
        assert_eq!(r.total_wrong(), 5);
        assert!(r.table().contains("# #wrong total: 5"));
    }
}
