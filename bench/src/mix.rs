//! `thresh-bench load --mix`: a weighted mix of request kinds in one run (plain, Best-of-N,
//! Speculative Rejection, streamed, and streamed requests the client cancels on purpose),
//! each request drawing its kind from a seeded generator.

use std::fmt;
use std::time::Duration;

use rand::Rng;

use crate::client::{AlignmentParams, RequestParams};
use crate::error::BenchError;

pub use crate::kind::RequestKind;

/// Integer weights of the request kinds, e.g. `plain=4,best-of-n=2,cancel=1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(RequestKind, u32)>,
    total: u32,
}

impl Mix {
    /// Parses `kind=weight,...` (a kind without `=weight` weighs 1; kinds not named are never
    /// drawn). Every kind at most once, weights whole numbers, at least one positive.
    pub fn parse(s: &str) -> Result<Self, BenchError> {
        let mut weights: Vec<(RequestKind, u32)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = match part.split_once('=') {
                Some((n, w)) => {
                    let w: u32 = w.trim().parse().map_err(|_| {
                        BenchError::Config(format!(
                            "--mix: the weight of {:?} must be a whole number, got {:?}",
                            n.trim(),
                            w.trim()
                        ))
                    })?;
                    (n, w)
                }
                None => (part, 1),
            };
            let kind: RequestKind = name.parse()?;
            if weights.iter().any(|(k, _)| *k == kind) {
                return Err(BenchError::Config(format!(
                    "--mix names {kind} more than once"
                )));
            }
            weights.push((kind, w));
        }
        weights.retain(|(_, w)| *w > 0);
        let total = weights
            .iter()
            .try_fold(0u32, |acc, (_, w)| acc.checked_add(*w))
            .ok_or_else(|| BenchError::Config("--mix: the weights are too large".into()))?;
        if total == 0 {
            return Err(BenchError::Config(format!(
                "--mix needs at least one kind with a positive weight, got {s:?}"
            )));
        }
        weights.sort_by_key(|(k, _)| *k);
        Ok(Mix { weights, total })
    }

    /// The kinds with positive weight and their weights.
    pub fn weights(&self) -> &[(RequestKind, u32)] {
        &self.weights
    }

    /// Draws one kind with probability weight / total.
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> RequestKind {
        let mut x = rng.random_range(0..self.total);
        for &(k, w) in &self.weights {
            if x < w {
                return k;
            }
            x -= w;
        }
        // Unreachable: x < total = the sum of the weights.
        self.weights[self.weights.len() - 1].0
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .weights
            .iter()
            .map(|(k, w)| format!("{k}={w}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// A mixed run: the kinds' weights and how the aligned and cancelled kinds are shaped.
#[derive(Debug, Clone)]
pub struct MixConfig {
    /// The weights.
    pub mix: Mix,
    /// `alignment.candidates` of Best-of-N and Speculative Rejection requests.
    pub candidates: usize,
    /// `alignment.alpha` of Speculative Rejection requests.
    pub alpha: f64,
    /// A cancelled request is dropped after its first event, or after a time drawn
    /// uniformly from zero to this, whichever comes first.
    pub cancel_within: Duration,
}

impl MixConfig {
    /// The request shape of `kind`, from the run's base shape (its `max_tokens`,
    /// temperature and top-k are kept; streaming and alignment follow the kind).
    pub fn params_for(&self, kind: RequestKind, base: &RequestParams) -> RequestParams {
        let mut p = base.clone();
        p.alignment = AlignmentParams::default();
        match kind {
            RequestKind::Plain => p.stream = false,
            RequestKind::BestOfN => {
                p.stream = false;
                p.alignment.strategy = Some("best_of_n".into());
                p.alignment.candidates = Some(self.candidates);
            }
            RequestKind::SpeculativeRejection => {
                p.stream = false;
                p.alignment.strategy = Some("speculative_rejection".into());
                p.alignment.candidates = Some(self.candidates);
                p.alignment.alpha = Some(self.alpha);
            }
            RequestKind::Stream | RequestKind::Cancel => p.stream = true,
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn mixes_parse_with_weights_defaults_and_aliases() {
        let m = Mix::parse("plain=4, best_of_n=2,sr=2,stream,cancel=1").unwrap();
        assert_eq!(
            m.weights(),
            &[
                (RequestKind::Plain, 4),
                (RequestKind::BestOfN, 2),
                (RequestKind::SpeculativeRejection, 2),
                (RequestKind::Stream, 1),
                (RequestKind::Cancel, 1),
            ]
        );
        assert_eq!(
            m.to_string(),
            "plain=4,best-of-n=2,speculative-rejection=2,stream=1,cancel=1"
        );
        // Zero weights drop the kind.
        let m = Mix::parse("plain=0,cancel=3").unwrap();
        assert_eq!(m.weights(), &[(RequestKind::Cancel, 3)]);
    }

    #[test]
    fn bad_mixes_are_refused_with_the_reason() {
        for (s, why) in [
            ("", "positive weight"),
            ("plain=0", "positive weight"),
            ("plain=x", "whole number"),
            ("plain=-1", "whole number"),
            ("greedy=1", "unknown request kind"),
            ("plain=1,plain=2", "more than once"),
            ("plain=4294967295,cancel=1", "too large"),
        ] {
            let e = Mix::parse(s).unwrap_err().to_string();
            assert!(e.contains(why), "{s:?}: {e}");
        }
    }

    #[test]
    fn draws_follow_the_weights_and_the_seed() {
        let m = Mix::parse("plain=6,best-of-n=3,cancel=1").unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        let n = 20_000;
        let mut counts = [0usize; 5];
        for _ in 0..n {
            let k = m.draw(&mut rng);
            counts[RequestKind::ALL.iter().position(|x| *x == k).unwrap()] += 1;
        }
        let share = |i: usize| counts[i] as f64 / n as f64;
        assert!((share(0) - 0.6).abs() < 0.02, "{counts:?}");
        assert!((share(1) - 0.3).abs() < 0.02, "{counts:?}");
        assert!((share(4) - 0.1).abs() < 0.02, "{counts:?}");
        assert_eq!(counts[2] + counts[3], 0);
        // The same seed draws the same sequence.
        let seq = |seed| {
            let mut r = StdRng::seed_from_u64(seed);
            (0..50).map(|_| m.draw(&mut r)).collect::<Vec<_>>()
        };
        assert_eq!(seq(3), seq(3));
        assert_ne!(seq(3), seq(4));
    }

    #[test]
    fn each_kind_gets_its_own_request_shape() {
        let cfg = MixConfig {
            mix: Mix::parse("plain").unwrap(),
            candidates: 4,
            alpha: 0.5,
            cancel_within: Duration::from_secs(1),
        };
        let base = RequestParams {
            max_tokens: 32,
            stream: true,
            temperature: Some(0.7),
            top_k: None,
            alignment: AlignmentParams {
                strategy: Some("best_of_n".into()),
                candidates: Some(9),
                alpha: None,
                return_candidates: false,
            },
        };
        let p = cfg.params_for(RequestKind::Plain, &base);
        assert!(!p.stream && p.alignment.strategy.is_none() && p.max_tokens == 32);
        let p = cfg.params_for(RequestKind::BestOfN, &base);
        assert_eq!(
            (
                p.stream,
                p.alignment.strategy.as_deref(),
                p.alignment.candidates
            ),
            (false, Some("best_of_n"), Some(4))
        );
        let p = cfg.params_for(RequestKind::SpeculativeRejection, &base);
        assert_eq!(
            (p.alignment.strategy.as_deref(), p.alignment.alpha),
            (Some("speculative_rejection"), Some(0.5))
        );
        for k in [RequestKind::Stream, RequestKind::Cancel] {
            let p = cfg.params_for(k, &base);
            assert!(p.stream && p.alignment.strategy.is_none());
            assert_eq!(p.temperature, Some(0.7));
        }
    }
}
