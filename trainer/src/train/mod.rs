//! The training loop shared by every command: micro-batches with gradient accumulation,
//! global-norm clipping, the optimiser and schedule, JSONL metrics, a progress bar and
//! atomic checkpoints with `--resume`.
//!
//! A run killed at any moment (SIGKILL included, also during a checkpoint write) and
//! resumed ends with the same weights, bit for bit on the CPU, as one never interrupted:
//! a resumed step is a pure function of what the checkpoint restores (weights, optimiser
//! moments and step count, the data cursor, the loss state); the learning rate is a
//! function of the step; the data order and every sampler seed derive from `--seed` and
//! counters in the checkpoint; the training forward passes have no dropout. Metrics of
//! steps after the checkpoint are dropped on resume, so `metrics.jsonl` has one line per
//! step.

pub mod cursor;
pub mod metrics;
pub mod reference;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::Tensor;

use crate::checkpoint::{self, CheckpointState};
use crate::error::{Result, TrainError};
use crate::model::TrainModel;
use crate::optim::{OptimConfig, Optimizer, clip_grad_norm};
use crate::schedule::Schedule;
use cursor::Cursor;
use metrics::MetricsLog;

/// One micro-batch's loss.
pub struct StepLoss {
    /// Scalar loss to minimise.
    pub loss: Tensor,
    /// Values to log (averaged over the micro-batches of a step).
    pub metrics: BTreeMap<String, f64>,
    /// Tokens the forward passes processed (for throughput).
    pub tokens: usize,
}

/// What a command trains: a loss over a set of examples addressed by index.
pub trait Objective {
    /// Number of examples.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The loss of the examples `batch` under the current model.
    fn loss(&mut self, model: &TrainModel, batch: &[usize]) -> Result<StepLoss>;
    /// State the loss carries between steps, saved in checkpoints.
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Restores [`Objective::state`] on resume.
    fn restore(&mut self, _state: &serde_json::Value) -> Result<()> {
        Ok(())
    }
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Output directory (checkpoint, metrics, reference cache, final model).
    pub out: PathBuf,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    pub accumulation: usize,
    /// Optimiser steps of the whole run.
    pub max_steps: u64,
    /// Checkpoint every this many steps (and at the end); 0 only at the end.
    pub checkpoint_every: u64,
    /// Global gradient-norm bound.
    pub clip: Option<f64>,
    /// Seed of the data order.
    pub seed: u64,
    /// Shuffle the examples every epoch.
    pub shuffle: bool,
    /// Continue from `<out>/checkpoint` (verified first; see [`checkpoint::resume`]).
    /// Without it the run starts afresh and removes a checkpoint left in `out`.
    pub resume: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Optimiser.
    pub optim: OptimConfig,
    /// Stop after this step as if interrupted (checkpoint kept, no final save); for tests.
    pub stop_after: Option<u64>,
}

impl RunConfig {
    /// Optimiser steps for `epochs` passes over `examples`.
    pub fn steps_for_epochs(
        examples: usize,
        batch: usize,
        accumulation: usize,
        epochs: f64,
    ) -> u64 {
        let per_step = (batch * accumulation).max(1);
        ((examples as f64 * epochs) / per_step as f64)
            .ceil()
            .max(1.0) as u64
    }
}

/// What a finished (or stopped) run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Optimiser steps completed in total.
    pub steps: u64,
    /// Steps run by this process.
    pub steps_this_run: u64,
    /// Tokens processed by this process.
    pub tokens: usize,
    /// Wall time of this process's steps.
    pub seconds: f64,
    /// Last step's metrics.
    pub last: BTreeMap<String, f64>,
    /// Most device memory in use at the end of any optimiser step (gradients and optimiser
    /// state still held), as the driver reports it for the whole device; `None` on the CPU.
    pub peak_device_bytes: Option<u64>,
}

/// Trains `model` on `objective` for `cfg.max_steps` optimiser steps (resuming if asked).
pub fn train(
    model: &TrainModel,
    objective: &mut dyn Objective,
    cfg: &RunConfig,
) -> Result<RunSummary> {
    if objective.is_empty() {
        return Err(TrainError::Config("no training examples".into()));
    }
    if cfg.batch_size == 0 || cfg.accumulation == 0 {
        return Err(TrainError::Config(
            "batch size and accumulation must be positive".into(),
        ));
    }
    std::fs::create_dir_all(&cfg.out).map_err(|e| TrainError::Io {
        path: cfg.out.clone(),
        source: e,
    })?;
    let mut opt = Optimizer::new(cfg.optim, model.vars())?;
    let mut cursor = Cursor::new(objective.len(), cfg.seed, cfg.shuffle);
    let mut step = 0u64;
    let ckpt_dir = checkpoint::checkpoint_dir(&cfg.out);
    if cfg.resume {
        // Verified against its manifest before anything is set; a torn checkpoint falls
        // back to `checkpoint.old` or fails, it is never loaded.
        let (dir, state) = checkpoint::resume(&ckpt_dir, model, &mut opt)?;
        cursor.restore(&state.cursor);
        if cursor.len != objective.len() {
            return Err(TrainError::Config(format!(
                "--resume: the checkpoint was taken on {} examples, the data has {}",
                cursor.len,
                objective.len()
            )));
        }
        objective.restore(&state.loss_state)?;
        step = state.step;
        tracing::info!(step, "resumed from {}", dir.display());
    } else {
        // A new run owns `out`: a previous run's checkpoint must not be resumed by a later
        // `--resume` after this run is killed before its own first checkpoint.
        checkpoint::discard(&ckpt_dir)?;
    }
    let mut log = MetricsLog::open(&cfg.out.join("metrics.jsonl"), cfg.resume.then_some(step))?;
    let bar = metrics::progress_bar(cfg.max_steps, step, cfg.progress);
    let start = Instant::now();
    let first = step;
    let mut tokens = 0usize;
    let mut last = BTreeMap::new();
    let vars = model.vars();
    let mut peak_device: Option<u64> = None;
    while step < cfg.max_steps {
        let lr = cfg.schedule.lr_at(step);
        let mut acc: Vec<Tensor> = vars
            .iter()
            .map(|(_, v)| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<_>>()?;
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        let mut step_tokens = 0;
        for _ in 0..cfg.accumulation {
            let batch = cursor.next_batch(cfg.batch_size);
            let out = objective.loss(model, &batch)?;
            let loss_value = out.loss.to_scalar::<f32>()? as f64;
            if !loss_value.is_finite() {
                return Err(TrainError::Config(format!(
                    "loss is {loss_value} at step {step}"
                )));
            }
            let grads = (out.loss / cfg.accumulation as f64)?.backward()?;
            for (a, (_, v)) in acc.iter_mut().zip(vars) {
                if let Some(g) = grads.get(v.as_tensor()) {
                    *a = (&*a + g)?;
                }
            }
            *sums.entry("loss".into()).or_default() += loss_value;
            for (k, v) in out.metrics {
                *sums.entry(k).or_default() += v;
            }
            step_tokens += out.tokens;
        }
        let grad_norm = match cfg.clip {
            Some(c) => clip_grad_norm(&mut acc, c)?,
            None => crate::optim::global_norm(&acc)?,
        };
        opt.apply(vars, &acc, lr)?;
        // Sampled with the step's gradients and the optimiser state still held.
        if let Some((free, total)) = thresh_models::device::memory_info(model.device())? {
            let used = total.saturating_sub(free) as u64;
            peak_device = Some(peak_device.map_or(used, |p| p.max(used)));
        }
        step += 1;
        tokens += step_tokens;
        let mut row: BTreeMap<String, f64> = sums
            .into_iter()
            .map(|(k, v)| (k, v / cfg.accumulation as f64))
            .collect();
        row.insert("lr".into(), lr);
        row.insert("grad_norm".into(), grad_norm);
        row.insert("tokens".into(), step_tokens as f64);
        log.write(step, start.elapsed().as_secs_f64(), &row)?;
        bar.set_position(step);
        bar.set_message(format!(
            "loss {:.4}",
            row.get("loss").copied().unwrap_or(f64::NAN)
        ));
        last = row;
        let stopping = cfg.stop_after == Some(step);
        let periodic = cfg.checkpoint_every > 0 && step.is_multiple_of(cfg.checkpoint_every);
        if periodic || stopping || step == cfg.max_steps {
            let state = CheckpointState {
                step,
                cursor: cursor.clone(),
                loss_state: objective.state(),
                vars: Vec::new(),
            };
            // The metrics up to this step reach the disk before the checkpoint that a
            // resume truncates them to, so none goes missing after a power cut.
            log.sync()?;
            checkpoint::save(&ckpt_dir, model, &opt, &state)?;
        }
        if stopping {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(RunSummary {
        steps: step,
        steps_this_run: step - first,
        tokens,
        seconds: start.elapsed().as_secs_f64(),
        last,
        peak_device_bytes: peak_device,
    })
}
