//! Charts with plotters, PNG or SVG by the file's extension: the load run's latency
//! distribution and throughput over time, the quality sweep's score against compute, and a
//! soak run's RSS and open file descriptors over time.
//!
//! Text needs a TrueType font: `--plot-font`, else the first of a few common system fonts.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::BenchError;
use crate::quality::QualityReport;
use crate::report::LoadReport;
use crate::soak::Sample;

const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

fn err(path: &Path, message: impl ToString) -> BenchError {
    BenchError::Plot {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Registers the font that chart text is drawn with (once per process).
fn register_font(out: &Path, font: Option<&Path>) -> Result<(), BenchError> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let r = DONE.get_or_init(|| {
        let path = match font {
            Some(p) => p.to_path_buf(),
            None => FONT_CANDIDATES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    "no TrueType font found for chart text; pass --plot-font PATH.ttf".to_string()
                })?,
        };
        let bytes = std::fs::read(&path).map_err(|e| format!("font {}: {e}", path.display()))?;
        let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, leaked)
            .map_err(|_| format!("font {}: not a TrueType/OpenType font", path.display()))
    });
    r.clone().map_err(|m| err(out, m))
}

enum Kind {
    Png,
    Svg,
}

fn kind(path: &Path) -> Result<Kind, BenchError> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => Ok(Kind::Png),
        Some("svg") => Ok(Kind::Svg),
        _ => Err(err(path, "the chart file must end in .png or .svg")),
    }
}

/// Draws with `$f` into a temporary file next to the chart, then renames it into place.
macro_rules! draw_to {
    ($path:expr, $size:expr, $font:expr, $f:ident, $($arg:expr),*) => {{
        let path: &Path = $path;
        let k = kind(path)?;
        register_font(path, $font)?;
        let tmp = path.with_extension(format!(
            "tmp.{}",
            path.extension().and_then(|e| e.to_str()).unwrap_or("out")
        ));
        let result = match k {
            Kind::Png => {
                let root = BitMapBackend::new(&tmp, $size).into_drawing_area();
                $f(&root, $($arg),*).and_then(|_| root.present().map_err(|e| e.to_string()))
            }
            Kind::Svg => {
                let root = SVGBackend::new(&tmp, $size).into_drawing_area();
                $f(&root, $($arg),*).and_then(|_| root.present().map_err(|e| e.to_string()))
            }
        };
        match result {
            Ok(()) => std::fs::rename(&tmp, path).map_err(|e| err(path, e)),
            Err(m) => {
                let _ = std::fs::remove_file(&tmp);
                Err(err(path, m))
            }
        }
    }};
}

fn s<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

fn load_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &LoadReport,
    latencies_ms: &[f64],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(s)?;
    let (left, right) = root.split_horizontally(root.dim_in_pixel().0 / 2);
    // End-to-end latency histogram.
    let max = latencies_ms.iter().copied().fold(0.0f64, f64::max).max(1.0);
    let bins = 30usize;
    let width = max / bins as f64;
    let mut counts = vec![0u32; bins];
    for &l in latencies_ms {
        counts[((l / width) as usize).min(bins - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1);
    let mut c = ChartBuilder::on(&left)
        .caption("End-to-end latency", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max * 1.05, 0u32..top + 1)
        .map_err(s)?;
    c.configure_mesh()
        .x_desc("latency (ms)")
        .y_desc("requests")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(s)?;
    c.draw_series(counts.iter().enumerate().map(|(i, &n)| {
        let x0 = i as f64 * width;
        Rectangle::new([(x0, 0), (x0 + width, n)], BLUE.mix(0.6).filled())
    }))
    .map_err(s)?;
    // Output-token throughput over time.
    let t = &r.timeline;
    let ymax = t
        .output_tokens_per_s
        .iter()
        .copied()
        .fold(0.0f64, f64::max)
        .max(1.0);
    let xmax = (t.bin_s * t.output_tokens_per_s.len() as f64).max(1e-3);
    let mut c = ChartBuilder::on(&right)
        .caption("Output throughput over time", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax, 0.0..ymax * 1.1)
        .map_err(s)?;
    c.configure_mesh()
        .x_desc("time (s)")
        .y_desc("output tokens/s")
        .draw()
        .map_err(s)?;
    c.draw_series(LineSeries::new(
        t.output_tokens_per_s
            .iter()
            .enumerate()
            .map(|(i, &v)| ((i as f64 + 0.5) * t.bin_s, v)),
        RED.stroke_width(2),
    ))
    .map_err(s)?;
    Ok(())
}

/// Writes the load chart: end-to-end latency histogram and output throughput over time.
pub fn write_load_chart(
    path: &Path,
    report: &LoadReport,
    latencies_ms: &[f64],
    font: Option<&Path>,
) -> Result<(), BenchError> {
    draw_to!(path, (1200, 450), font, load_chart, report, latencies_ms)
}

fn quality_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &QualityReport,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(s)?;
    let pts: Vec<(f64, f64, bool, String)> = r
        .methods
        .iter()
        .map(|m| {
            let bon = m.strategy == "best_of_n";
            let label = match (m.n, m.alpha) {
                (Some(n), _) => format!("N={n}"),
                (_, Some(a)) => format!("α={a}"),
                _ => m.label.clone(),
            };
            (m.time_ratio.max(1e-3), m.improvement, bon, label)
        })
        .collect();
    let xmin = pts
        .iter()
        .map(|p| p.0)
        .fold(f64::INFINITY, f64::min)
        .min(1.0)
        / 1.5;
    let xmax = pts.iter().map(|p| p.0).fold(0.0f64, f64::max).max(1.0) * 1.5;
    let ymin = pts
        .iter()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .min(100.0)
        - 10.0;
    let ymax = pts
        .iter()
        .map(|p| p.1)
        .fold(f64::NEG_INFINITY, f64::max)
        .max(100.0)
        + 10.0;
    let mut c = ChartBuilder::on(root)
        .caption(
            format!("Improvement score vs compute (Bo_{} = 100)", r.settings.n0),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((xmin..xmax).log_scale(), ymin..ymax)
        .map_err(s)?;
    c.configure_mesh()
        .x_desc(format!(
            "wall time relative to Best-of-{} (log scale)",
            r.settings.n0
        ))
        .y_desc("improvement score")
        .x_label_formatter(&|x| format!("{x:.2}x"))
        .draw()
        .map_err(s)?;
    for (bon, color, name) in [
        (true, BLUE, "Best-of-N (by N)"),
        (false, RED, "Speculative Rejection (by alpha)"),
    ] {
        let series: Vec<&(f64, f64, bool, String)> = pts.iter().filter(|p| p.2 == bon).collect();
        if series.is_empty() {
            continue;
        }
        c.draw_series(LineSeries::new(
            series.iter().map(|p| (p.0, p.1)),
            color.mix(0.4),
        ))
        .map_err(s)?
        .label(name)
        .legend(move |(x, y)| Circle::new((x + 10, y), 5, color.filled()));
        c.draw_series(series.iter().map(|p| {
            EmptyElement::at((p.0, p.1))
                + Circle::new((0, 0), 5, color.filled())
                + Text::new(
                    p.3.clone(),
                    (7, -14),
                    ("sans-serif", 13).into_font().color(&color),
                )
        }))
        .map_err(s)?;
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(s)?;
    Ok(())
}

/// Writes the quality chart: improvement score against wall time relative to Bo_n0.
pub fn write_quality_chart(
    path: &Path,
    report: &QualityReport,
    font: Option<&Path>,
) -> Result<(), BenchError> {
    draw_to!(path, (800, 520), font, quality_chart, report)
}

fn soak_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    samples: &[Sample],
    warmup_s: f64,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(s)?;
    let (left, right) = root.split_horizontally(root.dim_in_pixel().0 / 2);
    let xmax = (samples.iter().map(|x| x.elapsed_s).fold(0.0f64, f64::max) / 60.0).max(1e-3);
    let warm_min = warmup_s / 60.0;
    let rss: Vec<(f64, f64)> = samples
        .iter()
        .map(|x| (x.elapsed_s / 60.0, x.rss_kib as f64 / 1024.0))
        .collect();
    let rmax = rss.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1.0);
    let mut c = ChartBuilder::on(&left)
        .caption("Server RSS", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax, 0.0..rmax * 1.15)
        .map_err(s)?;
    c.configure_mesh()
        .x_desc("time (min)")
        .y_desc("VmRSS (MiB)")
        .draw()
        .map_err(s)?;
    c.draw_series(LineSeries::new(rss.iter().copied(), BLUE.stroke_width(2)))
        .map_err(s)?
        .label("RSS")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    c.draw_series(LineSeries::new(
        [(warm_min, 0.0), (warm_min, rmax * 1.15)],
        BLACK.mix(0.5).stroke_width(1),
    ))
    .map_err(s)?
    .label("end of warm-up")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5)));
    // The 5% bound over the RSS at the end of warm-up.
    if let Some(w) = samples.iter().rev().find(|x| x.elapsed_s <= warmup_s) {
        let bound = w.rss_kib as f64 / 1024.0 * 1.05;
        c.draw_series(LineSeries::new(
            [(warm_min, bound), (xmax, bound)],
            RED.stroke_width(1),
        ))
        .map_err(s)?
        .label("+5% over warm-up end")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(s)?;
    let fmax = samples.iter().map(|x| x.fds).max().unwrap_or(1).max(1) as f64;
    let mut c = ChartBuilder::on(&right)
        .caption("Open file descriptors", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..xmax, 0.0..fmax * 1.2)
        .map_err(s)?;
    c.configure_mesh()
        .x_desc("time (min)")
        .y_desc("fds")
        .draw()
        .map_err(s)?;
    c.draw_series(LineSeries::new(
        samples.iter().map(|x| (x.elapsed_s / 60.0, x.fds as f64)),
        GREEN.stroke_width(2),
    ))
    .map_err(s)?;
    Ok(())
}

/// Writes the soak chart: the server's RSS (with the end of warm-up and the 5% bound) and
/// its open file descriptors over time.
pub fn write_soak_chart(
    path: &Path,
    samples: &[Sample],
    warmup_s: f64,
    font: Option<&Path>,
) -> Result<(), BenchError> {
    draw_to!(path, (1200, 450), font, soak_chart, samples, warmup_s)
}
