//! `--plot F.svg`: latency and bus bandwidth against message size, log-log, one line per
//! series (algorithm or NCCL variant, and mode when both modes ran). Drawn with plotters'
//! SVG backend: no external tool, no font files.

use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;

use super::report::{algbw, bus_factor, type_name, Mode, Report, Source};

const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One plotted line: label, whether NCCL, and its (bytes, value) points (positive only).
struct Line {
    /// The series name without the mode (its colour: one per series, whatever the mode).
    name: String,
    label: String,
    nccl: bool,
    eager: bool,
    points: Vec<(f64, f64)>,
}

fn lines(report: &Report, metric: impl Fn(u64, f64) -> f64) -> Vec<Line> {
    let both = report.both_modes();
    report
        .series
        .iter()
        .map(|s| Line {
            name: s.name.clone(),
            label: s.label(both),
            nccl: s.source == Source::Nccl,
            eager: s.mode == Mode::Eager && both,
            points: report
                .sizes
                .iter()
                .zip(&s.samples)
                .filter_map(|(&b, x)| x.time_us.map(|t| (b as f64, metric(b, t))))
                .filter(|(x, y)| x.is_finite() && y.is_finite() && *x > 0.0 && *y > 0.0)
                .collect(),
        })
        .collect()
}

/// A positive log-scale range holding every value (widened when flat or empty).
fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in values.filter(|v| v.is_finite() && *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() || hi <= 0.0 {
        return (1.0, 10.0);
    }
    (lo / 1.5, hi * 1.5)
}

fn size_label(b: f64) -> String {
    let b = b.round() as u64;
    if b >= 1 << 30 && b % (1 << 30) == 0 {
        format!("{}G", b >> 30)
    } else if b >= 1 << 20 && b % (1 << 20) == 0 {
        format!("{}M", b >> 20)
    } else if b >= 1 << 10 && b % (1 << 10) == 0 {
        format!("{}K", b >> 10)
    } else {
        format!("{b}")
    }
}

fn value_label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.1e}")
    }
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    xr: (f64, f64),
    ls: &[Line],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("plot: {e}");
    let yr = log_range(ls.iter().flat_map(|l| l.points.iter().map(|p| p.1)));
    // Powers of two on the size axis (1K, 4K, ...), powers of ten on the value axis.
    let x = (xr.0..xr.1).log_scale().base(2.0);
    let y = (yr.0..yr.1).log_scale();
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)
        .map_err(err)?;
    mesh(&mut chart, y_desc).map_err(err)?;
    // One colour per series name (the graph and eager lines of a series share it and differ
    // by fill), in order of first appearance: distinct as long as there are <= 10 series.
    let mut names: Vec<&str> = Vec::new();
    for l in ls {
        if !names.contains(&l.name.as_str()) {
            names.push(&l.name);
        }
    }
    for l in ls {
        if l.points.is_empty() {
            continue; // n/a everywhere: no line, no legend entry
        }
        let i = names.iter().position(|n| *n == l.name).unwrap_or(0);
        let color = COLORS.get(i % COLORS.len()).copied().unwrap_or(BLACK);
        let width = if l.nccl { 1 } else { 2 };
        let style = ShapeStyle {
            color: color.to_rgba(),
            filled: !l.eager,
            stroke_width: width,
        };
        chart
            .draw_series(LineSeries::new(l.points.iter().copied(), style))
            .map_err(err)?
            .label(l.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        chart
            .draw_series(PointSeries::of_element(
                l.points.iter().copied(),
                3,
                style,
                &|c, s, st| Circle::new(c, s, st),
            ))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)
}

fn mesh<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    y_desc: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend + 'a,
    X: plotters::coord::ranged1d::Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc("message size (bytes)")
        .y_desc(y_desc)
        .x_label_formatter(&|v| size_label(*v))
        .y_label_formatter(&|v| value_label(*v))
        .draw()
}

/// Renders the report as an SVG document (two panels: latency, bus bandwidth).
pub fn svg(report: &Report) -> Result<String, String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (1280, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| format!("plot: {e}"))?;
        let title = format!(
            "inc allreduce, {} {}, {} ranks, {}",
            type_name(report.dtype),
            report.op.name(),
            report.world,
            if report.backend == "sim" {
                "CPU simulator (not GPU numbers)".to_string()
            } else {
                report.device.clone()
            }
        );
        let root = root
            .titled(&title, ("sans-serif", 22))
            .map_err(|e| format!("plot: {e}"))?;
        let (left, right) = root.split_horizontally(640);
        let xr = log_range(report.sizes.iter().map(|b| *b as f64));
        let lat = lines(report, |_, t| t);
        panel(&left, "latency", "time (us)", xr, &lat)?;
        let factor = bus_factor(report.world);
        let bw = lines(report, |b, t| {
            algbw(b, t) * if factor > 0.0 { factor } else { 1.0 }
        });
        let y_desc = if factor > 0.0 {
            "busbw (GB/s)"
        } else {
            "algbw (GB/s), world 1"
        };
        panel(&right, "bus bandwidth", y_desc, xr, &bw)?;
        root.present().map_err(|e| format!("plot: {e}"))?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::super::report::tests::sample_report;
    use super::*;

    #[test]
    fn svg_is_well_formed_and_has_every_line() {
        let r = sample_report();
        let s = svg(&r).unwrap();
        assert!(s.starts_with("<svg"), "{}", &s[..s.len().min(80)]);
        assert!(s.trim_end().ends_with("</svg>"));
        // Legend entries (mode suffix since both modes are present).
        for label in [
            "one-shot (graph)",
            "auto (graph)",
            "nccl (graph)",
            "one-shot (eager)",
        ] {
            assert!(s.contains(label), "missing legend {label}");
        }
        assert!(s.contains("latency") && s.contains("bus bandwidth"));
        assert!(s.contains("<polyline"));
        // A series with no measured point gets no legend entry.
        assert!(!s.contains("nccl-symm"));
    }

    #[test]
    fn empty_or_flat_data_still_plots() {
        let mut r = sample_report();
        for s in &mut r.series {
            for x in &mut s.samples {
                x.time_us = None;
            }
        }
        assert!(svg(&r).unwrap().contains("</svg>"));
        r.sizes = vec![4096];
        for s in &mut r.series {
            s.samples.truncate(1);
            s.samples[0].time_us = Some(3.0);
        }
        r.world = 1;
        assert!(svg(&r).unwrap().contains("</svg>"));
    }

    #[test]
    fn ranges_and_labels() {
        assert_eq!(log_range([].into_iter()), (1.0, 10.0));
        let (lo, hi) = log_range([2.0, 8.0, 0.0, f64::NAN].into_iter());
        assert!(lo < 2.0 && hi > 8.0 && lo > 0.0);
        assert_eq!(size_label(1024.0), "1K");
        assert_eq!(size_label((64u64 << 20) as f64), "64M");
        assert_eq!(size_label(1000.0), "1000");
        assert_eq!(value_label(12345.6), "12346");
        assert_eq!(value_label(2.26), "2.3");
        assert_eq!(value_label(0.5), "0.500");
        assert_eq!(value_label(0.0001), "1.0e-4");
    }
}
