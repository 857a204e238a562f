//! Adaptive rejection (`alpha: "auto"`): how many candidates to drop at a decision, decided
//! from the scores themselves instead of a fixed fraction.
//!
//! The paper's conclusion names its fixed `alpha` as the main weakness of Speculative
//! Rejection: how well a partial reward predicts the final one varies by prompt, so one
//! rejection rate is too timid on some prompts and throws away the eventual winner on others.
//! The rule here keeps every candidate that still has a fair chance of finishing ahead of the
//! current leader, under a simple model of how partial scores move:
//!
//! - a candidate's final score is its partial score plus a Gaussian drift with standard
//!   deviation `sigma`, independent across candidates;
//! - a candidate is kept when it is within `Z * sqrt(2) * sigma` of the leader, i.e. when
//!   its chance of ending above the leader is at least about one in six (`Z = 1`);
//! - `sigma` is measured on the request itself: from the second decision on it is the root
//!   mean square of the score changes of the rows scored at both the previous and this
//!   decision, scaled as a random walk to the tokens still to come
//!   (`sqrt(remaining / round_length)`); at the first decision nothing has been observed yet,
//!   and the rule assumes a partial answer can still move by as much as the candidates differ
//!   now (`sigma` = the standard deviation of the current scores, without the `sqrt(2)`).
//!
//! So a prompt whose partial scores are stable (high partial/final correlation) is pruned
//! hard, and one whose scores keep reshuffling is pruned gently. The rule never keeps fewer
//! than the answers the request returns.

/// Multiplier of the drift's standard deviation: one standard deviation (about a one in six
/// chance that a dropped candidate would have finished above the leader). The quality bench
/// chose it: with 2 the rule kept so many candidates that it spent more tokens than a fixed
/// alpha of 0.5 for the same score (BENCHMARKS.md).
pub const Z: f64 = 1.0;

/// What the rule measured at one decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoDecision {
    /// Candidates kept.
    pub keep: usize,
    /// Score margin below the leader within which candidates were kept.
    pub margin: f64,
}

/// The drift's standard deviation until the end, measured from the score changes of rows
/// scored at two consecutive decisions (`(previous, now)` pairs), `round_len` tokens apart,
/// with `remaining` tokens left to generate. `None` with fewer than two pairs.
pub fn measured_drift(pairs: &[(f32, f32)], round_len: usize, remaining: usize) -> Option<f64> {
    if pairs.len() < 2 || round_len == 0 {
        return None;
    }
    let ms = pairs
        .iter()
        .map(|&(a, b)| (b as f64 - a as f64).powi(2))
        .sum::<f64>()
        / pairs.len() as f64;
    Some(ms.sqrt() * (remaining as f64 / round_len as f64).sqrt())
}

/// How many of `ranked` (scores, best first) to keep, at least `min_keep` (and at most all).
/// `drift` is the measured standard deviation of the remaining score movement
/// ([`measured_drift`]); `None` at the first decision.
pub fn auto_keep(ranked: &[f32], drift: Option<f64>, min_keep: usize) -> AutoDecision {
    let n = ranked.len();
    if n == 0 {
        return AutoDecision {
            keep: 0,
            margin: 0.0,
        };
    }
    let margin = match drift {
        Some(sigma) => Z * std::f64::consts::SQRT_2 * sigma,
        None => Z * spread(ranked),
    };
    let leader = ranked[0] as f64;
    let within = ranked
        .iter()
        .take_while(|&&s| s as f64 >= leader - margin)
        .count();
    AutoDecision {
        keep: within.max(min_keep.max(1)).min(n),
        margin,
    }
}

/// The sample standard deviation of `xs` (0 for fewer than two values).
fn spread(xs: &[f32]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
    var.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_clear_groups_at_a_later_decision_keep_the_top_group() {
        // Scores that barely move (drift 0.25): the margin is sqrt(2) 0.25 = 0.35, which
        // holds the four leaders (within 0.3 of each other) and none of the rest, 5 below.
        let ranked = [10.0, 9.9, 9.8, 9.7, 5.0, 4.9, 4.8, 4.7];
        let d = auto_keep(&ranked, Some(0.25), 1);
        assert_eq!(d.keep, 4);
        assert!((d.margin - 0.25 * std::f64::consts::SQRT_2).abs() < 1e-9);
        // A drift of 0.1 keeps only the leaders within 0.14: two.
        assert_eq!(auto_keep(&ranked, Some(0.1), 1).keep, 2);
    }

    #[test]
    fn stable_scores_keep_only_the_leaders_ties() {
        let ranked = [3.0, 3.0, 2.0, 1.0];
        assert_eq!(auto_keep(&ranked, Some(0.0), 1).keep, 2);
        // ... but never fewer than the answers asked for.
        assert_eq!(auto_keep(&ranked, Some(0.0), 3).keep, 3);
    }

    #[test]
    fn volatile_scores_keep_everything() {
        let ranked = [1.0, 0.5, 0.0, -0.5];
        assert_eq!(auto_keep(&ranked, Some(10.0), 1).keep, 4);
    }

    #[test]
    fn the_first_decision_uses_the_spread_of_the_scores() {
        // mean 0, sample std = sqrt(20 / 4) = 2.24: the margin below the leader (3).
        let ranked = [3.0, 1.0, 0.0, -1.0, -3.0];
        let d = auto_keep(&ranked, None, 1);
        assert!((d.margin - 5f64.sqrt()).abs() < 1e-9);
        assert_eq!(d.keep, 2, "3 and 1 are within 2.24 of 3; 0 is not");
        // All equal: nothing is below the leader, everything is kept.
        assert_eq!(auto_keep(&[1.0; 6], None, 1).keep, 6);
        assert_eq!(auto_keep(&[], None, 1).keep, 0);
    }

    #[test]
    fn drift_is_the_rms_change_scaled_to_the_remaining_tokens() {
        let pairs = [(1.0, 2.0), (0.0, -1.0), (5.0, 5.0), (2.0, 3.0)];
        // RMS of (1, -1, 0, 1) = sqrt(3/4); 48 tokens left after a 12-token round: x2.
        let d = measured_drift(&pairs, 12, 48).unwrap();
        assert!((d - 0.75f64.sqrt() * 2.0).abs() < 1e-9);
        assert_eq!(measured_drift(&pairs[..1], 12, 48), None);
        assert_eq!(measured_drift(&pairs, 12, 0), Some(0.0));
    }
}
