//! A generation job whose policy runs on another server (`--policy http://...`): the
//! strategy runs here over a [`RemoteBatch`], the rows come from the server a round at a
//! time, and the reward model and the aligner run where they are configured. Plain requests
//! get their answers in one request; streamed, token by token as the server streams them.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use thresh_decoding::remote::RemoteBatch;
use thresh_decoding::strategy::RowBatch;
use thresh_decoding::strategy::remote::RemoteInput;
use tokio::sync::mpsc;

use super::deltas::Deltas;
use super::error::InferError;
use super::jobs::{Event, GenOutput, Models, RemotePolicyModel};
use super::output::{plain_output, strategy_output};
use crate::serve::validation::Tokenized;

/// Runs the job's strategy (or plain sampling) over the remote policy.
pub(super) fn run(
    models: &Models,
    remote: &RemotePolicyModel,
    job: &Tokenized,
    cancel: &Arc<AtomicBool>,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<GenOutput, InferError> {
    let req = &job.req;
    let tokenizer = &remote.tokenizer;
    let Some(strategy) = &req.strategy else {
        let t = Instant::now();
        let mut batch = RemoteBatch::new(
            &remote.client,
            tokenizer,
            &job.prompt_ids,
            req.n,
            &req.sampling,
            &req.stop,
            Some(cancel.clone()),
        )?;
        if req.stream {
            // Token by token, as the server streams them.
            let mut deltas = Deltas::new(req);
            let mut failed = None;
            let ran = batch.run_streamed(&mut |rows| match deltas.emit(tokenizer, rows, events) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            });
            if let Some(e) = failed {
                return Err(e.into());
            }
            ran?;
        } else {
            batch.advance(None)?;
        }
        let (rows, bstats) = batch.finish();
        return plain_output(models, tokenizer, job, rows, bstats, t.elapsed());
    };
    let input = RemoteInput {
        policy: &remote.client,
        tokenizer,
        prompt_ids: &job.prompt_ids,
        reward_prompt: job.reward_prompt.clone(),
        sampling: req.sampling.clone(),
        stop: req.stop.clone(),
        top_k: req.n,
        // Kept internally for the pruned-token count; returned only when asked for.
        return_candidates: true,
        cancel: Some(cancel.clone()),
    };
    let out = strategy.run_remote(&input, models.reward.as_ref())?;
    strategy_output(out, tokenizer, job)
}
