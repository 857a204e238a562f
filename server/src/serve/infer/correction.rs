//! Generate-then-correct (`alignment.correct`), on the engine: the chosen answers go through
//! the aligner's one guarded correction ([`thresh_aligner::Corrector::correct_guarded`]: an
//! empty answer is corrected as `(no answer)`, an empty correction is not scored and cannot
//! win), and each choice returns the correction (`On`) or the higher-scored text (`Guarded`).
//! Under a grammar, a correction that breaks it is reported (`follows_format: false`) and the
//! original returned.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use thresh_aligner::CorrectionInput;

use super::error::InferError;
use super::jobs::{CorrectionOut, GenOutput, Models, Policy};
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
            answer: c.text.clone(),
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
    let batch = aligner.correct_guarded(
        &inputs,
        models.reward.as_ref(),
        &sampling,
        &stop,
        Some(cancel.clone()),
    )?;
    out.stats.reward_calls += 1;
    out.stats.reward_tokens += batch.reward_tokens;
    out.stats.reward_time += batch.reward_time;
    for (choice, g) in out.choices.iter_mut().zip(batch.items) {
        let k = g.correction;
        // A correction must keep the answer's structure: checked on the policy's tokens.
        let follows_format = match (&job.req.sampling.constraint, &models.policy) {
            (Some(c), Policy::Local(m)) => Some(
                m.tokenizer
                    .encode(&k.text, false)
                    .is_ok_and(|ids| c.accepts(&ids)),
            ),
            (Some(_), Policy::Remote(_)) => Some(false),
            (None, _) => None,
        };
        let use_corrected = (job.req.correct == CorrectMode::On || g.use_corrected)
            && follows_format != Some(false);
        choice.correction = Some(CorrectionOut {
            original: choice.text.clone(),
            original_score: Some(g.original_score),
            corrected: k.text.clone(),
            corrected_score: g.corrected_score,
            returned_corrected: use_corrected,
            follows_format,
        });
        if use_corrected {
            choice.text = k.text;
            choice.tokens = k.completion_tokens;
            choice.finish_reason = k.finish.as_openai();
            choice.score = g.corrected_score;
            // The policy's token log-probabilities and ids describe the original only.
            choice.logprobs = None;
            choice.token_ids = None;
        } else {
            choice.score = Some(g.original_score);
        }
    }
    tracing::debug!(seconds = t.elapsed().as_secs_f64(), "corrected");
    Ok(())
}
