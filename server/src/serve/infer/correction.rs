//! Generate-then-correct (`alignment.correct`), on the engine: each chosen answer goes
//! through the Aligner; the original and the correction are scored, and the choice returns
//! the correction (`On`) or the higher-scored text (`Guarded`).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use thresh_aligner::CorrectionInput;
use thresh_reward::RewardInput;

use super::error::InferError;
use super::jobs::{CorrectionOut, GenOutput, Models};
use crate::serve::validation::{CorrectMode, Tokenized};

/// Generate-then-correct: each answer goes through the aligner; both texts are scored, and
/// the choice returns the correction (`On`) or the higher-scored text (`Guarded`).
pub fn correct_choices(
    models: &Models,
    job: &Tokenized,
    cancel: &Arc<AtomicBool>,
    out: &mut GenOutput,
) -> Result<(), InferError> {
    let aligner = models
        .aligner
        .as_ref()
        .ok_or_else(|| InferError::Unavailable {
            param: "alignment.correct",
            message: "alignment.correct needs an aligner: start the server with --aligner".into(),
        })?;
    let t = Instant::now();
    let inputs: Vec<CorrectionInput> = out
        .choices
        .iter()
        .map(|c| CorrectionInput {
            question: job.reward_prompt.clone(),
            // An empty answer is still something to correct.
            answer: if c.text.trim().is_empty() {
                "(no answer)".into()
            } else {
                c.text.clone()
            },
        })
        .collect();
    let sampling = thresh_decoding::SamplingParams {
        temperature: 0.0,
        ..Default::default()
    };
    let stop = thresh_decoding::StopConditions {
        max_tokens: job.req.stop.max_tokens,
        ..Default::default()
    };
    let corrections = aligner.correct(&inputs, &sampling, &stop, Some(cancel.clone()))?;
    let t_reward = Instant::now();
    let pairs: Vec<RewardInput> = out
        .choices
        .iter()
        .zip(&corrections)
        .flat_map(|(c, k)| {
            [c.text.clone(), k.text.clone()].map(|response| RewardInput {
                prompt: job.reward_prompt.clone(),
                response,
            })
        })
        .collect();
    let scored = models.reward.score(&pairs)?;
    out.stats.reward_calls += 1;
    out.stats.reward_tokens += scored.iter().map(|s| s.tokens).sum::<usize>();
    out.stats.reward_time += t_reward.elapsed();
    for ((choice, k), s) in out
        .choices
        .iter_mut()
        .zip(corrections)
        .zip(scored.chunks(2))
    {
        let (orig, corr) = (s[0].score, s[1].score);
        let use_corrected = job.req.correct == CorrectMode::On || corr >= orig;
        choice.correction = Some(CorrectionOut {
            original: choice.text.clone(),
            original_score: Some(orig),
            corrected: k.text.clone(),
            corrected_score: Some(corr),
            returned_corrected: use_corrected,
        });
        if use_corrected {
            choice.text = k.text;
            choice.tokens = k.completion_tokens;
            choice.finish_reason = k.finish.as_openai();
            choice.score = Some(corr);
            // The policy's token log-probabilities describe the original only.
            choice.logprobs = None;
        } else {
            choice.score = Some(orig);
        }
    }
    tracing::debug!(seconds = t.elapsed().as_secs_f64(), "corrected");
    Ok(())
}
