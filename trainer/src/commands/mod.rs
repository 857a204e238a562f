//! The commands of `thresh-train`: shared set-up, then one function per command.

pub mod eval;
pub mod linear_reward;
pub mod nash_md;
pub mod policy;
pub mod supervised;

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::cli::{Command, CommonArgs};
use crate::data::{self, Example, Format};
use crate::error::{Result, TrainError};
use crate::model::{TrainModel, Tuning};
use crate::optim::OptimConfig;
use crate::schedule::Schedule;
use crate::train::{self, Objective, RunConfig, RunSummary};

/// Runs a parsed command; returns a JSON summary for stdout.
pub fn run(command: &Command) -> Result<serde_json::Value> {
    match command {
        Command::Sft(a) => supervised::sft(a),
        Command::Reward(a) => supervised::reward(a),
        Command::Aligner(a) => supervised::aligner(a),
        Command::Dpo(a) => policy::dpo(a),
        Command::Pro(a) => policy::pro(a),
        Command::Kldo(a) => policy::kldo(a),
        Command::Rdro(a) => policy::rdro(a),
        Command::Eval(a) => eval::eval(a),
        Command::Distortion(a) => {
            thresh_distortion::cli::run(a)?;
            Ok(serde_json::Value::Null)
        }
        Command::NashMd(a) => nash_md::nash_md(a),
        Command::Collect(a) => crate::collect::collect(a),
    }
}

/// Parses a `--format` name.
pub fn parse_format(name: &str) -> Result<Format> {
    serde_json::from_value(json!(name.to_ascii_lowercase())).map_err(|_| {
        TrainError::Config(format!(
            "unknown data format {name:?} (auto, thresh, hh-rlhf, ultra-feedback, pku-safe-rlhf, aligner, kldo, trl-unpaired)"
        ))
    })
}

/// Loads the data named by `--data` and `--format`.
pub fn load_data(path: &Path, format: &str) -> Result<Vec<Example>> {
    data::load(path, parse_format(format)?)
}

/// Loads the starting model on the requested device.
pub fn load_model(c: &CommonArgs, score_head: bool) -> Result<TrainModel> {
    let device = thresh_models::parse_device(&c.device)?;
    let model = TrainModel::load(
        &c.model,
        Tuning::from_rank(c.lora_rank, c.lora_alpha),
        score_head,
        c.seed,
        &device,
    )?;
    tracing::info!(
        model = %c.model.display(),
        trainable = model.trainable_parameters(),
        "loaded"
    );
    Ok(model)
}

/// The reference cache file of a run. A new run (no `--resume`) drops a cache left in the
/// output directory, which may come from another starting model; a resumed run reuses it.
pub fn reference_cache(c: &CommonArgs) -> Result<PathBuf> {
    let path = c.out.join("reference-logps.json");
    if !c.resume && path.exists() {
        std::fs::remove_file(&path).map_err(|source| TrainError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(path)
}

/// Creates the output directory.
pub fn ensure_out(c: &CommonArgs) -> Result<()> {
    std::fs::create_dir_all(&c.out).map_err(|source| TrainError::Io {
        path: c.out.clone(),
        source,
    })
}

/// The run settings for `examples` training examples.
pub fn run_config(c: &CommonArgs, examples: usize, shuffle: bool) -> Result<RunConfig> {
    if c.lr <= 0.0 || !c.lr.is_finite() {
        return Err(TrainError::Config(format!(
            "--lr must be positive, got {}",
            c.lr
        )));
    }
    if !(0.0..1.0).contains(&c.warmup) {
        return Err(TrainError::Config(format!(
            "--warmup must be in [0, 1), got {}",
            c.warmup
        )));
    }
    let total = match c.max_steps {
        Some(0) => return Err(TrainError::Config("--max-steps must be positive".into())),
        Some(s) => s,
        None if c.epochs > 0.0 => {
            RunConfig::steps_for_epochs(examples, c.batch_size, c.grad_accum, c.epochs)
        }
        None => return Err(TrainError::Config("--epochs must be positive".into())),
    };
    Ok(RunConfig {
        out: c.out.clone(),
        batch_size: c.batch_size,
        accumulation: c.grad_accum,
        max_steps: total,
        checkpoint_every: c.checkpoint_every,
        clip: (c.clip > 0.0).then_some(c.clip),
        seed: c.seed,
        shuffle,
        resume: c.resume,
        progress: !c.no_progress,
        schedule: Schedule {
            lr: c.lr,
            warmup_steps: (c.warmup * total as f64).round() as u64,
            total_steps: total,
            kind: c.schedule,
        },
        optim: OptimConfig {
            kind: c.optimizer,
            weight_decay: c.weight_decay,
            ..Default::default()
        },
        stop_after: c.stop_after,
    })
}

/// Trains, saves `<out>/model` (unless stopped early) and summarises.
pub fn train_and_save(
    c: &CommonArgs,
    model: &TrainModel,
    objective: &mut dyn Objective,
    shuffle: bool,
) -> Result<serde_json::Value> {
    let cfg = run_config(c, objective.len(), shuffle)?;
    let summary = train::train(model, objective, &cfg)?;
    let finished = summary.steps >= cfg.max_steps;
    let out = c.out.join("model");
    if finished {
        model.save_pretrained(&out)?;
    }
    Ok(summarise(&summary, finished.then_some(out)))
}

fn summarise(s: &RunSummary, saved: Option<PathBuf>) -> serde_json::Value {
    json!({
        "steps": s.steps,
        "steps_this_run": s.steps_this_run,
        "tokens": s.tokens,
        "seconds": s.seconds,
        "tokens_per_second": if s.seconds > 0.0 { s.tokens as f64 / s.seconds } else { 0.0 },
        "peak_rss_bytes": train::metrics::peak_rss_bytes(),
        "peak_device_bytes": s.peak_device_bytes,
        "last": s.last,
        "model": saved,
    })
}
