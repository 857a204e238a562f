//! Small helpers the workspace's benchmarks and device checks share: a flag's value from the
//! command line, medians, correlations, and the process's peak memory.

/// The value after `name` on the command line (`--reps 3` gives `Some("3")` for `--reps`).
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The median of `v` (the upper one for an even count); NaN when `v` is empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The process's peak resident memory so far in MiB (`VmHWM`), NaN where `/proc` lacks it.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Pearson's correlation of `x` and `y` (NaN when either is constant or they are shorter
/// than two).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    if n < 2 {
        return f64::NAN;
    }
    let (mx, my) = (
        x[..n].iter().sum::<f64>() / n as f64,
        y[..n].iter().sum::<f64>() / n as f64,
    );
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x[..n].iter().zip(&y[..n]) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    sxy / (sxx * syy).sqrt()
}

/// Kendall's tau-b of `x` and `y` (ties counted as neither concordant nor discordant, and
/// corrected for; NaN when either is constant).
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    let (mut conc, mut disc, mut tx, mut ty) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..n {
        for j in i + 1..n {
            let (dx, dy) = (x[i] - x[j], y[i] - y[j]);
            match (dx == 0.0, dy == 0.0) {
                (true, true) => {}
                (true, false) => tx += 1,
                (false, true) => ty += 1,
                (false, false) if (dx > 0.0) == (dy > 0.0) => conc += 1,
                (false, false) => disc += 1,
            }
        }
    }
    let denom = (((conc + disc + tx) * (conc + disc + ty)) as f64).sqrt();
    if denom == 0.0 {
        return f64::NAN;
    }
    (conc - disc) as f64 / denom
}

#[cfg(test)]
mod tests {
    #[test]
    fn correlations() {
        use super::{kendall_tau_b, pearson};
        let x = [1.0, 2.0, 3.0, 4.0];
        assert!((pearson(&x, &[2.0, 4.0, 6.0, 8.0]) - 1.0).abs() < 1e-12);
        assert!((pearson(&x, &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert!(pearson(&x, &[1.0; 4]).is_nan());
        // One swapped pair of six: (5 - 1) / 6.
        assert!((kendall_tau_b(&x, &[1.0, 3.0, 2.0, 4.0]) - 4.0 / 6.0).abs() < 1e-12);
        // scipy.stats.kendalltau([1, 2, 3, 4], [1, 1, 2, 3]) = 0.9128709291752769.
        assert!((kendall_tau_b(&x, &[1.0, 1.0, 2.0, 3.0]) - 0.912_870_929_175_276_9).abs() < 1e-12);
        assert!(kendall_tau_b(&x, &[2.0; 4]).is_nan());
    }

    #[test]
    fn medians() {
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
        assert!(super::median(Vec::new()).is_nan());
    }
}
