//! Sampling responses from the policy and from the geometric mixture of policy and reference,
//! without gradients.
//!
//! Each new token runs a plain (no KV cache) forward of the trainer's decoder over every
//! unfinished row's whole sequence, projecting only the last position to the vocabulary: the
//! policy changes every step, so the serving decoder's cache would have to be rebuilt anyway.
//! A response of `n` tokens after a prompt of `p` costs `n` forwards of up to `p + n`
//! tokens (quadratic in `n`), for the policy rows and, for mixture rows, the reference too.
//! Token choice is `thresh_decoding`'s [`Sampler`] (temperature, seeded per row).

use candle_core::{D, Tensor};
use thresh_decoding::{Sampler, SamplingParams};

use crate::error::Result;
use crate::model::{Batch, TrainModel};

/// The geometric mixture's per-token log-probabilities,
/// `log_softmax(c * ref_logits + (1 - c) * policy_logits)`: `c = 0` is the policy, `c = 1`
/// the reference.
pub fn mixture_logits(policy: &[f32], reference: &[f32], c: f64) -> Vec<f32> {
    let c = c as f32;
    let mixed: Vec<f32> = policy
        .iter()
        .zip(reference)
        .map(|(p, r)| c * r + (1.0 - c) * p)
        .collect();
    log_softmax(&mixed)
}

/// `x - logsumexp(x)`.
pub fn log_softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + x.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
    x.iter().map(|v| v - lse).collect()
}

/// What one row samples from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source {
    /// The current policy.
    Policy,
    /// The geometric mixture with reference weight `c`.
    Mixture(f64),
}

/// One row to complete: its prompt ids and what to sample from.
#[derive(Debug, Clone)]
pub struct Row {
    /// Prompt token ids (non-empty).
    pub prompt: Vec<u32>,
    /// The distribution.
    pub source: Source,
}

/// Last-position logits `(rows, vocab)` of `seqs` under `model`, detached, on the host.
fn last_logits(model: &TrainModel, seqs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
    let rows: Vec<(Vec<u32>, usize)> = seqs.iter().map(|s| (s.clone(), 0)).collect();
    let batch = Batch::new(&rows, model.device())?;
    let last = model.last_hidden(&batch)?.detach().unsqueeze(1)?;
    let logits: Tensor = model.project(&last)?.squeeze(1)?.detach();
    Ok(logits.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?)
}

/// Samples a response for every row: up to `max_new` tokens, stopping after any of `stop`
/// (which is kept as the response's last token). Row `r` draws with `Sampler::new(params, r)`.
pub fn sample(
    policy: &TrainModel,
    reference: &TrainModel,
    rows: &[Row],
    params: &SamplingParams,
    max_new: usize,
    stop: &[u32],
) -> Result<Vec<Vec<u32>>> {
    let mut samplers: Vec<Sampler> = (0..rows.len()).map(|r| Sampler::new(params, r)).collect();
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); rows.len()];
    let mut done = vec![max_new == 0; rows.len()];
    for _ in 0..max_new {
        let active: Vec<usize> = (0..rows.len()).filter(|&r| !done[r]).collect();
        if active.is_empty() {
            break;
        }
        let seq = |r: usize| -> Vec<u32> {
            let mut s = rows[r].prompt.clone();
            s.extend_from_slice(&out[r]);
            s
        };
        let seqs: Vec<Vec<u32>> = active.iter().map(|&r| seq(r)).collect();
        let pol = last_logits(policy, &seqs)?;
        let mixed: Vec<usize> = (0..active.len())
            .filter(|&i| matches!(rows[active[i]].source, Source::Mixture(_)))
            .collect();
        let refs = if mixed.is_empty() {
            Vec::new()
        } else {
            let s: Vec<Vec<u32>> = mixed.iter().map(|&i| seqs[i].clone()).collect();
            last_logits(reference, &s)?
        };
        let mut next_ref = refs.into_iter();
        for (i, &r) in active.iter().enumerate() {
            let logits = match rows[r].source {
                Source::Policy => pol[i].clone(),
                Source::Mixture(c) => {
                    let rf = next_ref.next().unwrap_or_default();
                    mixture_logits(&pol[i], &rf, c)
                }
            };
            let context = &seqs[i];
            let tok = samplers[r].sample(&logits, context, &[]);
            samplers[r].observe(tok);
            out[r].push(tok);
            if stop.contains(&tok) {
                done[r] = true;
            }
        }
        for r in 0..rows.len() {
            if out[r].len() >= max_new {
                done[r] = true;
            }
        }
    }
    Ok(out)
}

/// Per-token log-probabilities `(B, T)` of a batch's next tokens under `model` (the logit at
/// `t` scoring `ids[t + 1]`), with the response mask `(B, T)`; gradients flow when the model
/// trains.
pub fn token_logps(model: &TrainModel, batch: &Batch) -> Result<(Tensor, Tensor)> {
    let logits = model.logits(batch)?;
    let (targets, mask) = batch.targets()?;
    let lp = crate::losses::token_logps(&logits, &targets)?;
    Ok((lp, mask))
}

/// Summed log-probabilities `(B,)` of per-token values under a mask.
pub fn summed(token_logps: &Tensor, mask: &Tensor) -> Result<Tensor> {
    Ok((token_logps * mask)?.sum(D::Minus1)?)
}
