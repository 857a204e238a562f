//! Kill and resume: a run stopped after k steps and resumed from its checkpoint by a fresh
//! model, optimiser and data cursor ends at the same weights as an uninterrupted run.

mod common;

use std::path::Path;

use candle_core::Device;
use common::{load, max_diff, tiny_model};
use thresh_models::Family;
use thresh_trainer::model::{Batch, TrainModel, Tuning};
use thresh_trainer::optim::{OptimConfig, OptimKind};
use thresh_trainer::schedule::{Schedule, ScheduleKind};
use thresh_trainer::train::{Objective, RunConfig, StepLoss, train};

/// Language modelling on byte strings, with a moving average that scales the loss so that
/// a resume that lost the loss state would diverge.
struct Lm {
    rows: Vec<(Vec<u32>, usize)>,
    ema: f64,
}

impl Objective for Lm {
    fn len(&self) -> usize {
        self.rows.len()
    }
    fn loss(&mut self, model: &TrainModel, batch: &[usize]) -> thresh_trainer::Result<StepLoss> {
        let rows: Vec<_> = batch.iter().map(|&i| self.rows[i].clone()).collect();
        let b = Batch::new(&rows, &Device::Cpu)?;
        let logp = model.sequence_logps(&b)?;
        let nll = (logp.neg()?.sum_all()? / b.response_tokens() as f64)?;
        self.ema = 0.9 * self.ema + 0.1 * nll.to_scalar::<f32>()? as f64;
        Ok(StepLoss {
            loss: (nll * (1.0 + self.ema))?,
            metrics: [("ema".to_string(), self.ema)].into(),
            tokens: b.response_tokens(),
        })
    }
    fn state(&self) -> serde_json::Value {
        serde_json::json!(self.ema)
    }
    fn restore(&mut self, s: &serde_json::Value) -> thresh_trainer::Result<()> {
        self.ema = s.as_f64().unwrap_or_default();
        Ok(())
    }
}

fn objective() -> Lm {
    let texts = [
        "In the beginning",
        "was the Word",
        "It is a truth",
        "universally acknowledged",
        "that a single man",
        "in possession",
        "of a good fortune",
    ];
    Lm {
        rows: texts
            .iter()
            .map(|t| (t.bytes().map(u32::from).collect(), 3))
            .collect(),
        ema: 0.0,
    }
}

fn config(out: &Path, kind: OptimKind) -> RunConfig {
    RunConfig {
        out: out.to_path_buf(),
        batch_size: 2,
        accumulation: 2,
        max_steps: 6,
        checkpoint_every: 0,
        clip: Some(0.5),
        seed: 11,
        shuffle: true,
        resume: false,
        progress: false,
        schedule: Schedule {
            lr: 5e-3,
            warmup_steps: 2,
            total_steps: 6,
            kind: ScheduleKind::Cosine,
        },
        optim: OptimConfig {
            kind,
            weight_decay: 0.01,
            ..Default::default()
        },
        stop_after: None,
    }
}

fn check(tuning: Tuning, kind: OptimKind) {
    let dir = tempfile::tempdir().unwrap();
    let src = tiny_model(dir.path(), "m", Family::Llama);
    let whole = load(&src, tuning, false);
    let summary = train(
        &whole,
        &mut objective(),
        &config(&dir.path().join("a"), kind),
    )
    .unwrap();
    assert_eq!(summary.steps, 6);

    let out_b = dir.path().join("b");
    {
        let first = load(&src, tuning, false);
        let cfg = RunConfig {
            stop_after: Some(3),
            ..config(&out_b, kind)
        };
        let s = train(&first, &mut objective(), &cfg).unwrap();
        assert_eq!(s.steps, 3);
        // The interrupted run has moved away from the final weights.
        let moved = first
            .vars()
            .iter()
            .zip(whole.vars())
            .map(|((_, a), (_, b))| max_diff(a, b))
            .fold(0f32, f32::max);
        assert!(moved > 1e-4, "three steps should differ from six: {moved}");
    }
    let resumed = load(&src, tuning, false);
    let cfg = RunConfig {
        resume: true,
        ..config(&out_b, kind)
    };
    let s = train(&resumed, &mut objective(), &cfg).unwrap();
    assert_eq!((s.steps, s.steps_this_run), (6, 3));
    for ((name, a), (_, b)) in resumed.vars().iter().zip(whole.vars()) {
        let d = max_diff(a, b);
        assert!(
            d <= 1e-6,
            "{name}: resumed differs from uninterrupted by {d}"
        );
    }
    let lines = std::fs::read_to_string(out_b.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn kill_and_resume_equals_an_uninterrupted_run_full_adamw() {
    check(Tuning::Full, OptimKind::Adamw);
}

#[test]
fn kill_and_resume_equals_an_uninterrupted_run_lora_rmsprop() {
    check(
        Tuning::Lora {
            rank: 2,
            alpha: 4.0,
        },
        OptimKind::Rmsprop,
    );
}

#[test]
fn resume_without_a_checkpoint_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = tiny_model(dir.path(), "m", Family::Llama);
    let model = load(&src, Tuning::Full, false);
    let cfg = RunConfig {
        resume: true,
        ..config(&dir.path().join("none"), OptimKind::Adamw)
    };
    let err = train(&model, &mut objective(), &cfg)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no checkpoint"), "{err}");
}
