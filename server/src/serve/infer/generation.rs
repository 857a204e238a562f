//! One generation job on a worker thread: the request's strategy (or plain sampling, streamed
//! as it goes), then the optional Aligner correction. Decode steps go through the engine's
//! [`Stepper`], which batches them with the other running requests.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use thresh_decoding::strategy::{StrategyInput, StrategyOutput};
use thresh_decoding::{DecodeBatch, Stepper};
use tokio::sync::mpsc;

use super::deltas::Deltas;
use super::error::InferError;
use super::jobs::{Event, GenOutput, Models, Policy};
use super::output::{plain_output, strategy_output};
use crate::serve::validation::{CorrectMode, Tokenized};

pub(super) fn generate(
    models: &Models,
    stepper: &dyn Stepper,
    job: &Tokenized,
    cancel: &Arc<AtomicBool>,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<GenOutput, InferError> {
    let mut out = run_strategy(models, stepper, job, cancel, events)?;
    if job.req.correct != CorrectMode::Off {
        super::correction::correct_choices(models, job, cancel, &mut out)?;
    }
    Ok(out)
}

fn run_strategy(
    models: &Models,
    stepper: &dyn Stepper,
    job: &Tokenized,
    cancel: &Arc<AtomicBool>,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<GenOutput, InferError> {
    let policy = match &models.policy {
        Policy::Local(p) => p,
        Policy::Remote(r) => return super::remote::run(models, r, job, cancel, events),
    };
    let req = &job.req;
    let reward = models.reward.as_ref();
    let input = StrategyInput {
        decoder: &policy.decoder,
        tokenizer: &policy.tokenizer,
        prompt_ids: &job.prompt_ids,
        reward_prompt: job.reward_prompt.clone(),
        sampling: sampling_for(policy, &req.sampling),
        stop: req.stop.clone(),
        top_k: req.n,
        // Kept internally for the pruned-token count; returned only when asked for.
        return_candidates: true,
        cancel: Some(cancel.clone()),
        stepper: Some(stepper),
        prefix_cache: Some(&models.prefix),
    };
    let Some(strategy) = &req.strategy else {
        return plain(models, policy, stepper, job, cancel, events);
    };
    let out: StrategyOutput = strategy.run(&input, reward)?;
    strategy_output(out, &policy.tokenizer, job)
}

/// The request's sampling, drawn on the policy's device when that is an accelerator (only
/// token ids and log-probabilities cross back each step); on the CPU the host sampler is
/// faster.
fn sampling_for(
    policy: &thresh_models::LoadedModel,
    sampling: &thresh_decoding::SamplingParams,
) -> thresh_decoding::SamplingParams {
    thresh_decoding::SamplingParams {
        on_device: !policy.decoder.device().is_cpu(),
        ..sampling.clone()
    }
}

/// Plain sampling of `n` rows; streams each row's new text ([`Deltas`]), and scores the answers when the request asks
/// (`alignment.score`, or the server's `--score-plain`).
fn plain(
    models: &Models,
    policy: &thresh_models::LoadedModel,
    stepper: &dyn Stepper,
    job: &Tokenized,
    cancel: &Arc<AtomicBool>,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<GenOutput, InferError> {
    let req = &job.req;
    let t = Instant::now();
    let mut batch = DecodeBatch::with_prefix_cache(
        &policy.decoder,
        &policy.tokenizer,
        &job.prompt_ids,
        req.n,
        &sampling_for(policy, &req.sampling),
        &req.stop,
        Some(&models.prefix),
    )?;
    batch.set_cancel_flag(cancel.clone());
    batch.set_stepper(stepper);
    let mut deltas = Deltas::new(req);
    while !batch.is_done() {
        batch.step()?;
        if req.stream {
            deltas.emit(&policy.tokenizer, batch.rows(), events)?;
        }
    }
    let policy_time = t.elapsed();
    let (rows, bstats) = batch.into_parts();
    plain_output(models, &policy.tokenizer, job, rows, bstats, policy_time)
}
