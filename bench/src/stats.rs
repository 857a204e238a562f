//! Summary statistics of latency samples: mean, median and tail percentiles, with the same
//! linear interpolation as NumPy's default, so numbers match other benchmark tools.

use serde::{Deserialize, Serialize};

/// Mean, median, p90, p99, min and max of a set of samples (NaN-free); all `None` when the set
/// is empty.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Samples summarised.
    pub count: usize,
    /// Arithmetic mean.
    pub mean: Option<f64>,
    /// 50th percentile.
    pub median: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Smallest sample.
    pub min: Option<f64>,
    /// Largest sample.
    pub max: Option<f64>,
}

impl Summary {
    /// Summarises `samples` (non-finite values are dropped).
    pub fn of(samples: &[f64]) -> Self {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        Self {
            count: v.len(),
            mean: Some(mean),
            median: Some(percentile_sorted(&v, 50.0)),
            p90: Some(percentile_sorted(&v, 90.0)),
            p99: Some(percentile_sorted(&v, 99.0)),
            min: v.first().copied(),
            max: v.last().copied(),
        }
    }
}

/// The `q`-th percentile (0 to 100) of sorted samples, interpolating linearly between the two
/// nearest ranks (NumPy's `linear` method). `sorted` must not be empty.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 1 {
        return sorted[0];
    }
    let rank = (q.clamp(0.0, 100.0) / 100.0) * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = rank - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// The `q`-th percentile of unsorted samples; `None` when there are none.
pub fn percentile(samples: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(percentile_sorted(&v, q))
}

/// `count / seconds`, or 0 for an empty interval.
pub fn rate(count: f64, seconds: f64) -> f64 {
    if seconds > 0.0 { count / seconds } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_to_a_hundred_match_numpy() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        // numpy.percentile(range(1, 101), [50, 90, 99]) == [50.5, 90.1, 99.01]
        assert!((percentile(&v, 50.0).unwrap() - 50.5).abs() < 1e-9);
        assert!((percentile(&v, 90.0).unwrap() - 90.1).abs() < 1e-9);
        assert!((percentile(&v, 99.0).unwrap() - 99.01).abs() < 1e-9);
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
    }

    #[test]
    fn summary_of_unsorted_samples() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0, f64::NAN]);
        assert_eq!(s.count, 4);
        assert_eq!(s.mean, Some(2.5));
        assert_eq!(s.median, Some(2.5));
        // rank 0.9 * 3 = 2.7 between 3 and 4
        assert!((s.p90.unwrap() - 3.7).abs() < 1e-9);
        assert!((s.p99.unwrap() - 3.97).abs() < 1e-9);
        assert_eq!((s.min, s.max), (Some(1.0), Some(4.0)));
    }

    #[test]
    fn empty_and_single_samples() {
        assert_eq!(Summary::of(&[]), Summary::default());
        assert_eq!(Summary::of(&[]).mean, None);
        let s = Summary::of(&[7.0]);
        assert_eq!((s.median, s.p99), (Some(7.0), Some(7.0)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn rate_is_count_over_seconds() {
        assert_eq!(rate(300.0, 12.0), 25.0);
        assert_eq!(rate(5.0, 0.0), 0.0);
    }
}
