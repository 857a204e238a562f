//! `thresh-train reward` on a sentence encoder (`BertModel`, e.g. all-MiniLM-L6-v2): a linear
//! head over the frozen, L2-normalised response embeddings, trained with the Bradley-Terry
//! loss and saved as the head file `thresh serve --reward DIR --reward-head FILE` loads.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use serde_json::{Value, json};
use thresh_reward::SentenceEmbedder;

use super::{ensure_out, load_data, run_config};
use crate::cli::RewardArgs;
use crate::data;
use crate::error::{Result, TrainError};
use crate::losses;
use crate::model::save::{rename_durable, temp_sibling};
use crate::optim::{Optimizer, clip_grad_norm};
use crate::train::cursor::Cursor;
use crate::train::metrics::MetricsLog;

/// Whether `dir` is a sentence encoder (`architectures: ["BertModel"]`).
pub fn is_sentence_encoder(dir: &Path) -> bool {
    dir.is_dir()
        && thresh_models::config::read_json_value(&dir.join("config.json"))
            .ok()
            .and_then(|v| v["architectures"][0].as_str().map(|a| a == "BertModel"))
            .unwrap_or(false)
}

fn embed(e: &SentenceEmbedder, texts: &[String]) -> Result<Tensor> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let rows = e
        .embed(&refs)
        .map_err(|err| TrainError::Input(err.to_string()))?;
    let dim = rows.first().map(|r| r.0.len()).unwrap_or(0);
    let flat: Vec<f32> = rows.into_iter().flat_map(|r| r.0).collect();
    Ok(Tensor::from_vec(flat, (texts.len(), dim), &Device::Cpu)?)
}

/// Trains the linear head and writes `OUT/linear-head.safetensors` (`weight` `(dim,)`,
/// `bias` `(1,)`). The prompt's embedding would add the same term to both responses of a
/// pair, so the head reads the response alone.
pub fn train_linear_head(a: &RewardArgs) -> Result<Value> {
    let c = &a.common;
    if c.resume {
        return Err(TrainError::Config(
            "--resume is not supported for the linear head (it trains in seconds)".into(),
        ));
    }
    let pairs = data::pairs(&load_data(&c.data, &c.format)?)?;
    let embedder = SentenceEmbedder::load(&c.model, &Device::Cpu)
        .map_err(|e| TrainError::Config(e.to_string()))?;
    let chosen = embed(
        &embedder,
        &pairs.iter().map(|p| p.chosen.clone()).collect::<Vec<_>>(),
    )?;
    let rejected = embed(
        &embedder,
        &pairs.iter().map(|p| p.rejected.clone()).collect::<Vec<_>>(),
    )?;
    let dim = chosen.dim(1)?;
    let weight = Var::zeros(dim, candle_core::DType::F32, &Device::Cpu)?;
    let bias = Var::zeros(1, candle_core::DType::F32, &Device::Cpu)?;
    let vars = vec![
        ("weight".to_string(), weight.clone()),
        ("bias".to_string(), bias.clone()),
    ];
    let cfg = run_config(c, pairs.len(), true)?;
    let mut opt = Optimizer::new(cfg.optim, &vars)?;
    let mut cursor = Cursor::new(pairs.len(), c.seed, true);
    ensure_out(c)?;
    let mut log = MetricsLog::open(&c.out.join("metrics.jsonl"), None)?;
    let start = std::time::Instant::now();
    let mut last = Default::default();
    for step in 0..cfg.max_steps {
        let idx: Vec<u32> = cursor
            .next_batch(c.batch_size)
            .into_iter()
            .map(|i| i as u32)
            .collect();
        let idx = Tensor::from_vec(idx.clone(), idx.len(), &Device::Cpu)?;
        let score = |e: &Tensor| -> Result<Tensor> {
            Ok(e.index_select(&idx, 0)?
                .matmul(&weight.as_tensor().unsqueeze(1)?)?
                .squeeze(1)?
                .broadcast_add(bias.as_tensor())?)
        };
        let out = losses::bradley_terry(&score(&chosen)?, &score(&rejected)?)?;
        let grads = out.loss.backward()?;
        let mut g: Vec<Tensor> = vars
            .iter()
            .map(|(_, v)| {
                grads
                    .get(v.as_tensor())
                    .cloned()
                    .map_or_else(|| v.as_tensor().zeros_like(), Ok)
            })
            .collect::<candle_core::Result<_>>()?;
        let norm = match cfg.clip {
            Some(max) => clip_grad_norm(&mut g, max)?,
            None => crate::optim::global_norm(&g)?,
        };
        let lr = cfg.schedule.lr_at(step);
        opt.apply(&vars, &g, lr)?;
        let mut row = out.metrics;
        row.insert("loss".into(), out.loss.to_scalar::<f32>()? as f64);
        row.insert("lr".into(), lr);
        row.insert("grad_norm".into(), norm);
        log.write(step + 1, start.elapsed().as_secs_f64(), &row)?;
        last = row;
    }
    let path = c.out.join("linear-head.safetensors");
    let tmp = temp_sibling(&path);
    let tensors: HashMap<&str, Tensor> = HashMap::from([
        ("weight", weight.as_tensor().detach()),
        ("bias", bias.as_tensor().detach()),
    ]);
    candle_core::safetensors::save(&tensors, &tmp)?;
    rename_durable(&tmp, &path)?;
    Ok(json!({ "steps": cfg.max_steps, "last": last, "head": path, "encoder": c.model }))
}
