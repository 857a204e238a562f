//! Request arrival times: all at once (`--request-rate inf`), a Poisson process at a rate, or
//! gamma-distributed gaps for burstier or smoother traffic (`--burstiness`, as in vLLM's
//! benchmark: shape `burstiness`, mean gap `1 / rate`; 1 is Poisson).

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Gamma};

use crate::error::BenchError;

/// Produces the gap before each request.
#[derive(Debug)]
pub struct Arrivals {
    gamma: Option<Gamma<f64>>,
    rng: StdRng,
}

impl Arrivals {
    /// Arrivals at `rate` requests per second (infinite: no gaps) with gamma shape
    /// `burstiness` (1: Poisson; below 1 burstier, above 1 more regular).
    pub fn new(rate: f64, burstiness: f64, seed: u64) -> Result<Self, BenchError> {
        if rate.is_nan() || rate <= 0.0 {
            return Err(BenchError::Config(format!(
                "--request-rate must be positive or inf, got {rate}"
            )));
        }
        if !(burstiness.is_finite() && burstiness > 0.0) {
            return Err(BenchError::Config(format!(
                "--burstiness must be a positive number, got {burstiness}"
            )));
        }
        let gamma = if rate.is_infinite() {
            None
        } else {
            let scale = 1.0 / (rate * burstiness);
            Some(Gamma::new(burstiness, scale).map_err(|e| {
                BenchError::Config(format!(
                    "no gamma distribution for rate {rate}, burstiness {burstiness}: {e}"
                ))
            })?)
        };
        Ok(Self {
            gamma,
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// Seconds to wait before the next request (0 at an infinite rate).
    pub fn next_gap(&mut self) -> f64 {
        match &self.gamma {
            Some(g) => g.sample(&mut self.rng),
            None => 0.0,
        }
    }

    /// Send times (seconds from the start) of `n` requests.
    pub fn schedule(&mut self, n: usize) -> Vec<f64> {
        let mut t = 0.0;
        (0..n)
            .map(|_| {
                t += self.next_gap();
                t
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(rate: f64, burstiness: f64, n: usize) -> Vec<f64> {
        let mut a = Arrivals::new(rate, burstiness, 7).unwrap();
        (0..n).map(|_| a.next_gap()).collect()
    }

    fn mean_and_cv2(v: &[f64]) -> (f64, f64) {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        (mean, var / (mean * mean))
    }

    #[test]
    fn poisson_arrivals_have_the_requested_mean_rate() {
        let n = 200_000;
        let schedule = Arrivals::new(8.0, 1.0, 3).unwrap().schedule(n);
        let observed = n as f64 / schedule[n - 1];
        assert!((observed - 8.0).abs() < 0.08, "observed rate {observed}");
        // Exponential gaps: squared coefficient of variation 1.
        let (mean, cv2) = mean_and_cv2(&gaps(8.0, 1.0, n));
        assert!((mean - 0.125).abs() < 0.002, "mean gap {mean}");
        assert!((cv2 - 1.0).abs() < 0.03, "cv^2 {cv2}");
    }

    #[test]
    fn burstiness_keeps_the_rate_and_changes_the_spread() {
        let n = 200_000;
        for (b, expected_cv2) in [(0.25, 4.0), (4.0, 0.25)] {
            let (mean, cv2) = mean_and_cv2(&gaps(2.0, b, n));
            assert!((mean - 0.5).abs() < 0.01, "burstiness {b}: mean gap {mean}");
            assert!(
                (cv2 - expected_cv2).abs() < 0.1 * expected_cv2,
                "burstiness {b}: cv^2 {cv2}"
            );
        }
    }

    #[test]
    fn infinite_rate_sends_everything_at_once_and_bad_rates_are_errors() {
        assert!(gaps(f64::INFINITY, 1.0, 10).iter().all(|&g| g == 0.0));
        assert!(Arrivals::new(0.0, 1.0, 1).is_err());
        assert!(Arrivals::new(-1.0, 1.0, 1).is_err());
        assert!(Arrivals::new(f64::NAN, 1.0, 1).is_err());
        let e = Arrivals::new(1.0, 0.0, 1).unwrap_err().to_string();
        assert!(e.contains("--burstiness"), "{e}");
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let a = Arrivals::new(5.0, 1.0, 11).unwrap().schedule(50);
        let b = Arrivals::new(5.0, 1.0, 11).unwrap().schedule(50);
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[1] >= w[0]));
    }
}
