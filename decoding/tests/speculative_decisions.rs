//! Speculative Rejection's decisions on the real SmolLM2 policy: the default schedule,
//! explicit schedules, adaptive rejection (`alpha: "auto"`) and the reasons a run makes no
//! decision.

use thresh_decoding::SamplingParams;
use thresh_decoding::strategy::adaptive::Z;
use thresh_decoding::strategy::{
    Fate, NoDecision, Rejection, Schedule, SpeculativeParams, StrategyInput, best_of_n,
    speculative_rejection,
};

mod common;

use common::scorers::{LetterCount, PrefixScore, prefix_score};
use common::{chat_ids, policy, strategy_input};

const QUESTION: &str = "Name three things that make a good cup of tea.";

fn input(ids: &[u32], max_tokens: usize, seed: u64) -> StrategyInput<'_> {
    let sampling = SamplingParams {
        temperature: 1.0,
        seed,
        ..Default::default()
    };
    strategy_input(ids, QUESTION, max_tokens, sampling)
}

fn params(n0: usize, rejection: Rejection, schedule: Option<Schedule>) -> SpeculativeParams {
    SpeculativeParams {
        rejection,
        kv_budget_tokens: usize::MAX,
        max_batch: n0,
        initial_batch: Some(n0),
        schedule,
    }
}

#[test]
fn the_default_schedule_decides_early_and_saves_tokens() {
    let ids = chat_ids(policy(), QUESTION);
    let inp = input(&ids, 96, 1234);
    let sr = speculative_rejection(
        &inp,
        &LetterCount('e'),
        &params(16, Rejection::Fixed(0.5), None),
    )
    .unwrap();
    // max_tokens 96: decisions at 12, 24 and 48 tokens, for the rows still decoding then.
    assert!(!sr.stats.decision_tokens.is_empty(), "{:?}", sr.stats);
    assert_eq!(sr.stats.decision_tokens[0], 12);
    for (d, want) in sr.stats.decision_tokens.iter().zip([12, 24, 48]) {
        assert_eq!(*d, want);
    }
    assert_eq!(sr.stats.no_decision, None);
    let bon = best_of_n(&inp, &LetterCount('e'), 16).unwrap();
    assert!(
        sr.stats.policy_tokens < bon.stats.policy_tokens,
        "{} >= {}",
        sr.stats.policy_tokens,
        bon.stats.policy_tokens
    );
}

#[test]
fn explicit_decision_tokens_are_where_decisions_happen() {
    let ids = chat_ids(policy(), QUESTION);
    let sr = speculative_rejection(
        &input(&ids, 40, 7),
        &LetterCount('e'),
        &params(
            8,
            Rejection::Fixed(0.5),
            Some(Schedule::Tokens(vec![5, 9, 20])),
        ),
    )
    .unwrap();
    let d = &sr.stats.decision_tokens;
    assert!(
        !d.is_empty() && d.iter().zip([5, 9, 20]).all(|(a, b)| *a == b),
        "{d:?}"
    );
    let sr = speculative_rejection(
        &input(&ids, 40, 7),
        &LetterCount('e'),
        &params(
            8,
            Rejection::Fixed(0.5),
            Some(Schedule::Geometric { first: 4 }),
        ),
    )
    .unwrap();
    let d = &sr.stats.decision_tokens;
    assert!(
        !d.is_empty() && d.iter().zip([4, 8, 16, 32]).all(|(a, b)| *a == b),
        "{d:?}"
    );
}

#[test]
fn auto_drops_exactly_the_rows_that_cannot_catch_up() {
    // PrefixScore never moves once a row has written four characters, so at the second
    // decision the measured drift is zero and the rule keeps only the leader's ties; at the
    // first it keeps the rows within Z standard deviations of the leader's score.
    let ids = chat_ids(policy(), QUESTION);
    let n0 = 12;
    let sr = speculative_rejection(
        &input(&ids, 30, 99),
        &PrefixScore,
        &params(n0, Rejection::Auto, Some(Schedule::Tokens(vec![8, 16]))),
    )
    .unwrap();
    assert_eq!(sr.stats.decision_tokens, vec![8, 16], "{:?}", sr.stats);
    let cands = sr.candidates.unwrap();
    let tok = &policy().tokenizer;
    // The rows' (constant) scores, recomputed from their tokens.
    let score: Vec<f32> = cands
        .iter()
        .map(|c| prefix_score(&tok.decode(&c.tokens, true).unwrap()))
        .collect();
    // First decision: all rows; margin = Z sample standard deviations.
    let mean = score.iter().sum::<f32>() / n0 as f32;
    let sd = (score.iter().map(|s| (s - mean).powi(2)).sum::<f32>() / (n0 - 1) as f32).sqrt();
    let lead = score.iter().cloned().fold(f32::MIN, f32::max);
    let kept1: Vec<usize> = (0..n0)
        .filter(|&r| score[r] >= lead - Z as f32 * sd)
        .collect();
    let pruned1: Vec<usize> = (0..n0)
        .filter(|&r| cands[r].fate == Fate::Pruned { round: 1 })
        .collect();
    assert_eq!(pruned1.len(), n0 - kept1.len(), "scores {score:?}");
    assert!(pruned1.iter().all(|r| !kept1.contains(r)));
    // Second decision: zero drift, so every kept row below the best kept score goes.
    let lead2 = kept1.iter().map(|&r| score[r]).fold(f32::MIN, f32::max);
    let pruned2: Vec<usize> = (0..n0)
        .filter(|&r| cands[r].fate == Fate::Pruned { round: 2 })
        .collect();
    let want2: Vec<usize> = kept1
        .iter()
        .copied()
        .filter(|&r| score[r] < lead2)
        .collect();
    assert_eq!(pruned2, want2, "scores {score:?}");
    assert!(sr.best[0].score == lead2);
}

#[test]
fn a_run_without_a_decision_says_why() {
    let ids = chat_ids(policy(), QUESTION);
    let reward = LetterCount('e');
    // The first decision of the default schedule (8 tokens) is not before max_tokens = 8.
    let sr = speculative_rejection(
        &input(&ids, 8, 1),
        &reward,
        &params(4, Rejection::Fixed(0.5), None),
    )
    .unwrap();
    assert_eq!(sr.stats.no_decision, Some(NoDecision::BeyondMaxTokens));
    assert_eq!(sr.stats.rounds, 1);
    // Every row ends on a stop string before the first decision at 30 tokens.
    let mut inp = input(&ids, 60, 1);
    inp.stop.stop = vec![" ".into(), "\n".into()];
    let sr = speculative_rejection(
        &inp,
        &reward,
        &params(4, Rejection::Fixed(0.5), Some(Schedule::Tokens(vec![30]))),
    )
    .unwrap();
    assert_eq!(sr.stats.no_decision, Some(NoDecision::AllFinished));
    // A budget that cannot hold a first round for the initial batch.
    let p = SpeculativeParams {
        kv_budget_tokens: 4 * ids.len(),
        ..params(4, Rejection::Fixed(0.5), Some(Schedule::Budget))
    };
    let sr = speculative_rejection(&input(&ids, 8, 1), &reward, &p).unwrap();
    assert_eq!(sr.stats.no_decision, Some(NoDecision::BudgetCannotBound));
    assert!(sr.stats.decision_tokens.is_empty());
}
