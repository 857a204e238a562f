//! The request's `alignment` object (and OpenAI's `best_of`) to a typed strategy: which
//! strategy, how many candidates, and each strategy's parameters, checked against the
//! server's limits.

use thresh_decoding::strategy::{Rejection, Schedule, SpeculativeParams, Strategy};

use super::params::{bad, unit_range, usize_of};
use crate::serve::api::contract::{MAX_DECISIONS, MAX_LAMBDA, MAX_TRIES, STRATEGIES};
use crate::serve::api::errors::ApiError;
use crate::serve::api::openai::{AlignmentInput, AlphaInput};

/// Server limits on the strategies.
#[derive(Debug, Clone, Copy)]
pub struct StrategyLimits {
    /// Largest n / candidates.
    pub max_n: usize,
    /// KV tokens per request.
    pub kv_budget_tokens: usize,
}

/// The `alignment` fields, each checked on its own whatever the strategy: a field out of its
/// range is a 400 naming it even where the chosen strategy would not read it (as the
/// OpenAPI document states each field's range, without conditions).
struct Fields {
    candidates: Option<usize>,
    lambda: Option<f32>,
    threshold: Option<f32>,
    max_tries: Option<usize>,
    rejection: Rejection,
    kv: Option<usize>,
    schedule: Option<Schedule>,
}

fn fields(a: &AlignmentInput, limits: StrategyLimits) -> Result<Fields, ApiError> {
    if let Some(s) = &a.strategy
        && !STRATEGIES.contains(&s.as_str())
    {
        return Err(bad(
            "alignment.strategy",
            format!(
                "alignment.strategy must be one of {}, got {s:?}",
                STRATEGIES.join(", ")
            ),
        ));
    }
    let candidates = a
        .candidates
        .map(|c| usize_of("alignment.candidates", c))
        .transpose()?;
    if let Some(c) = candidates
        && !(1..=limits.max_n).contains(&c)
    {
        return Err(bad(
            "alignment.candidates",
            format!(
                "alignment.candidates must be in [1, {}], got {c}",
                limits.max_n
            ),
        ));
    }
    let lambda = unit_range("alignment.lambda", a.lambda, 0.0, MAX_LAMBDA, true)?;
    let threshold = match a.threshold {
        Some(t) if !t.is_finite() => {
            return Err(bad(
                "alignment.threshold",
                "alignment.threshold must be a finite number",
            ));
        }
        t => t.map(|t| t as f32),
    };
    let max_tries = match a.max_tries {
        Some(t) if !(MAX_TRIES.0..=MAX_TRIES.1).contains(&t) => {
            return Err(bad(
                "alignment.max_tries",
                format!(
                    "alignment.max_tries must be in [{}, {}], got {t}",
                    MAX_TRIES.0, MAX_TRIES.1
                ),
            ));
        }
        t => t.map(|t| usize_of("alignment.max_tries", t)).transpose()?,
    };
    let kv = a
        .kv_budget_tokens
        .map(|k| usize_of("alignment.kv_budget_tokens", k))
        .transpose()?;
    if let Some(k) = kv
        && !(1..=limits.kv_budget_tokens).contains(&k)
    {
        return Err(bad(
            "alignment.kv_budget_tokens",
            format!(
                "alignment.kv_budget_tokens must be in [1, the server's {}], got {k}",
                limits.kv_budget_tokens
            ),
        ));
    }
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
    // A row never holds more tokens than the server's KV budget: a later decision point is
    // unreachable, and refused.
    let reach = limits.kv_budget_tokens;
    let schedule = if let Some(taus) = &a.decision_tokens {
        Some(Schedule::Tokens(decision_tokens(taus, reach)?))
    } else if let Some(first) = a.first_decision_tokens {
        const PARAM: &str = "alignment.first_decision_tokens";
        let first = usize_of(PARAM, first)?;
        if !(1..=reach).contains(&first) {
            return Err(bad(
                PARAM,
                format!("{PARAM} must be in [1, the server's KV budget {reach}], got {first}"),
            ));
        }
        Some(Schedule::Geometric { first })
    } else {
        kv.map(|_| Schedule::Budget)
    };
    Ok(Fields {
        candidates,
        lambda,
        threshold,
        max_tries,
        rejection: rejection(a.alpha.as_ref())?,
        kv,
        schedule,
    })
}

/// The strategy a request asks for: `None` for plain sampling of `n` answers.
pub fn strategy(
    alignment: &AlignmentInput,
    best_of: Option<usize>,
    n: usize,
    limits: StrategyLimits,
) -> Result<Option<Strategy>, ApiError> {
    let f = fields(alignment, limits)?;
    let name = match (&alignment.strategy, best_of) {
        (Some(s), _) => s.as_str(),
        (None, Some(_)) => "best_of_n",
        (None, None) if f.candidates.is_some() => "best_of_n",
        (None, None) => "none",
    };
    if name == "none" {
        if best_of.is_some() {
            return Err(bad(
                "best_of",
                "best_of needs an alignment strategy other than none",
            ));
        }
        return Ok(None);
    }
    let (candidates, cand_param) = match (f.candidates, best_of) {
        (Some(c), _) => (c, "alignment.candidates"),
        (None, Some(b)) => (b, "best_of"),
        (None, None) => (n.max(8.min(limits.max_n)), "n"),
    };
    if candidates < n || candidates > limits.max_n {
        return Err(bad(
            cand_param,
            format!(
                "{cand_param} must be in [n = {n}, {}], got {candidates}",
                limits.max_n
            ),
        ));
    }
    Ok(Some(match name {
        "best_of_n" => Strategy::BestOfN { candidates },
        "speculative_rejection" => Strategy::Speculative(SpeculativeParams {
            rejection: f.rejection,
            kv_budget_tokens: f.kv.unwrap_or(limits.kv_budget_tokens),
            max_batch: candidates,
            initial_batch: Some(candidates),
            schedule: f.schedule,
        }),
        "soft_best_of_n" => Strategy::SoftBestOfN {
            candidates,
            lambda: f.lambda.unwrap_or(0.1),
        },
        _ => Strategy::Rejection {
            candidates,
            threshold: f.threshold.unwrap_or(0.5),
            max_tries: f.max_tries.unwrap_or(4),
        },
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
            let x = unit_range(PARAM, Some(*a), 0.0, 1.0, false)?.unwrap_or(0.5);
            if *a >= 1.0 {
                return Err(bad(
                    PARAM,
                    format!("alignment.alpha must be in [0, 1), got {a}"),
                ));
            }
            // The open end stays open in f32 too: 0.9999999999999999 rounds to 1 there.
            Ok(Rejection::Fixed(x.min(1.0f32.next_down())))
        }
    }
}

/// `alignment.decision_tokens`: 1 to 64 positive, strictly increasing token counts, none past
/// `reach` tokens.
fn decision_tokens(taus: &[u64], reach: usize) -> Result<Vec<usize>, ApiError> {
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
    let taus: Vec<usize> = taus
        .iter()
        .map(|&t| usize_of(PARAM, t))
        .collect::<Result<_, _>>()?;
    if let Some(&last) = taus.last()
        && last > reach
    {
        return Err(bad(
            PARAM,
            format!("{PARAM} must be at most the server's KV budget {reach}, got {last}"),
        ));
    }
    Ok(taus)
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
        for (first, taus) in [(Some(65537), None), (None, Some(vec![8, 65537]))] {
            let e = sr(AlignmentInput {
                first_decision_tokens: first,
                decision_tokens: taus,
                ..Default::default()
            })
            .unwrap_err();
            assert!(param_of(e).contains("decision_tokens"));
        }
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
        assert_eq!(
            alpha(AlphaInput::Fraction(0.999_999_999_999_999_9))
                .unwrap()
                .rejection,
            Rejection::Fixed(1.0f32.next_down())
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

    #[test]
    fn each_field_is_checked_whatever_the_strategy() {
        // A field the chosen strategy does not read is still refused out of its range, as the
        // OpenAPI document states each field's range without conditions.
        for (name, a, param) in [
            (
                "none",
                AlignmentInput {
                    candidates: Some(0),
                    ..Default::default()
                },
                "alignment.candidates",
            ),
            (
                "none",
                AlignmentInput {
                    candidates: Some(65),
                    ..Default::default()
                },
                "alignment.candidates",
            ),
            (
                "best_of_n",
                AlignmentInput {
                    lambda: Some(0.0),
                    ..Default::default()
                },
                "alignment.lambda",
            ),
            (
                "best_of_n",
                AlignmentInput {
                    max_tries: Some(0),
                    ..Default::default()
                },
                "alignment.max_tries",
            ),
            (
                "none",
                AlignmentInput {
                    alpha: Some(AlphaInput::Fraction(1.5)),
                    ..Default::default()
                },
                "alignment.alpha",
            ),
            (
                "soft_best_of_n",
                AlignmentInput {
                    kv_budget_tokens: Some(0),
                    ..Default::default()
                },
                "alignment.kv_budget_tokens",
            ),
            (
                "best_of_n",
                AlignmentInput {
                    decision_tokens: Some(vec![4, 2]),
                    ..Default::default()
                },
                "alignment.decision_tokens",
            ),
        ] {
            let a = AlignmentInput {
                strategy: Some(name.into()),
                ..a
            };
            let e = strategy(&a, None, 1, LIMITS).expect_err(param);
            assert_eq!(param_of(e), param, "{name}");
        }
        // In range, they are accepted and the strategy that reads them uses them.
        let a = AlignmentInput {
            strategy: Some("soft_best_of_n".into()),
            candidates: Some(4),
            lambda: Some(2.0),
            max_tries: Some(3),
            ..Default::default()
        };
        assert_eq!(
            strategy(&a, None, 2, LIMITS).unwrap(),
            Some(Strategy::SoftBestOfN {
                candidates: 4,
                lambda: 2.0
            })
        );
    }
}
