//! The engine: it loads and owns the candle models and serves jobs from a bounded queue.
//!
//! `--max-batch-requests` worker threads each take a job from the queue and run it (its
//! strategy, its reward scoring, its prefill) on their own; the decode steps of all running
//! generations meet on the engine thread, whose [`StepMerger`] runs them as one batched
//! decoder pass. So concurrent requests share each step's weight reads (continuous
//! batching), while each still gets exactly the logits it would get alone. A job's cancel
//! flag (set when its client goes away or its deadline passes) stops its work at its next
//! decode step; a failure or panic fails that job only.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use thresh_aligner::{AlignerTemplate, Corrector};
use thresh_decoding::strategy::{
    Candidate, Fate, SpeculativeParams, StrategyInput, StrategyOutput, StrategyStats, best_of_n,
    rejection_sampling, soft_best_of_n, speculative_rejection,
};
use thresh_decoding::{DecodeBatch, DecodeError, StepMerger, Stepper};
use thresh_models::{ChatTemplate, LoadOptions, Tokenizer};
use thresh_reward::{RewardInput, RewardModel, Scored};
use tokio::sync::{mpsc, oneshot};

use super::config::ServeConfig;
use super::errors::ApiError;
use super::metrics as m;
use super::token_spans::TokenSpans;
use super::validation::{CorrectMode, Strategy, Tokenized};

/// What handlers need to know about the loaded models.
pub struct ModelInfo {
    /// The policy's id (file or directory name).
    pub id: String,
    /// The reward model's id.
    pub reward_id: String,
    /// The aligner's id, where one was given.
    pub aligner_id: Option<String>,
    /// The aligner's context in tokens.
    pub aligner_context: Option<usize>,
    /// The aligner's prompt template name.
    pub aligner_template: Option<&'static str>,
    /// The policy's tokenizer.
    pub tokenizer: Tokenizer,
    /// The policy's chat template.
    pub chat_template: Option<ChatTemplate>,
    /// The policy's context in tokens.
    pub context: usize,
    /// The policy's vocabulary size.
    pub vocab_size: usize,
}

/// The id a model is served under: its file stem or directory name.
pub fn model_id(path: &std::path::Path) -> String {
    let name = if path.is_dir() {
        path.file_name()
    } else {
        path.file_stem()
    };
    name.map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

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
    Correct(Box<super::correct::CorrectJob>),
}

/// The models, once loaded, and a load failure, if any.
#[derive(Default)]
pub struct LoadState {
    /// Set once the models are loaded.
    pub info: OnceLock<Arc<ModelInfo>>,
    /// Set if loading failed.
    pub error: OnceLock<String>,
}

/// The models the engine thread owns.
pub(super) struct Models {
    /// The policy.
    pub(super) policy: thresh_models::LoadedModel,
    /// The reward model.
    pub(super) reward: Box<dyn RewardModel>,
    /// The corrector, with `--aligner`.
    pub(super) aligner: Option<Corrector>,
}

fn load(cfg: &ServeConfig) -> anyhow::Result<(Models, ModelInfo)> {
    let opts = LoadOptions {
        device: cfg.device.clone(),
        dtype: cfg.dtype,
        quant: if cfg.device.is_cpu() {
            cfg.quant()?
        } else {
            None
        },
    };
    let t = Instant::now();
    let policy = thresh_models::load(&cfg.policy.to_string_lossy(), &opts)
        .map_err(|e| anyhow::anyhow!("loading the policy {}: {e}", cfg.policy.display()))?;
    let reward_opts = LoadOptions {
        quant: None,
        ..opts.clone()
    };
    let reward = thresh_reward::load(&cfg.reward, cfg.reward_head.as_deref(), &reward_opts)
        .map_err(|e| anyhow::anyhow!("loading the reward model {}: {e}", cfg.reward.display()))?;
    let aligner = match &cfg.aligner {
        None => None,
        Some(path) => {
            let template = match &cfg.aligner_template {
                Some(t) => AlignerTemplate::parse(t)?,
                None => AlignerTemplate::detect(path)?,
            };
            let model = thresh_models::load(&path.to_string_lossy(), &opts)
                .map_err(|e| anyhow::anyhow!("loading the aligner {}: {e}", path.display()))?;
            Some(Corrector::new(Arc::new(model), template))
        }
    };
    tracing::info!(
        policy = %cfg.policy.display(),
        reward = %cfg.reward.display(),
        seconds = t.elapsed().as_secs_f64(),
        "models loaded"
    );
    let info = ModelInfo {
        id: model_id(&cfg.policy),
        reward_id: model_id(&cfg.reward),
        aligner_id: cfg.aligner.as_deref().map(model_id),
        aligner_context: aligner
            .as_ref()
            .map(|a| a.model().decoder.config().max_position_embeddings),
        aligner_template: aligner.as_ref().map(|a| a.template().name()),
        tokenizer: policy.tokenizer.clone(),
        chat_template: policy.chat_template.clone(),
        context: policy.decoder.config().max_position_embeddings,
        vocab_size: policy.decoder.config().vocab_size,
    };
    Ok((
        Models {
            policy,
            reward,
            aligner,
        },
        info,
    ))
}

/// How long a merged decode pass waits for running requests that have not submitted their
/// step yet (they are sampling, or scoring partial answers) before it runs without them.
const MERGE_WAIT: Duration = Duration::from_millis(20);

/// Starts the engine thread: it loads the models, publishes them in `state`, then serves
/// `jobs` until the sender side is dropped.
pub fn spawn(
    cfg: Arc<ServeConfig>,
    state: Arc<LoadState>,
    jobs: mpsc::Receiver<Job>,
    max_queue: usize,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("thresh-engine".into())
        .spawn(move || {
            let (models, info) = match load(&cfg) {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!("{e:#}");
                    let _ = state.error.set(format!("{e:#}"));
                    return;
                }
            };
            let _ = state.info.set(Arc::new(info));
            let merger = StepMerger::new(MERGE_WAIT).with_pass_hook(m::decode_pass);
            let jobs = std::sync::Mutex::new(jobs);
            let workers = cfg.max_batch_requests.max(1);
            let live = std::sync::atomic::AtomicUsize::new(workers);
            std::thread::scope(|scope| {
                for i in 0..workers {
                    let (models, cfg, merger, jobs, live) = (&models, &cfg, &merger, &jobs, &live);
                    let worker = std::thread::Builder::new()
                        .name(format!("thresh-worker-{i}"))
                        .spawn_scoped(scope, move || {
                            loop {
                                let job = {
                                    let mut rx = jobs.lock().unwrap_or_else(|e| e.into_inner());
                                    let job = rx.blocking_recv();
                                    m::queue_depth(max_queue.saturating_sub(rx.capacity()));
                                    job
                                };
                                match job {
                                    Some(job) => run_job(models, cfg, merger, job),
                                    None => break,
                                }
                            }
                            // The last worker out stops the merger, which ends the engine.
                            if live.fetch_sub(1, Ordering::AcqRel) == 1 {
                                merger.close();
                            }
                        });
                    if let Err(e) = worker {
                        tracing::error!("starting engine worker {i}: {e}");
                        if live.fetch_sub(1, Ordering::AcqRel) == 1 {
                            merger.close();
                        }
                    }
                }
                merger.run(&models.policy.decoder);
            });
        })
}

fn run_job(models: &Models, cfg: &ServeConfig, stepper: &dyn Stepper, job: Job) {
    match job {
        Job::Generate(job) => {
            let job = *job;
            let queue_time = job.enqueued.elapsed();
            m::queue_time(queue_time);
            let strategy = job.req.req.strategy.name();
            if job.cancel.load(Ordering::Relaxed) {
                m::cancelled(strategy);
                let _ = job.events.send(Event::Done(Box::new(Err(ApiError::Internal(
                    "cancelled before it started".into(),
                )))));
                return;
            }
            let _ = job.events.send(Event::Started(queue_time));
            let t = Instant::now();
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                generate(models, cfg, stepper, &job.req, &job.cancel, &job.events)
            }));
            let result = match result {
                Ok(Ok(mut out)) => {
                    out.queue_time = queue_time;
                    out.engine_time = t.elapsed();
                    m::generated(&out, strategy);
                    Ok(out)
                }
                Ok(Err(DecodeError::Cancelled)) => {
                    m::cancelled(strategy);
                    Err(ApiError::Internal("cancelled".into()))
                }
                Ok(Err(e)) => Err(e.into()),
                Err(_) => {
                    tracing::error!(
                        "the engine panicked on a generation request; it keeps serving"
                    );
                    Err(ApiError::Internal(
                        "the engine failed on this request".into(),
                    ))
                }
            };
            let _ = job.events.send(Event::Done(Box::new(result)));
        }
        Job::Score(job) => {
            let result = run_one_shot(job.enqueued, &job.cancel, "reward model", || {
                let s = models.reward.score(&job.inputs).map_err(|e| match e {
                    thresh_reward::RewardError::InvalidInput(msg) => ApiError::param("input", msg),
                    e => ApiError::Internal(e.to_string()),
                })?;
                m::reward_tokens(s.iter().map(|s| s.tokens).sum());
                Ok(s)
            });
            if let Some(result) = result {
                let _ = job.reply.send(result);
            }
        }
        Job::Correct(job) => {
            let result = run_one_shot(job.enqueued, &job.cancel, "aligner", || {
                let aligner = models.aligner.as_ref().ok_or(ApiError::NoAligner)?;
                Ok(aligner.correct(
                    &job.inputs,
                    &job.sampling,
                    &job.stop,
                    Some(job.cancel.clone()),
                )?)
            });
            if let Some(result) = result {
                let _ = job.reply.send(result);
            }
        }
    }
}

/// Runs a one-shot job (scoring, correcting): records its queue time, skips it when its
/// client is already gone (`None`), times the work, and turns a panic into a 500 naming
/// `what` so the engine keeps serving.
fn run_one_shot<T>(
    enqueued: Instant,
    cancel: &AtomicBool,
    what: &str,
    work: impl FnOnce() -> Result<T, ApiError>,
) -> Option<Result<(T, Duration), ApiError>> {
    m::queue_time(enqueued.elapsed());
    if cancel.load(Ordering::Relaxed) {
        return None;
    }
    let t = Instant::now();
    Some(match std::panic::catch_unwind(AssertUnwindSafe(work)) {
        Ok(r) => r.map(|v| (v, t.elapsed())),
        Err(_) => Err(ApiError::Internal(format!(
            "the {what} failed on this request"
        ))),
    })
}

fn generate(
    models: &Models,
    cfg: &ServeConfig,
    stepper: &dyn Stepper,
    job: &Tokenized,
    cancel: &Arc<AtomicBool>,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<GenOutput, DecodeError> {
    let mut out = run_strategy(models, cfg, stepper, job, cancel, events)?;
    if job.req.correct != CorrectMode::Off {
        super::correct::correct_choices(models, job, cancel, &mut out)?;
    }
    Ok(out)
}

fn run_strategy(
    models: &Models,
    cfg: &ServeConfig,
    stepper: &dyn Stepper,
    job: &Tokenized,
    cancel: &Arc<AtomicBool>,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<GenOutput, DecodeError> {
    let req = &job.req;
    let policy = &models.policy;
    let reward = models.reward.as_ref();
    let input = StrategyInput {
        decoder: &policy.decoder,
        tokenizer: &policy.tokenizer,
        prompt_ids: &job.prompt_ids,
        reward_prompt: job.reward_prompt.clone(),
        sampling: req.sampling.clone(),
        stop: req.stop.clone(),
        top_k: req.n,
        // Kept internally for the pruned-token count; returned only when asked for.
        return_candidates: true,
        cancel: Some(cancel.clone()),
        stepper: Some(stepper),
    };
    let out: StrategyOutput = match &req.strategy {
        Strategy::None => return plain(models, stepper, job, cancel, events),
        Strategy::BestOfN { candidates } => best_of_n(&input, reward, *candidates)?,
        Strategy::Speculative {
            candidates,
            alpha,
            kv_budget_tokens,
        } => {
            let prompt = job.prompt_ids.len();
            // Default budget: every candidate gets about half its tokens before the first
            // decision, so pruning happens within the request.
            let default = candidates * (prompt + (req.stop.max_tokens / 2).max(8));
            let budget = kv_budget_tokens
                .unwrap_or(default)
                .min(cfg.kv_budget_tokens);
            let params = SpeculativeParams {
                alpha: *alpha,
                kv_budget_tokens: budget,
                max_batch: *candidates,
                initial_batch: Some(*candidates),
                decision_tokens: None,
            };
            speculative_rejection(&input, reward, &params)?
        }
        Strategy::SoftBestOfN { candidates, lambda } => {
            soft_best_of_n(&input, reward, *candidates, *lambda)?
        }
        Strategy::Rejection {
            candidates,
            threshold,
            max_tries,
        } => rejection_sampling(&input, reward, *candidates, *threshold, *max_tries)?,
    };
    let choices = out
        .best
        .iter()
        .map(|c| {
            let token_ends = if req.logprobs && req.stream {
                Some(TokenSpans::replay(&policy.tokenizer, &c.tokens)?)
            } else {
                None
            };
            Ok(ChoiceOut {
                text: c.text.clone(),
                tokens: c.tokens.len(),
                finish_reason: c.finish_reason,
                score: Some(c.score),
                correction: None,
                logprobs: req
                    .logprobs
                    .then(|| token_logprobs(&policy.tokenizer, &c.tokens, &c.token_logprobs)),
                token_ends,
            })
        })
        .collect::<Result<_, DecodeError>>()?;
    Ok(GenOutput {
        choices,
        candidates: out.candidates,
        stats: out.stats,
        queue_time: Duration::ZERO,
        engine_time: Duration::ZERO,
    })
}

/// Plain sampling of `n` rows; streams each row's new text (holding back what could still
/// turn out to start a stop string), and scores the answers when not streaming.
fn plain(
    models: &Models,
    stepper: &dyn Stepper,
    job: &Tokenized,
    cancel: &Arc<AtomicBool>,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<GenOutput, DecodeError> {
    let req = &job.req;
    let policy = &models.policy;
    let t = Instant::now();
    let mut batch = DecodeBatch::new(
        &policy.decoder,
        &policy.tokenizer,
        &job.prompt_ids,
        req.n,
        &req.sampling,
        &req.stop,
    )?;
    batch.set_cancel_flag(cancel.clone());
    batch.set_stepper(stepper);
    let hold = req.stop.stop.iter().map(|s| s.len()).max().unwrap_or(1) - 1;
    let mut sent = vec![0usize; req.n];
    // With streamed logprobs: which tokens each chunk of text completes.
    let mut spans = vec![TokenSpans::new(); if req.logprobs { req.n } else { 0 }];
    while !batch.is_done() {
        batch.step()?;
        if req.stream {
            for (i, row) in batch.rows().iter().enumerate() {
                let mut upto = if row.finish.is_some() {
                    row.text.len()
                } else {
                    row.text.len().saturating_sub(hold)
                };
                while !row.text.is_char_boundary(upto) {
                    upto -= 1;
                }
                let logprobs = match spans.get_mut(i) {
                    Some(sp) => {
                        sp.push(&policy.tokenizer, &row.tokens[sp.len()..])?;
                        if row.finish.is_some() {
                            sp.finish(&policy.tokenizer)?;
                        }
                        let r = sp.take_upto(upto);
                        Some(token_logprobs(
                            &policy.tokenizer,
                            &row.tokens[r.clone()],
                            &row.token_logprobs[r],
                        ))
                    }
                    None => None,
                };
                if upto > sent[i] || logprobs.as_ref().is_some_and(|l| !l.is_empty()) {
                    let _ = events.send(Event::Delta {
                        index: i,
                        text: row.text[sent[i]..upto.max(sent[i])].to_string(),
                        logprobs,
                    });
                    sent[i] = upto.max(sent[i]);
                }
            }
        }
    }
    let policy_time = t.elapsed();
    let (rows, bstats) = batch.into_parts();
    let mut stats = StrategyStats {
        prompt_tokens: bstats.prompt_tokens,
        policy_tokens: bstats.generated_tokens,
        initial_batch: req.n,
        rounds: 1,
        peak_kv_bytes: bstats.peak_kv_bytes,
        policy_time,
        ..Default::default()
    };
    let scores: Vec<Option<f32>> = if req.stream {
        vec![None; rows.len()]
    } else {
        let t = Instant::now();
        let inputs: Vec<RewardInput> = rows
            .iter()
            .map(|r| RewardInput {
                prompt: job.reward_prompt.clone(),
                response: r.text.clone(),
            })
            .collect();
        let scored = models
            .reward
            .score(&inputs)
            .map_err(|e| DecodeError::Reward(e.to_string()))?;
        stats.reward_time = t.elapsed();
        stats.reward_calls = 1;
        stats.reward_tokens = scored.iter().map(|s| s.tokens).sum();
        scored.into_iter().map(|s| Some(s.score)).collect()
    };
    let choices = rows
        .iter()
        .zip(scores)
        .map(|(r, score)| ChoiceOut {
            text: r.text.clone(),
            tokens: r.tokens.len(),
            finish_reason: r
                .finish
                .as_ref()
                .map_or("length", thresh_decoding::FinishReason::as_openai),
            score,
            correction: None,
            logprobs: req
                .logprobs
                .then(|| token_logprobs(&policy.tokenizer, &r.tokens, &r.token_logprobs)),
            token_ends: None,
        })
        .collect();
    Ok(GenOutput {
        choices,
        candidates: None,
        stats,
        queue_time: Duration::ZERO,
        engine_time: Duration::ZERO,
    })
}

/// Each token's own text (decoded alone) with its log-probability.
fn token_logprobs(tokenizer: &Tokenizer, ids: &[u32], lps: &[f32]) -> Vec<(String, f32)> {
    ids.iter()
        .zip(lps)
        .map(|(&id, &lp)| (tokenizer.decode(&[id], false).unwrap_or_default(), lp))
        .collect()
}

/// Tokens of candidates that were pruned before finishing.
pub fn pruned_tokens(candidates: &[Candidate]) -> usize {
    candidates
        .iter()
        .filter(|c| matches!(c.fate, Fate::Pruned { .. }))
        .map(|c| c.tokens.len())
        .sum()
}
