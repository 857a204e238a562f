//! What crosses the engine's queue and comes back: the jobs, their events and outputs, and
//! the loaded models. Types only; the engine that runs the jobs is [`engine`](super::engine).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use thresh_aligner::{Correction, CorrectionInput, Corrector};
use thresh_decoding::strategy::{Candidate, StrategyStats};
use thresh_decoding::{SamplingParams, StopConditions};
use thresh_reward::{RewardInput, RewardModel, Scored};
use tokio::sync::{mpsc, oneshot};

use crate::serve::api::errors::ApiError;
use crate::serve::validation::Tokenized;
use crate::serve::validation::model_info::ModelInfo;

/// Sets a flag when dropped: the handler's or stream's end cancels the job.
pub struct CancelOnDrop(pub Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Progress of a generation job.
#[derive(Debug)]
pub enum Event {
    /// The engine picked the job up after this long in the queue.
    Started(Duration),
    /// New text of one answer (plain streaming only).
    Delta {
        /// The answer.
        index: usize,
        /// The new text (empty when it only carries log-probabilities).
        text: String,
        /// With `logprobs`: the tokens this text completes, each with its log-probability
        /// (see [`token_spans`](super::token_spans) for the rule).
        logprobs: Option<Vec<(String, f32)>>,
        /// With `return_token_ids`: the ids generated since the answer's last delta.
        token_ids: Option<Vec<u32>>,
    },
    /// The job ended.
    Done(Box<Result<GenOutput, ApiError>>),
}

/// One returned answer.
#[derive(Debug, Clone)]
pub struct ChoiceOut {
    /// Its text.
    pub text: String,
    /// Its token count.
    pub tokens: usize,
    /// OpenAI finish reason.
    pub finish_reason: &'static str,
    /// Its reward, where scored.
    pub score: Option<f32>,
    /// The aligner's correction, when the request asked for one.
    pub correction: Option<CorrectionOut>,
    /// Each token's text and log-probability under the policy, when asked for.
    pub logprobs: Option<Vec<(String, f32)>>,
    /// Where each token's text ends in `text` (bytes; past its end: cut by a stop string),
    /// when an aligned answer's log-probabilities are streamed.
    pub token_ends: Option<Vec<usize>>,
    /// The policy's token ids of `text` (`None` once the aligner's correction replaced it).
    pub token_ids: Option<Vec<u32>>,
}

/// An answer and its correction; the choice returns one of them.
#[derive(Debug, Clone)]
pub struct CorrectionOut {
    /// The policy's answer.
    pub original: String,
    /// Its reward.
    pub original_score: Option<f32>,
    /// The aligner's correction.
    pub corrected: String,
    /// Its reward.
    pub corrected_score: Option<f32>,
    /// Whether the choice returns the correction.
    pub returned_corrected: bool,
    /// Under a grammar (`response_format`, `guided_*`, `tools`): whether the correction
    /// follows it. One that does not is never returned.
    pub follows_format: Option<bool>,
}

/// The result of a generation job.
#[derive(Debug, Clone)]
pub struct GenOutput {
    /// The answers, best first for aligned strategies.
    pub choices: Vec<ChoiceOut>,
    /// Every candidate, when asked for.
    pub candidates: Option<Vec<Candidate>>,
    /// Compute spent.
    pub stats: StrategyStats,
    /// Time in the queue.
    pub queue_time: Duration,
    /// Time in the engine.
    pub engine_time: Duration,
}

/// A generation job.
pub struct GenJob {
    /// The tokenised request.
    pub req: Tokenized,
    /// Set when the client is gone.
    pub cancel: Arc<AtomicBool>,
    /// When it entered the queue.
    pub enqueued: Instant,
    /// Progress and result.
    pub events: mpsc::UnboundedSender<Event>,
}

/// A scoring job.
pub struct ScoreJob {
    /// The pairs.
    pub inputs: Vec<RewardInput>,
    /// Set when the client is gone.
    pub cancel: Arc<AtomicBool>,
    /// When it entered the queue.
    pub enqueued: Instant,
    /// The scores.
    pub reply: oneshot::Sender<Result<(Vec<Scored>, Duration), ApiError>>,
}

/// Work for the engine.
pub enum Job {
    /// Generate.
    Generate(Box<GenJob>),
    /// Score pairs.
    Score(ScoreJob),
    /// Correct answers with the aligner.
    Correct(Box<CorrectJob>),
}

/// The models, once loaded, and a load failure, if any.
#[derive(Default)]
pub struct LoadState {
    /// Set once the models are loaded.
    pub info: OnceLock<Arc<ModelInfo>>,
    /// Set if loading failed.
    pub error: OnceLock<String>,
}

/// A policy served by another server (`--policy http://...`), with the tokenizer and chat
/// template thresh renders and counts its prompts with.
pub struct RemotePolicyModel {
    /// The client.
    pub client: Arc<thresh_decoding::remote::RemotePolicy>,
    /// The policy's tokenizer: from `--policy-tokenizer`'s files, or the server's own.
    pub tokenizer: thresh_models::Tokenizer,
    /// The policy's chat template, where it has one.
    pub chat_template: Option<thresh_models::ChatTemplate>,
    /// The vocabulary's size, where known.
    pub vocab_size: Option<usize>,
    /// The context, in tokens: the server's `max_model_len` where it reports one.
    pub context: usize,
}

/// The policy: loaded here, or served elsewhere.
// One per server, matched on every request: boxing the local model would only add a hop.
#[allow(clippy::large_enum_variant)]
pub enum Policy {
    /// Runs on this machine's decoder.
    Local(thresh_models::LoadedModel),
    /// Runs on a remote OpenAI-compatible server.
    Remote(RemotePolicyModel),
}

/// The models the engine thread owns.
pub struct Models {
    /// The policy.
    pub policy: Policy,
    /// The reward model.
    pub reward: Box<dyn RewardModel>,
    /// The corrector, with `--aligner`.
    pub aligner: Option<Corrector>,
    /// The policy's recently prefilled prompts (`--prefix-cache-mb`).
    pub prefix: thresh_decoding::PrefixCache,
}

/// A correction job for the engine.
pub struct CorrectJob {
    /// The pairs.
    pub inputs: Vec<CorrectionInput>,
    /// Sampling settings.
    pub sampling: SamplingParams,
    /// Stop conditions.
    pub stop: StopConditions,
    /// Set when the client is gone.
    pub cancel: Arc<AtomicBool>,
    /// When it entered the queue.
    pub enqueued: Instant,
    /// The corrections and the engine time.
    pub reply: oneshot::Sender<Result<(Vec<Correction>, Duration), ApiError>>,
}
