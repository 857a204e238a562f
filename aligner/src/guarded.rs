//! Guarded correction: correct a batch of answers, score each original and its correction
//! with a reward model in one call, and keep the correction only where it scores at least as
//! high. The server's `alignment.correct` and any offline caller share this one rule.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use thresh_decoding::{SamplingParams, StopConditions};
use thresh_reward::{RewardInput, RewardModel};

use crate::corrector::{Correction, CorrectionInput, Corrector};
use crate::error::Result;

/// What the corrector is given in place of an empty answer (a policy can stop at once): the
/// empty text is still scored as the original, but the corrector needs something to rewrite.
pub const NO_ANSWER: &str = "(no answer)";

/// One guarded correction: the correction, both scores, and which text wins.
#[derive(Debug, Clone)]
pub struct Guarded {
    /// The correction that was generated.
    pub correction: Correction,
    /// Reward of the original answer.
    pub original_score: f32,
    /// Reward of the corrected answer; `None` when the correction is empty (it is not scored
    /// and cannot win).
    pub corrected_score: Option<f32>,
    /// Whether the correction scored at least as high as the original and is returned.
    pub use_corrected: bool,
}

/// Guarded corrections of a batch, in input order, with what the reward model spent.
#[derive(Debug, Clone)]
pub struct GuardedBatch {
    /// One per input.
    pub items: Vec<Guarded>,
    /// Tokens the reward model read.
    pub reward_tokens: usize,
    /// Time in the reward model.
    pub reward_time: Duration,
}

impl Corrector {
    /// Corrects every pair (an empty answer is corrected as [`NO_ANSWER`]), scores each
    /// original answer and each non-empty correction in one reward call, and keeps a
    /// correction only when it scores at least as high as its original. Every pair is checked
    /// before any generation starts; `cancel` stops generation at the next step.
    pub fn correct_guarded(
        &self,
        inputs: &[CorrectionInput],
        reward: &dyn RewardModel,
        sampling: &SamplingParams,
        stop: &StopConditions,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Result<GuardedBatch> {
        let to_correct: Vec<CorrectionInput> = inputs
            .iter()
            .map(|i| CorrectionInput {
                question: i.question.clone(),
                answer: if i.answer.trim().is_empty() {
                    NO_ANSWER.into()
                } else {
                    i.answer.clone()
                },
            })
            .collect();
        let corrections = self.correct(&to_correct, sampling, stop, cancel)?;
        // The originals first, then the corrections that have text.
        let mut pairs: Vec<RewardInput> = inputs
            .iter()
            .map(|i| RewardInput {
                prompt: i.question.clone(),
                response: i.answer.clone(),
            })
            .collect();
        let mut corrected_at = Vec::with_capacity(inputs.len());
        for (i, c) in inputs.iter().zip(&corrections) {
            if c.text.trim().is_empty() {
                corrected_at.push(None);
            } else {
                corrected_at.push(Some(pairs.len()));
                pairs.push(RewardInput {
                    prompt: i.question.clone(),
                    response: c.text.clone(),
                });
            }
        }
        let t = Instant::now();
        let scored = reward.score(&pairs)?;
        let reward_time = t.elapsed();
        let items = corrections
            .into_iter()
            .zip(corrected_at)
            .enumerate()
            .map(|(i, (correction, at))| {
                let original_score = scored[i].score;
                let corrected_score = at.map(|j| scored[j].score);
                Guarded {
                    use_corrected: corrected_score.is_some_and(|c| c >= original_score),
                    original_score,
                    corrected_score,
                    correction,
                }
            })
            .collect();
        Ok(GuardedBatch {
            items,
            reward_tokens: scored.iter().map(|s| s.tokens).sum(),
            reward_time,
        })
    }
}
