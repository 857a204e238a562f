//! The quality bench's report: matched-score savings and the two charts.

/// One method's mean over the prompts.
pub struct Point {
    /// The method.
    pub label: String,
    /// Improvement score.
    pub score: f64,
    /// Wall time relative to Bo_n0.
    pub time: f64,
    /// Tokens relative to Bo_n0.
    pub tokens: f64,
}

/// The N at which Best-of-N reaches `score`, interpolating its measured `(N, score)` points
/// linearly in log2 N; `None` below the first point or above the last.
pub fn matched(bon: &[(f64, f64)], score: f64) -> Option<f64> {
    bon.windows(2).find_map(|w| {
        let ((n1, s1), (n2, s2)) = (w[0], w[1]);
        if !(s1 <= score && score <= s2) {
            return None;
        }
        let f = if s2 > s1 {
            (score - s1) / (s2 - s1)
        } else {
            0.0
        };
        Some(2f64.powf(n1.log2() + f * (n2.log2() - n1.log2())))
    })
}

/// Mean partial/final correlation against the partial answer's length.
pub fn svg_correlation(points: &[(usize, f64, f64)]) -> String {
    let (w, h, m) = (520.0, 340.0, 60.0);
    let xs: Vec<f64> = points.iter().map(|p| (p.0 as f64).log2()).collect();
    let (xmin, xmax) = (
        xs.first().copied().unwrap_or(0.0) - 0.3,
        xs.last().copied().unwrap_or(1.0) + 0.3,
    );
    let px = |x: f64| m + (x - xmin) / (xmax - xmin) * (w - 2.0 * m);
    let py = |y: f64| h - m - y.clamp(-0.2, 1.0) / 1.2 * (h - 2.0 * m) - 0.2 / 1.2 * (h - 2.0 * m);
    let mut s = frame(
        (w, h, m),
        "tokens of the partial answer",
        "correlation with the final reward",
    );
    for y in [0.0, 0.5, 1.0] {
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{y:.1}</text>\n",
            m - 5.0,
            py(y) + 4.0
        );
    }
    for (series, color, name) in [
        (1usize, "#1f77b4", "Pearson"),
        (2, "#d62728", "Kendall tau-b"),
    ] {
        let pts: Vec<String> = points
            .iter()
            .zip(&xs)
            .map(|(p, x)| {
                let y = if series == 1 { p.1 } else { p.2 };
                format!("{:.1},{:.1}", px(*x), py(y))
            })
            .collect();
        s += &format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>\n<text x=\"{}\" y=\"{}\" fill=\"{color}\">{name}</text>\n",
            pts.join(" "),
            m + 10.0,
            if series == 1 { 20.0 } else { 35.0 }
        );
    }
    for (p, x) in points.iter().zip(&xs) {
        s += &format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            px(*x),
            h - m + 15.0,
            p.0
        );
    }
    s + "</svg>\n"
}

/// Score against compute (wall time relative to Bo_n0, log axis).
pub fn svg_score(points: &[Point], n0: usize) -> String {
    let (w, h, m) = (640.0, 400.0, 60.0);
    let xs: Vec<f64> = points.iter().map(|p| p.time.max(1e-3).log2()).collect();
    let (xmin, xmax) = (
        xs.iter().cloned().fold(f64::MAX, f64::min) - 0.5,
        xs.iter().cloned().fold(f64::MIN, f64::max) + 0.5,
    );
    let (ymin, ymax) = (
        points.iter().map(|p| p.score).fold(f64::MAX, f64::min) - 10.0,
        points.iter().map(|p| p.score).fold(f64::MIN, f64::max) + 10.0,
    );
    let px = |x: f64| m + (x - xmin) / (xmax - xmin) * (w - 2.0 * m);
    let py = |y: f64| h - m - (y - ymin) / (ymax - ymin) * (h - 2.0 * m);
    let mut s = frame(
        (w, h, m),
        &format!("wall time relative to Best-of-{n0} (log2)"),
        "improvement score",
    );
    let mut tick = xmin.ceil();
    while tick <= xmax {
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}x</text>\n",
            px(tick),
            h - m + 15.0,
            2f64.powf(tick)
        );
        tick += 1.0;
    }
    for y in [ymin, (ymin + ymax) / 2.0, ymax] {
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.0}</text>\n",
            m - 5.0,
            py(y) + 4.0,
            y
        );
    }
    for (p, x) in points.iter().zip(&xs) {
        let (color, label) = if p.label.starts_with("BoN") {
            ("#1f77b4", p.label.trim_start_matches("BoN ").to_string())
        } else {
            (
                "#d62728",
                p.label.trim_start_matches("SpecRej ").to_string(),
            )
        };
        s += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{color}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\">{label}</text>\n",
            px(*x),
            py(p.score),
            px(*x) + 7.0,
            py(p.score) - 7.0
        );
    }
    s += &format!(
        "<text x=\"{}\" y=\"20\" fill=\"#1f77b4\">Best-of-N (by N)</text><text x=\"{}\" y=\"35\" fill=\"#d62728\">Speculative Rejection (by initial batch and alpha)</text>\n</svg>\n",
        m, m
    );
    s
}

/// An SVG document of `w` x `h` with a white background, the two axes `m` in from the
/// edges, and their labels.
fn frame((w, h, m): (f64, f64, f64), x_label: &str, y_label: &str) -> String {
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    s += &format!(
        "<line x1=\"{m}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - m,
        w - m,
        h - m,
        h - m
    );
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{x_label}</text>\n<text x=\"15\" y=\"{}\" transform=\"rotate(-90 15 {})\" text-anchor=\"middle\">{y_label}</text>\n",
        w / 2.0,
        h - 20.0,
        h / 2.0,
        h / 2.0
    );
    s
}
