//! Best-of-N and Speculative Rejection on the real SmolLM2 policy, with the real MiniLM
//! relevance reward and with deterministic scorers whose selections a reference
//! implementation in this file recomputes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use thresh_decoding::strategy::{
    Fate, SpeculativeParams, StrategyInput, best_of_n, keep_count, speculative_rejection,
};
use thresh_decoding::{DecodeError, SamplingParams, StopConditions};
use thresh_models::{ChatMessage, GgmlDType, LoadOptions, LoadedModel, load};
use thresh_reward::{Prompt, RelevanceReward, RewardInput, RewardModel, Scored};

fn policy() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| {
        let p = thresh_models::testing::smollm2_gguf();
        let opts = LoadOptions {
            quant: Some(GgmlDType::Q8_0),
            ..Default::default()
        };
        load(p.to_str().unwrap(), &opts).unwrap()
    })
}

fn relevance() -> &'static RelevanceReward {
    static R: OnceLock<RelevanceReward> = OnceLock::new();
    R.get_or_init(|| {
        RelevanceReward::load(
            &thresh_models::testing::minilm_dir(),
            &candle_core::Device::Cpu,
        )
        .unwrap()
    })
}

const QUESTION: &str = "Give me one tip for staying healthy.";

fn prompt_ids() -> Vec<u32> {
    let m = policy();
    let text = m
        .chat_template
        .as_ref()
        .unwrap()
        .render(&[ChatMessage::new("user", QUESTION)], true)
        .unwrap();
    m.tokenizer.encode(&text, false).unwrap()
}

fn input(ids: &[u32], max_tokens: usize, candidates: bool) -> StrategyInput<'_> {
    let m = policy();
    StrategyInput {
        decoder: &m.decoder,
        tokenizer: &m.tokenizer,
        prompt_ids: ids,
        reward_prompt: Prompt::Text(QUESTION.into()),
        sampling: SamplingParams {
            temperature: 1.0,
            top_k: 50,
            seed: 11,
            ..Default::default()
        },
        stop: StopConditions {
            max_tokens,
            ..Default::default()
        },
        top_k: 1,
        return_candidates: candidates,
        cancel: None,
        stepper: None,
    }
}

/// Reward = number of occurrences of a letter in the response so far.
struct LetterCount(char);

impl RewardModel for LetterCount {
    fn name(&self) -> &str {
        "letter-count"
    }
    fn score(&self, inputs: &[RewardInput]) -> thresh_reward::Result<Vec<Scored>> {
        Ok(inputs
            .iter()
            .map(|i| Scored {
                score: i.response.matches(self.0).count() as f32,
                tokens: i.response.len(),
                truncated: false,
            })
            .collect())
    }
}

/// Reward = a fixed pseudo-random function of the response text (an arbitrary oracle).
struct HashScore;

fn hash_score(text: &str) -> f32 {
    let mut h: u64 = 1469598103934665603;
    for b in text.bytes() {
        h = (h ^ b as u64).wrapping_mul(1099511628211);
    }
    (h % 1000) as f32
}

impl RewardModel for HashScore {
    fn name(&self) -> &str {
        "hash"
    }
    fn score(&self, inputs: &[RewardInput]) -> thresh_reward::Result<Vec<Scored>> {
        Ok(inputs
            .iter()
            .map(|i| Scored {
                score: hash_score(&i.response),
                tokens: 1,
                truncated: false,
            })
            .collect())
    }
}

#[test]
fn alpha_zero_is_best_of_n() {
    let ids = prompt_ids();
    let bon = best_of_n(&input(&ids, 48, true), relevance(), 6).unwrap();
    let params = SpeculativeParams {
        alpha: 0.0,
        kv_budget_tokens: 6 * (ids.len() + 16),
        max_batch: 64,
        initial_batch: Some(6),
        decision_tokens: None,
    };
    let sr = speculative_rejection(&input(&ids, 48, true), relevance(), &params).unwrap();
    assert_eq!(sr.stats.initial_batch, 6);
    assert!(sr.stats.rounds >= 2, "the budget must force several rounds");
    assert!(sr.stats.pruned_per_round.iter().all(|&p| p == 0));
    assert_eq!(sr.best[0].row, bon.best[0].row);
    assert_eq!(sr.best[0].text, bon.best[0].text);
    let (a, b) = (sr.candidates.unwrap(), bon.candidates.unwrap());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (x.row, &x.tokens, &x.text, &x.fate),
            (y.row, &y.tokens, &y.text, &y.fate)
        );
        assert!((x.score - y.score).abs() < 1e-5);
    }
    // Best-of-N's answer is the argmax, ties to the lowest row.
    let best = b
        .iter()
        .fold(&b[0], |acc, c| if c.score > acc.score { c } else { acc });
    assert_eq!(bon.best[0].row, best.row);
}

/// One row of a full, unpruned run: its tokens and whether EOS ended it.
struct Trajectory {
    tokens: Vec<u32>,
    eos: bool,
}

/// The reference: Speculative Rejection recomputed from fixed trajectories, as the issue
/// states it. Returns (rows pruned per round, final ranking of kept rows).
fn reference(
    trajs: &[Trajectory],
    prompt_len: usize,
    budget: usize,
    alpha: f32,
    score: &dyn Fn(usize, usize) -> f32,
) -> (Vec<Vec<usize>>, Vec<usize>) {
    let mut active: Vec<usize> = (0..trajs.len()).collect();
    let mut done_len: Vec<usize> = vec![0; trajs.len()];
    let mut kept_finished: Vec<usize> = Vec::new();
    let mut pruned = Vec::new();
    let mut k = 0; // tokens generated by every active row
    let mut binds = true;
    while !active.is_empty() {
        if binds && active.len() * (prompt_len + k + 1) > budget {
            binds = false;
        }
        let mut finished_now = Vec::new();
        let over = |n: usize, k: usize| binds && n * (prompt_len + k + 1) > budget;
        while !active.is_empty() && !over(active.len(), k) {
            let mut still = Vec::new();
            for &r in &active {
                let t = &trajs[r];
                if t.eos && t.tokens.len() == k {
                    done_len[r] = k;
                    finished_now.push(r);
                } else if !t.eos && t.tokens.len() == k + 1 {
                    done_len[r] = k + 1;
                    finished_now.push(r);
                } else {
                    still.push(r);
                }
            }
            active = still;
            k += 1;
        }
        if active.is_empty() {
            kept_finished.extend(finished_now);
            break;
        }
        let mut ranked: Vec<(usize, f32)> = kept_finished
            .iter()
            .map(|&r| (r, score(r, done_len[r])))
            .collect();
        ranked.extend(finished_now.iter().map(|&r| (r, score(r, done_len[r]))));
        ranked.extend(active.iter().map(|&r| (r, score(r, k))));
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let keep = keep_count(alpha, ranked.len());
        let mut dropped: Vec<usize> = ranked[keep..].iter().map(|x| x.0).collect();
        dropped.sort_unstable();
        let kept: Vec<usize> = ranked[..keep].iter().map(|x| x.0).collect();
        active.retain(|r| kept.contains(r));
        kept_finished = kept.into_iter().filter(|r| !active.contains(r)).collect();
        pruned.push(dropped);
    }
    let mut fin: Vec<(usize, f32)> = kept_finished
        .iter()
        .map(|&r| (r, score(r, done_len[r])))
        .collect();
    fin.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    (pruned, fin.into_iter().map(|x| x.0).collect())
}

fn check_against_reference(reward: &dyn RewardModel, score_text: &dyn Fn(&str) -> f32, alpha: f32) {
    let ids = prompt_ids();
    let max_tokens = 40;
    let n0 = 8;
    let budget = n0 * (ids.len() + 10);
    // Fixed trajectories: every row of a full batch (rows are batch-invariant and seeded
    // per row, so pruning never changes a survivor's tokens).
    let full = best_of_n(&input(&ids, max_tokens, true), reward, n0).unwrap();
    let trajs: Vec<Trajectory> = full
        .candidates
        .unwrap()
        .into_iter()
        .map(|c| Trajectory {
            eos: c.finish_reason == "stop",
            tokens: c.tokens,
        })
        .collect();
    let tok = &policy().tokenizer;
    let score =
        |r: usize, len: usize| score_text(&tok.decode(&trajs[r].tokens[..len], true).unwrap());
    let (want_pruned, want_rank) = reference(&trajs, ids.len(), budget, alpha, &score);

    let params = SpeculativeParams {
        alpha,
        kv_budget_tokens: budget,
        max_batch: n0,
        initial_batch: None,
        decision_tokens: None,
    };
    let sr = speculative_rejection(
        &StrategyInput {
            top_k: 8,
            ..input(&ids, max_tokens, true)
        },
        reward,
        &params,
    )
    .unwrap();
    let got_pruned_counts = &sr.stats.pruned_per_round;
    assert_eq!(
        got_pruned_counts,
        &want_pruned.iter().map(Vec::len).collect::<Vec<_>>(),
        "rows pruned per round"
    );
    let cands = sr.candidates.unwrap();
    for (round, rows) in want_pruned.iter().enumerate() {
        let mut got: Vec<usize> = cands
            .iter()
            .filter(|c| c.fate == Fate::Pruned { round: round + 1 })
            .map(|c| c.row)
            .collect();
        got.sort_unstable();
        assert_eq!(&got, rows, "round {}", round + 1);
    }
    assert_eq!(sr.best.iter().map(|c| c.row).collect::<Vec<_>>(), want_rank);
    // Survivors' tokens are those of the unpruned run.
    for c in &sr.best {
        assert_eq!(c.tokens, trajs[c.row].tokens);
    }
    // Token accounting is exact: every sampled token, EOS included.
    // (No stop strings here, so "stop" means the row sampled EOS, pruned later or not.)
    let expected: usize = cands
        .iter()
        .map(|c| c.tokens.len() + usize::from(c.finish_reason == "stop"))
        .sum();
    assert_eq!(sr.stats.policy_tokens, expected);
    // The budget holds: live KV never exceeds B tokens.
    let bpt = policy().decoder.new_cache().bytes_per_token();
    assert!(
        sr.stats.peak_kv_bytes <= budget * bpt,
        "{} > {}",
        sr.stats.peak_kv_bytes,
        budget * bpt
    );
    assert!(
        sr.stats.policy_tokens < full.stats.policy_tokens,
        "pruning saves policy tokens"
    );
    // KV bytes fall whenever a decision drops rows that were still decoding.
    assert_eq!(
        sr.stats.kv_bytes_per_round.len(),
        sr.stats.pruned_per_round.len()
    );
    for (round, &(before, after)) in sr.stats.kv_bytes_per_round.iter().enumerate() {
        let dropped_active = cands
            .iter()
            .any(|c| c.fate == (Fate::Pruned { round: round + 1 }) && c.finish_reason == "length");
        if dropped_active {
            assert!(after < before, "round {}: {before} -> {after}", round + 1);
        } else {
            assert_eq!(after, before);
        }
    }
}

#[test]
fn rounds_follow_the_budget_with_a_letter_count_reward() {
    check_against_reference(
        &LetterCount('e'),
        &|t: &str| t.matches('e').count() as f32,
        0.5,
    );
}

#[test]
fn selection_matches_a_reference_for_an_arbitrary_oracle() {
    check_against_reference(&HashScore, &hash_score, 0.7);
}

#[test]
fn cancellation_returns_promptly() {
    let ids = prompt_ids();
    let flag = Arc::new(AtomicBool::new(false));
    let setter = {
        let flag = flag.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            flag.store(true, Ordering::Relaxed);
        })
    };
    let mut inp = input(&ids, 4000, false);
    inp.stop.ignore_eos = true;
    inp.cancel = Some(flag);
    let t = Instant::now();
    let params = SpeculativeParams {
        alpha: 0.5,
        kv_budget_tokens: 100_000,
        max_batch: 8,
        initial_batch: None,
        decision_tokens: None,
    };
    let err = speculative_rejection(&inp, relevance(), &params).unwrap_err();
    assert!(matches!(err, DecodeError::Cancelled), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "cancellation took {:?}",
        t.elapsed()
    );
    setter.join().unwrap();
    // Bad parameters are errors.
    let bad = SpeculativeParams {
        alpha: 1.0,
        ..params
    };
    assert!(speculative_rejection(&input(&ids, 8, false), relevance(), &bad).is_err());
}

#[test]
fn soft_best_of_n_and_rejection_sampling() {
    use thresh_decoding::strategy::{rejection_sampling, soft_best_of_n};
    let ids = prompt_ids();
    let reward = LetterCount('e');
    let bon = best_of_n(&input(&ids, 16, true), &reward, 4).unwrap();
    // A tiny temperature makes the soft choice the argmax.
    let soft = soft_best_of_n(&input(&ids, 16, false), &reward, 4, 1e-4).unwrap();
    assert_eq!(soft.best[0].row, bon.best[0].row);
    assert_eq!(soft.best[0].tokens, bon.best[0].tokens);
    assert!(soft_best_of_n(&input(&ids, 16, false), &reward, 4, 0.0).is_err());

    // A threshold the first batch meets stops after one batch.
    let easy =
        rejection_sampling(&input(&ids, 16, false), &reward, 2, f32::NEG_INFINITY, 5).unwrap();
    assert_eq!(easy.stats.rounds, 1);
    // An unreachable one draws every batch, with fresh seeds, and returns the best seen.
    let hard = rejection_sampling(&input(&ids, 16, true), &reward, 2, f32::INFINITY, 3).unwrap();
    assert_eq!(hard.stats.rounds, 3);
    let cands = hard.candidates.unwrap();
    assert_eq!(
        cands.iter().map(|c| c.row).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4, 5]
    );
    let max = cands
        .iter()
        .map(|c| c.score)
        .fold(f32::NEG_INFINITY, f32::max);
    assert_eq!(hard.best[0].score, max);
    assert_eq!(
        hard.stats.policy_tokens,
        cands
            .iter()
            .map(|c| c.tokens.len() + usize::from(c.finish_reason == "stop"))
            .sum::<usize>()
    );
    // Batch 1 of try 0 is row 1 of Best-of-N with the same seed.
    assert_eq!(cands[1].tokens, bon.candidates.as_ref().unwrap()[1].tokens);
}

#[test]
fn single_round_variant_decides_at_fixed_token_counts() {
    let ids = prompt_ids();
    let n0 = 6;
    let params = SpeculativeParams {
        alpha: 0.5,
        kv_budget_tokens: usize::MAX,
        max_batch: n0,
        initial_batch: Some(n0),
        decision_tokens: Some(vec![6]),
    };
    let reward = LetterCount('e');
    let sr = speculative_rejection(&input(&ids, 24, true), &reward, &params).unwrap();
    assert_eq!(
        sr.stats.rounds, 2,
        "one decision at tau, then the survivors run to the end"
    );
    assert_eq!(sr.stats.pruned_per_round, vec![n0 - keep_count(0.5, n0)]);
    // The pruned rows had exactly tau tokens when they were dropped (unless EOS came first).
    for c in sr.candidates.unwrap() {
        if c.fate == (Fate::Pruned { round: 1 }) && c.finish_reason == "length" {
            assert_eq!(c.tokens.len(), 6);
        }
    }
}
