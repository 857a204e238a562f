//! Line charts of sweeps and searches, drawn as SVG with plotters.

use std::path::Path;

use plotters::prelude::*;

use super::population::write_atomic;
use crate::{DistortionError, Result};

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points `(x, y)`; non-finite ones are skipped.
    pub points: Vec<(f64, f64)>,
    /// Draw dashed (for reference curves such as the paper's rates).
    pub dashed: bool,
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    (lo - pad, hi + pad)
}

/// Makes a TrueType font available for chart text (once per process): `THRESH_PLOT_FONT`,
/// else DejaVu Sans or Liberation Sans at their usual Linux paths. plotters measures text
/// with a registered font when its `ab_glyph` feature is on (the workspace's charts use it).
fn ensure_font() -> std::result::Result<(), String> {
    static FONT: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    FONT.get_or_init(|| {
        let from_env = std::env::var_os("THRESH_PLOT_FONT").map(std::path::PathBuf::from);
        let usual = [
            "dejavu/DejaVuSans.ttf",
            "liberation/LiberationSans-Regular.ttf",
        ]
        .map(|f| Path::new("/usr/share/fonts/truetype").join(f));
        let path = from_env
            .into_iter()
            .chain(usual)
            .find(|p| p.is_file())
            .ok_or("no TrueType font for chart text: set THRESH_PLOT_FONT=PATH.ttf")?;
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            Box::leak(bytes.into_boxed_slice()),
        )
        .map_err(|_| format!("{}: not a TrueType font", path.display()))
    })
    .clone()
}

/// Draws `series` as lines with markers into an SVG file at `path` (written atomically).
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    let finite: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect()
        })
        .collect();
    let (x0, x1) = range(finite.iter().flatten().map(|p| p.0));
    let (y0, y1) = range(finite.iter().flatten().map(|p| p.1));
    let mut svg = String::new();
    {
        let err = |e: String| DistortionError::Config(format!("drawing {}: {e}", path.display()));
        ensure_font().map_err(err)?;
        let root = SVGBackend::with_string(&mut svg, (800, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (i, (s, pts)) in series.iter().zip(&finite).enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let style = color.stroke_width(2);
            if s.dashed {
                chart
                    .draw_series(DashedLineSeries::new(pts.iter().copied(), 6, 4, style))
                    .map_err(|e| err(e.to_string()))?
                    .label(s.name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            } else {
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), style))
                    .map_err(|e| err(e.to_string()))?
                    .label(s.name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| err(e.to_string()))?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    write_atomic(path, svg.as_bytes())
}
