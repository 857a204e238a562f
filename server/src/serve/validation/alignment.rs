//! The request's `alignment` object (and OpenAI's `best_of`) to a typed strategy: which
//! strategy, how many candidates, and each strategy's parameters, checked against the
//! server's limits.

use thresh_decoding::strategy::{Rejection, Schedule, SpeculativeParams, Strategy};

use super::params::{bad, unit_range, usize_of};
use crate::serve::api::errors::ApiError;
use crate::serve::api::openai::{AlignmentInput, AlphaInput};

/// Decisions a request may list in `alignment.decision_tokens`.
const MAX_DECISIONS: usize = 64;

/// Server limits on the strategies.
#[derive(Debug, Clone, Copy)]
pub struct StrategyLimits {
    /// Largest n / candidates.
    pub max_n: usize,
    /// KV tokens per request.
    pub kv_budget_tokens: usize,
}

/// The strategy a request asks for: `None` for plain sampling of `n` answers.
pub fn strategy(
    alignment: &AlignmentInput,
    best_of: Option<usize>,
    n: usize,
    limits: StrategyLimits,
) -> Result<Option<Strategy>, ApiError> {
    let name = match (&alignment.strategy, best_of) {
        (Some(s), _) => s.clone(),
        (None, Some(_)) => "best_of_n".into(),
        (None, None) if alignment.candidates.is_some() => "best_of_n".into(),
        (None, None) => "none".into(),
    };
    let candidates = match (alignment.candidates, best_of) {
        (Some(c), _) => usize_of("alignment.candidates", c)?,
        (None, Some(b)) => b,
        (None, None) => n.max(8.min(limits.max_n)),
    };
    let cand_param = if alignment.candidates.is_some() {
        "alignment.candidates"
    } else {
        "best_of"
    };
    if name != "none" && (candidates < n || candidates > limits.max_n) {
        return Err(bad(
            cand_param,
            format!(
                "{cand_param} must be in [n = {n}, {}], got {candidates}",
                limits.max_n
            ),
        ));
    }
    Ok(Some(match name.as_str() {
        "none" => {
            if best_of.is_some() {
                return Err(bad(
                    "best_of",
                    "best_of needs an alignment strategy other than none",
                ));
            }
            return Ok(None);
        }
        "best_of_n" => Strategy::BestOfN { candidates },
        "speculative_rejection" => {
            Strategy::Speculative(speculative(alignment, candidates, limits)?)
        }
        "soft_best_of_n" => {
            let lambda = alignment.lambda.unwrap_or(0.1);
            if !(lambda.is_finite() && lambda > 0.0 && lambda <= 1e6) {
                return Err(bad(
                    "alignment.lambda",
                    format!("alignment.lambda must be in (0, 1e6], got {lambda}"),
                ));
            }
            Strategy::SoftBestOfN {
                candidates,
                lambda: lambda as f32,
            }
        }
        "rejection_sampling" => {
            let threshold = alignment.threshold.unwrap_or(0.5);
            if !threshold.is_finite() {
                return Err(bad(
                    "alignment.threshold",
                    "alignment.threshold must be a finite number",
                ));
            }
            let max_tries = usize_of("alignment.max_tries", alignment.max_tries.unwrap_or(4))?;
            if !(1..=16).contains(&max_tries) {
                return Err(bad(
                    "alignment.max_tries",
                    format!("alignment.max_tries must be in [1, 16], got {max_tries}"),
                ));
            }
            Strategy::Rejection {
                candidates,
                threshold: threshold as f32,
                max_tries,
            }
        }
        other => {
            return Err(bad(
                "alignment.strategy",
                format!(
                    "alignment.strategy must be none, best_of_n, speculative_rejection, soft_best_of_n or rejection_sampling, got {other:?}"
                ),
            ));
        }
    }))
}

/// `alignment.alpha`: a fraction in `[0, 1)` (default 0.5) or `"auto"`.
fn rejection(alpha: Option<&AlphaInput>) -> Result<Rejection, ApiError> {
    const PARAM: &str = "alignment.alpha";
    match alpha {
        None => Ok(Rejection::Fixed(0.5)),
        Some(AlphaInput::Name(s)) if s == "auto" => Ok(Rejection::Auto),
        Some(AlphaInput::Name(s)) => Err(bad(
            PARAM,
            format!("alignment.alpha must be a number in [0, 1) or \"auto\", got {s:?}"),
        )),
        Some(AlphaInput::Fraction(a)) => {
            let a = unit_range(PARAM, Some(*a), 0.0, 1.0, false)?.unwrap_or(0.5);
            if a >= 1.0 {
                return Err(bad(PARAM, "alignment.alpha must be in [0, 1), got 1"));
            }
            Ok(Rejection::Fixed(a))
        }
    }
}

/// Speculative Rejection's parameters: `candidates` rows at the start, the rejection rule,
/// and one decision schedule: `decision_tokens`, `first_decision_tokens` (doubling),
/// `kv_budget_tokens` (the paper's budget rule), or none of them for the default
/// ([`Schedule::default_for`] the request's `max_tokens`).
fn speculative(
    a: &AlignmentInput,
    candidates: usize,
    limits: StrategyLimits,
) -> Result<SpeculativeParams, ApiError> {
    let given = [
        a.decision_tokens
            .as_ref()
            .map(|_| "alignment.decision_tokens"),
        a.first_decision_tokens
            .map(|_| "alignment.first_decision_tokens"),
        a.kv_budget_tokens.map(|_| "alignment.kv_budget_tokens"),
    ];
    let given: Vec<&str> = given.into_iter().flatten().collect();
    if let [first, second, ..] = given[..] {
        return Err(bad(
            second,
            format!("{first} and {second} are two decision schedules: send one of them"),
        ));
    }
    let kv = a
        .kv_budget_tokens
        .map(|k| usize_of("alignment.kv_budget_tokens", k))
        .transpose()?;
    if let Some(k) = kv
        && k > limits.kv_budget_tokens
    {
        return Err(bad(
            "alignment.kv_budget_tokens",
            format!(
                "alignment.kv_budget_tokens must be at most the server's {}, got {k}",
                limits.kv_budget_tokens
            ),
        ));
    }
    let schedule = if let Some(taus) = &a.decision_tokens {
        Some(Schedule::Tokens(decision_tokens(taus)?))
    } else if let Some(first) = a.first_decision_tokens {
        const PARAM: &str = "alignment.first_decision_tokens";
        let first = usize_of(PARAM, first)?;
        if first == 0 {
            return Err(bad(PARAM, format!("{PARAM} must be at least 1, got 0")));
        }
        Some(Schedule::Geometric { first })
    } else {
        kv.map(|_| Schedule::Budget)
    };
    Ok(SpeculativeParams {
        rejection: rejection(a.alpha.as_ref())?,
        kv_budget_tokens: kv.unwrap_or(limits.kv_budget_tokens),
        max_batch: candidates,
        initial_batch: Some(candidates),
        schedule,
    })
}

/// `alignment.decision_tokens`: 1 to 64 positive, strictly increasing token counts.
fn decision_tokens(taus: &[u64]) -> Result<Vec<usize>, ApiError> {
    const PARAM: &str = "alignment.decision_tokens";
    if taus.is_empty() || taus.len() > MAX_DECISIONS {
        return Err(bad(
            PARAM,
            format!(
                "{PARAM} must list 1 to {MAX_DECISIONS} token counts, got {}",
                taus.len()
            ),
        ));
    }
    if taus[0] == 0 || taus.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad(
            PARAM,
            format!("{PARAM} must be positive and strictly increasing, got {taus:?}"),
        ));
    }
    taus.iter().map(|&t| usize_of(PARAM, t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: StrategyLimits = StrategyLimits {
        max_n: 64,
        kv_budget_tokens: 65536,
    };

    fn sr(a: AlignmentInput) -> Result<SpeculativeParams, ApiError> {
        let a = AlignmentInput {
            strategy: Some("speculative_rejection".into()),
            ..a
        };
        match strategy(&a, None, 1, LIMITS)? {
            Some(Strategy::Speculative(p)) => Ok(p),
            other => panic!("not speculative: {other:?}"),
        }
    }

    fn param_of(e: ApiError) -> String {
        e.body()["error"]["param"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn speculative_defaults_to_the_default_schedule_and_half_rejection() {
        let p = sr(AlignmentInput::default()).unwrap();
        assert_eq!(p.rejection, Rejection::Fixed(0.5));
        assert_eq!(p.schedule, None);
        assert_eq!(p.initial_batch, Some(8));
        assert_eq!(p.kv_budget_tokens, LIMITS.kv_budget_tokens);
    }

    #[test]
    fn each_schedule_parameter_picks_its_schedule() {
        let p = sr(AlignmentInput {
            decision_tokens: Some(vec![8, 16]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.schedule, Some(Schedule::Tokens(vec![8, 16])));
        let p = sr(AlignmentInput {
            first_decision_tokens: Some(12),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.schedule, Some(Schedule::Geometric { first: 12 }));
        let p = sr(AlignmentInput {
            kv_budget_tokens: Some(900),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.schedule, Some(Schedule::Budget));
        assert_eq!(p.kv_budget_tokens, 900);
    }

    #[test]
    fn two_schedules_or_bad_token_lists_are_rejected() {
        let e = sr(AlignmentInput {
            decision_tokens: Some(vec![8]),
            kv_budget_tokens: Some(900),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(param_of(e), "alignment.kv_budget_tokens");
        for taus in [vec![], vec![0, 4], vec![8, 8], vec![16, 8], vec![1; 65]] {
            let e = sr(AlignmentInput {
                decision_tokens: Some(taus),
                ..Default::default()
            })
            .unwrap_err();
            assert_eq!(param_of(e), "alignment.decision_tokens");
        }
        let e = sr(AlignmentInput {
            first_decision_tokens: Some(0),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(param_of(e), "alignment.first_decision_tokens");
        let e = sr(AlignmentInput {
            kv_budget_tokens: Some(70000),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(param_of(e), "alignment.kv_budget_tokens");
    }

    #[test]
    fn alpha_is_a_fraction_or_auto() {
        let alpha = |a: AlphaInput| {
            sr(AlignmentInput {
                alpha: Some(a),
                ..Default::default()
            })
        };
        assert_eq!(
            alpha(AlphaInput::Name("auto".into())).unwrap().rejection,
            Rejection::Auto
        );
        assert_eq!(
            alpha(AlphaInput::Fraction(0.0)).unwrap().rejection,
            Rejection::Fixed(0.0)
        );
        for bad in [
            AlphaInput::Fraction(1.0),
            AlphaInput::Fraction(-0.1),
            AlphaInput::Fraction(f64::NAN),
            AlphaInput::Name("half".into()),
        ] {
            assert_eq!(param_of(alpha(bad).unwrap_err()), "alignment.alpha");
        }
    }

    #[test]
    fn candidates_and_best_of() {
        let a = AlignmentInput::default();
        assert_eq!(strategy(&a, None, 1, LIMITS).unwrap(), None);
        assert_eq!(
            strategy(&a, Some(4), 1, LIMITS).unwrap(),
            Some(Strategy::BestOfN { candidates: 4 })
        );
        let a = AlignmentInput {
            candidates: Some(2),
            ..Default::default()
        };
        assert_eq!(
            param_of(strategy(&a, None, 3, LIMITS).unwrap_err()),
            "alignment.candidates"
        );
        let a = AlignmentInput {
            strategy: Some("none".into()),
            ..Default::default()
        };
        assert_eq!(
            param_of(strategy(&a, Some(4), 1, LIMITS).unwrap_err()),
            "best_of"
        );
        let a = AlignmentInput {
            strategy: Some("beam".into()),
            ..Default::default()
        };
        assert_eq!(
            param_of(strategy(&a, None, 1, LIMITS).unwrap_err()),
            "alignment.strategy"
        );
    }
}
