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
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use thresh_aligner::{AlignerTemplate, Corrector};
use thresh_decoding::{StepMerger, Stepper};
use thresh_models::LoadOptions;
use tokio::sync::mpsc;

use super::connect;
use super::jobs::{Event, Job, LoadState, Models, Policy};
use crate::serve::api::errors::ApiError;
use crate::serve::config::ServeConfig;
use crate::serve::metrics as m;
use crate::serve::validation::model_info::ModelInfo;

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
    let (policy, policy_id) = match cfg.remote_policy() {
        Some(url) => {
            let (remote, id) = connect::remote_policy(cfg, url)?;
            (Policy::Remote(remote), id)
        }
        None => {
            let m = thresh_models::load(&cfg.policy.to_string_lossy(), &opts)
                .map_err(|e| anyhow::anyhow!("loading the policy {}: {e}", cfg.policy.display()))?;
            (Policy::Local(m), model_id(&cfg.policy))
        }
    };
    let reward_opts = LoadOptions {
        quant: None,
        ..opts.clone()
    };
    let reward: Box<dyn thresh_reward::RewardModel> = match thresh_reward::remote_url(&cfg.reward) {
        // A remote reward server, with its bearer token when one is given.
        Some(url) => {
            let mut remote = thresh_reward::RemoteReward::from_spec(url, None)
                .map_err(|e| anyhow::anyhow!("--reward {url}: {e}"))?;
            if let Some(key) = &cfg.reward_api_key {
                remote = remote.with_api_key(key.clone());
            }
            Box::new(remote)
        }
        None => thresh_reward::load(&cfg.reward, cfg.reward_head.as_deref(), &reward_opts)
            .map_err(|e| {
                anyhow::anyhow!("loading the reward model {}: {e}", cfg.reward.display())
            })?,
    };
    let aligner = match &cfg.aligner {
        None => None,
        Some(path) => {
            let template = match (&cfg.aligner_template, &cfg.aligner_tokenizer) {
                (Some(t), _) => AlignerTemplate::parse(t)?,
                // A remote aligner's template is told by its tokenizer's files.
                (None, Some(tokenizer)) => AlignerTemplate::detect(tokenizer)?,
                // (A remote aligner without either is refused by the configuration check.)
                (None, None) => AlignerTemplate::detect(path)?,
            };
            match thresh_reward::remote_url(path) {
                Some(url) => {
                    let (remote, id) = connect::remote_aligner(cfg, url)?;
                    let corrector = Corrector::remote(
                        remote.client,
                        remote.tokenizer,
                        remote.context,
                        template,
                    );
                    Some((corrector, id))
                }
                None => {
                    let model =
                        thresh_models::load(&path.to_string_lossy(), &opts).map_err(|e| {
                            anyhow::anyhow!("loading the aligner {}: {e}", path.display())
                        })?;
                    Some((Corrector::new(Arc::new(model), template), model_id(path)))
                }
            }
        }
    };
    let (aligner, aligner_id) = aligner.unzip();
    tracing::info!(
        policy = %cfg.policy.display(),
        reward = %cfg.reward.display(),
        seconds = t.elapsed().as_secs_f64(),
        "models loaded"
    );
    let (tokenizer, chat_template, context, vocab_size) = match &policy {
        Policy::Local(m) => (
            m.tokenizer.clone(),
            m.chat_template.clone(),
            m.decoder.config().max_position_embeddings,
            Some(m.decoder.config().vocab_size),
        ),
        Policy::Remote(r) => (
            r.tokenizer.clone(),
            r.chat_template.clone(),
            r.context,
            r.vocab_size,
        ),
    };
    let info = ModelInfo {
        id: policy_id,
        reward_id: model_id(&cfg.reward),
        aligner_id,
        aligner_context: aligner.as_ref().map(Corrector::context),
        aligner_template: aligner.as_ref().map(|a| a.template().name()),
        tokenizer,
        chat_template,
        context,
        vocab_size,
        remote_policy: matches!(policy, Policy::Remote(_)),
        constraints: Default::default(),
    };
    Ok((
        Models {
            policy,
            reward,
            aligner,
            prefix: thresh_decoding::PrefixCache::new(cfg.prefix_cache_mb.saturating_mul(1 << 20)),
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
                    let (models, merger, jobs, live) = (&models, &merger, &jobs, &live);
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
                                    Some(job) => run_job(models, merger, job),
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
                // A remote policy decodes elsewhere: the workers call it directly.
                if let Policy::Local(policy) = &models.policy {
                    merger.run(&policy.decoder);
                }
            });
        })
}

fn run_job(models: &Models, stepper: &dyn Stepper, job: Job) {
    match job {
        Job::Generate(job) => {
            let job = *job;
            let queue_time = job.enqueued.elapsed();
            m::queue_time(queue_time);
            let strategy = job.req.req.strategy_name();
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
                super::generation::generate(models, stepper, &job.req, &job.cancel, &job.events)
            }));
            let result = match result {
                Ok(Ok(mut out)) => {
                    out.queue_time = queue_time;
                    out.engine_time = t.elapsed();
                    let pruned = out.candidates.as_deref().map(super::output::pruned_tokens);
                    m::generated(&out.stats, pruned, strategy);
                    Ok(out)
                }
                Ok(Err(e)) if e.is_cancelled() => {
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
                    e => ApiError::from(e),
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
