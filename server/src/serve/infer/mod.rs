//! The engine side: the models, the job queue, the workers that run strategies, and the
//! correction pipeline. Handlers reach it through one [`Infer`] handle and never build jobs,
//! channels or cancel flags themselves.
//!
//! This layer imports [`api`](super::api) (the error type its replies carry) and
//! [`validation`](super::validation) (the checked requests it runs), never HTTP.

mod connect;
mod correction;
mod deltas;
mod engine;
pub mod error;
mod generation;
pub mod jobs;
mod output;
mod remote;
pub mod token_spans;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use thresh_aligner::{Correction, CorrectionInput};
use thresh_decoding::{SamplingParams, StopConditions};
use thresh_reward::{RewardInput, Scored};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use super::api::errors::ApiError;
use super::config::ServeConfig;
use super::metrics as m;
use super::validation::Tokenized;
use super::validation::model_info::ModelInfo;
use jobs::{CancelOnDrop, CorrectJob, Event, GenJob, GenOutput, Job, LoadState, ScoreJob};

/// The handle every handler calls: it queues work for the engine (a full queue is a 429) and
/// hands back its replies, within `--request-timeout` for the one-shot jobs.
pub struct Infer {
    jobs: mpsc::Sender<Job>,
    load: Arc<LoadState>,
    max_queue: usize,
    timeout: Duration,
}

/// A running generation: its progress events, in order, ending with [`Event::Done`].
/// Dropping it (the client went away) cancels the job at its next decode step.
pub struct Generation {
    events: mpsc::UnboundedReceiver<Event>,
    _cancel: CancelOnDrop,
}

impl Generation {
    /// The next event; `None` once the engine has dropped the job without finishing it.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Waits for the result, skipping progress events, within `timeout`.
    pub async fn finish(mut self, timeout: Duration) -> Result<GenOutput, ApiError> {
        let done = async {
            while let Some(ev) = self.next().await {
                if let Event::Done(r) = ev {
                    return *r;
                }
            }
            Err(ApiError::Internal("the engine stopped".into()))
        };
        tokio::time::timeout(timeout, done)
            .await
            .map_err(|_| ApiError::Timeout(timeout.as_secs()))?
    }
}

impl Infer {
    /// Starts the engine thread, which loads the models in the background ([`Infer::info`]
    /// is `None` until they are ready) and then serves the queue until the handle is dropped.
    pub fn start(cfg: Arc<ServeConfig>) -> std::io::Result<Infer> {
        let (tx, rx) = mpsc::channel(cfg.max_queue);
        let load = Arc::new(LoadState::default());
        engine::spawn(cfg.clone(), load.clone(), rx, cfg.max_queue)?;
        Ok(Infer {
            jobs: tx,
            load,
            max_queue: cfg.max_queue,
            timeout: cfg.request_timeout,
        })
    }

    /// The loaded models, once loading succeeded.
    pub fn info(&self) -> Option<Arc<ModelInfo>> {
        self.load.info.get().cloned()
    }

    /// Why loading failed, if it did.
    pub fn load_error(&self) -> Option<&str> {
        self.load.error.get().map(String::as_str)
    }

    fn enqueue(&self, job: Job) -> Result<(), ApiError> {
        match self.jobs.try_send(job) {
            Ok(()) => {
                m::queue_depth(self.max_queue.saturating_sub(self.jobs.capacity()));
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(ApiError::QueueFull(self.max_queue)),
            Err(TrySendError::Closed(_)) => Err(ApiError::ShuttingDown),
        }
    }

    /// Waits for a one-shot job's reply, within `--request-timeout`.
    async fn reply<T>(&self, rx: oneshot::Receiver<Result<T, ApiError>>) -> Result<T, ApiError> {
        tokio::time::timeout(self.timeout, rx)
            .await
            .map_err(|_| ApiError::Timeout(self.timeout.as_secs()))?
            .map_err(|_| ApiError::Internal("the engine stopped".into()))?
    }

    /// Queues a generation and returns its event stream.
    pub fn generate(&self, req: Tokenized) -> Result<Generation, ApiError> {
        let cancel = Arc::new(AtomicBool::new(false));
        let guard = CancelOnDrop(cancel.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        self.enqueue(Job::Generate(Box::new(GenJob {
            req,
            cancel,
            enqueued: Instant::now(),
            events: tx,
        })))?;
        Ok(Generation {
            events: rx,
            _cancel: guard,
        })
    }

    /// Scores (prompt, response) pairs with the reward model; also returns the engine time.
    pub async fn score(
        &self,
        inputs: Vec<RewardInput>,
    ) -> Result<(Vec<Scored>, Duration), ApiError> {
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let (tx, rx) = oneshot::channel();
        self.enqueue(Job::Score(ScoreJob {
            inputs,
            cancel,
            enqueued: Instant::now(),
            reply: tx,
        }))?;
        self.reply(rx).await
    }

    /// Corrects answers with the aligner; also returns the engine time.
    pub async fn correct(
        &self,
        inputs: Vec<CorrectionInput>,
        sampling: SamplingParams,
        stop: StopConditions,
    ) -> Result<(Vec<Correction>, Duration), ApiError> {
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let (tx, rx) = oneshot::channel();
        self.enqueue(Job::Correct(Box::new(CorrectJob {
            inputs,
            sampling,
            stop,
            cancel,
            enqueued: Instant::now(),
            reply: tx,
        })))?;
        self.reply(rx).await
    }
}
