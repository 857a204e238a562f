//! Training throughput and peak memory: SFT steps on fixed-size batches of real text.
//!
//! ```text
//! cargo run --release -p thresh-trainer --example train_bench -- \
//!     models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf [LORA_RANK] [STEPS]
//! ```
//!
//! Batches are 8 rows of 128 tokens cut from the demo data's responses (every token after
//! the first is a target). The first step (allocation warm-up) is excluded from the rate;
//! peak memory is the process's `VmHWM`.

use std::path::PathBuf;

use candle_core::Device;
use thresh_trainer::data::{self, Format};
use thresh_trainer::model::{TrainModel, Tuning};
use thresh_trainer::objectives::sft::Sft;
use thresh_trainer::optim::OptimConfig;
use thresh_trainer::schedule::{Schedule, ScheduleKind};
use thresh_trainer::train::{RunConfig, metrics::peak_rss_bytes, train};

const BATCH: usize = 8;
const SEQ: usize = 128;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model_path = PathBuf::from(
        args.get(1)
            .map(String::as_str)
            .unwrap_or("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"),
    );
    let rank: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let steps: u64 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let model = TrainModel::load(
        &model_path,
        Tuning::from_rank(rank, 16.0),
        false,
        0,
        &Device::Cpu,
    )?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let examples = data::load(&root.join("data/demo/pairs.jsonl"), Format::Auto)?;
    let text: String = examples
        .iter()
        .flat_map(|e| e.responses.iter().map(|r| r.text.as_str()))
        .collect::<Vec<_>>()
        .join(" ");
    let ids = model.tokenizer().encode(&text, false)?;
    let seqs: Vec<(Vec<u32>, usize)> = ids.chunks_exact(SEQ).map(|c| (c.to_vec(), 1)).collect();
    anyhow::ensure!(seqs.len() >= BATCH, "not enough demo text for one batch");
    let out = tempfile::tempdir()?;
    let cfg = RunConfig {
        out: out.path().to_path_buf(),
        batch_size: BATCH,
        accumulation: 1,
        max_steps: steps,
        checkpoint_every: 0,
        clip: Some(1.0),
        seed: 0,
        shuffle: true,
        resume: false,
        progress: false,
        schedule: Schedule {
            lr: 1e-5,
            warmup_steps: 0,
            total_steps: steps,
            kind: ScheduleKind::Constant,
        },
        optim: OptimConfig::default(),
        stop_after: None,
    };
    train(&model, &mut Sft { seqs }, &cfg)?;
    let log = std::fs::read_to_string(out.path().join("metrics.jsonl"))?;
    let rows: Vec<serde_json::Value> = log
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let first = rows
        .first()
        .and_then(|r| r["elapsed_s"].as_f64())
        .unwrap_or(0.0);
    let last = rows
        .last()
        .and_then(|r| r["elapsed_s"].as_f64())
        .unwrap_or(0.0);
    let timed_steps = rows.len().saturating_sub(1);
    let tokens = (timed_steps * BATCH * SEQ) as f64;
    println!(
        "{} lora_rank={rank} trainable={} batch={BATCH}x{SEQ} steps={} first_step_s={first:.2} \
         step_s={:.2} tokens_per_s={:.1} peak_rss_mib={} loss {:.3} -> {:.3}",
        model_path.display(),
        model.trainable_parameters(),
        rows.len(),
        (last - first) / timed_steps.max(1) as f64,
        tokens / (last - first).max(1e-9),
        peak_rss_bytes().unwrap_or(0) / (1 << 20),
        rows.first()
            .and_then(|r| r["loss"].as_f64())
            .unwrap_or(f64::NAN),
        rows.last()
            .and_then(|r| r["loss"].as_f64())
            .unwrap_or(f64::NAN),
    );
    Ok(())
}
