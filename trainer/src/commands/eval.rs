//! `thresh-train eval`: reward accuracy on held-out pairs, chosen/rejected likelihood
//! tracking, and KLDO's separation metric.

use std::path::Path;

use candle_core::Device;
use serde_json::{Value, json};
use thresh_models::ChatMessage;
use thresh_models::config::read_json_value;

use super::load_data;
use crate::cli::EvalArgs;
use crate::data::{self, PairRecord};
use crate::encode::Encoder;
use crate::error::{Result, TrainError};
use crate::eval::separation::separation;
use crate::model::{Batch, TrainModel, Tuning};
use crate::objectives::Seq;
use crate::objectives::reward::score_pairs;

/// Whether the directory holds a `*ForSequenceClassification` model.
pub fn is_classifier(path: &Path) -> bool {
    path.is_dir()
        && read_json_value(&path.join("config.json"))
            .ok()
            .and_then(|v| {
                v["architectures"][0]
                    .as_str()
                    .map(|a| a.ends_with("ForSequenceClassification"))
            })
            .unwrap_or(false)
}

fn load_frozen(path: &Path, score: bool, device: &Device) -> Result<TrainModel> {
    TrainModel::load(path, Tuning::Frozen, score, 0, device)
}

/// Mean of a slice (0 for none).
fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Reward-model accuracy and margin on pairs.
pub fn reward_accuracy(
    model: &TrainModel,
    pairs: &[PairRecord],
    batch: usize,
    max_len: usize,
) -> Result<Value> {
    let enc = Encoder::for_model(model, max_len);
    let ids = pairs
        .iter()
        .map(|p| {
            let m = p.prompt.messages();
            Ok((enc.reward(&m, &p.chosen)?, enc.reward(&m, &p.rejected)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut margins = Vec::new();
    let idx: Vec<usize> = (0..ids.len()).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let (c, r, _) = score_pairs(model, &ids, chunk)?;
        let d = (c - r)?.to_vec1::<f32>()?;
        margins.extend(d.into_iter().map(f64::from));
    }
    let correct = margins.iter().filter(|&&m| m > 0.0).count();
    Ok(json!({
        "pairs": margins.len(),
        "accuracy": correct as f64 / margins.len().max(1) as f64,
        "mean_margin": mean(&margins),
    }))
}

/// Summed response log-probabilities of `seqs` in batches.
pub fn sequence_logps(model: &TrainModel, seqs: &[Seq], batch: usize) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(seqs.len());
    for chunk in seqs.chunks(batch.max(1)) {
        let b = Batch::new(chunk, model.device())?;
        out.extend(
            model
                .sequence_logps(&b)?
                .to_vec1::<f32>()?
                .into_iter()
                .map(f64::from),
        );
    }
    Ok(out)
}

/// Chosen and rejected log-likelihoods under a policy (and log-ratios against a reference).
pub fn likelihoods(
    model: &TrainModel,
    reference: Option<&TrainModel>,
    pairs: &[PairRecord],
    batch: usize,
    max_len: usize,
) -> Result<Value> {
    let enc = Encoder::for_model(model, max_len);
    let mut chosen = Vec::new();
    let mut rejected = Vec::new();
    for p in pairs {
        let m = p.prompt.messages();
        chosen.push(enc.policy(&m, &p.chosen)?);
        rejected.push(enc.policy(&m, &p.rejected)?);
    }
    let lc = sequence_logps(model, &chosen, batch)?;
    let lr = sequence_logps(model, &rejected, batch)?;
    let mut out = json!({
        "pairs": pairs.len(),
        "logp_chosen": mean(&lc),
        "logp_rejected": mean(&lr),
        "preference_accuracy": lc.iter().zip(&lr).filter(|(c, r)| c > r).count() as f64 / lc.len().max(1) as f64,
    });
    if let Some(r) = reference {
        let rc = sequence_logps(r, &chosen, batch)?;
        let rr = sequence_logps(r, &rejected, batch)?;
        let ratio_c: Vec<f64> = lc.iter().zip(&rc).map(|(a, b)| a - b).collect();
        let ratio_r: Vec<f64> = lr.iter().zip(&rr).map(|(a, b)| a - b).collect();
        let margin: Vec<f64> = ratio_c.iter().zip(&ratio_r).map(|(a, b)| a - b).collect();
        out["logratio_chosen"] = json!(mean(&ratio_c));
        out["logratio_rejected"] = json!(mean(&ratio_r));
        out["implicit_reward_margin"] = json!(mean(&margin));
        out["implicit_reward_accuracy"] =
            json!(margin.iter().filter(|&&m| m > 0.0).count() as f64 / margin.len().max(1) as f64);
    }
    Ok(out)
}

/// Last-layer, last-token hidden states of chat-templated prompts (no generation prompt).
pub fn prompt_states(
    model: &TrainModel,
    prompts: &[String],
    batch: usize,
    max_len: usize,
) -> Result<Vec<Vec<f64>>> {
    let enc = Encoder::for_model(model, max_len);
    let seqs = prompts
        .iter()
        .map(|p| Ok((enc.conversation(&[ChatMessage::new("user", p.clone())])?, 0)))
        .collect::<Result<Vec<Seq>>>()?;
    let mut out = Vec::new();
    for chunk in seqs.chunks(batch.max(1)) {
        let b = Batch::new(chunk, model.device())?;
        for row in model.last_hidden(&b)?.to_vec2::<f32>()? {
            out.push(row.into_iter().map(f64::from).collect());
        }
    }
    Ok(out)
}

/// Reads prompts: JSONL rows with a `prompt` string, or one prompt per line.
pub fn read_prompts(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('{') {
            let v: Value = serde_json::from_str(line).map_err(|e| TrainError::Data {
                path: path.to_path_buf(),
                line: i + 1,
                message: format!("invalid JSON: {e}"),
            })?;
            let p = v["prompt"].as_str().ok_or_else(|| TrainError::Data {
                path: path.to_path_buf(),
                line: i + 1,
                message: "no \"prompt\" string".into(),
            })?;
            out.push(p.to_string());
        } else {
            out.push(line.to_string());
        }
    }
    if out.is_empty() {
        return Err(TrainError::Data {
            path: path.to_path_buf(),
            line: 0,
            message: "no prompts".into(),
        });
    }
    Ok(out)
}

/// `thresh-train eval`.
pub fn eval(a: &EvalArgs) -> Result<Value> {
    let device = thresh_models::parse_device(&a.device)?;
    let classifier = is_classifier(&a.model);
    let model = load_frozen(&a.model, classifier, &device)?;
    let mut out = json!({ "model": a.model });
    if let Some(path) = &a.data {
        let pairs = data::pairs(&load_data(path, &a.format)?)?;
        if classifier {
            out["reward"] = reward_accuracy(&model, &pairs, a.batch_size, a.max_len)?;
        } else {
            let reference = a
                .reference
                .as_deref()
                .map(|r| load_frozen(r, false, &device))
                .transpose()?;
            out["likelihood"] =
                likelihoods(&model, reference.as_ref(), &pairs, a.batch_size, a.max_len)?;
        }
    }
    if let (Some(b), Some(h)) = (&a.benign, &a.harmful) {
        let benign = prompt_states(&model, &read_prompts(b)?, a.batch_size, a.max_len)?;
        let harmful = prompt_states(&model, &read_prompts(h)?, a.batch_size, a.max_len)?;
        let s = separation(&benign, &harmful)?;
        out["separation"] = json!({ "bhattacharyya": s.bhattacharyya, "silhouette": s.silhouette });
    }
    if a.data.is_none() && a.benign.is_none() {
        return Err(TrainError::Config(
            "eval needs --data and/or --benign with --harmful".into(),
        ));
    }
    Ok(out)
}
