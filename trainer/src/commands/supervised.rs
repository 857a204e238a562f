//! `sft`, `reward` and `aligner`: objectives without a reference model.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde_json::Value;
use thresh_aligner::AlignerTemplate;

use super::{ensure_out, load_data, load_model, train_and_save};
use crate::cli::{AlignerArgs, RewardArgs, SftArgs};
use crate::data;
use crate::encode::Encoder;
use crate::error::{Result, TrainError};
use crate::objectives::reward::Reward;
use crate::objectives::sft::Sft;

/// `thresh-train sft`: cross-entropy on every response not marked undesired (for pairs,
/// the chosen one).
pub fn sft(a: &SftArgs) -> Result<Value> {
    let c = &a.common;
    let examples = load_data(&c.data, &c.format)?;
    let model = load_model(c, false)?;
    let enc = Encoder::for_model(&model, c.max_len);
    let mut seqs = Vec::new();
    for ex in &examples {
        let rejected: Vec<usize> = ex.pairs.iter().map(|p| p.1).collect();
        let msgs = ex.prompt.messages();
        for (i, r) in ex.responses.iter().enumerate() {
            if r.label != Some(false) && !rejected.contains(&i) {
                seqs.push(enc.policy(&msgs, &r.text)?);
            }
        }
    }
    if seqs.is_empty() {
        return Err(TrainError::NoExamples(format!(
            "{} holds no desired responses to fine-tune on",
            c.data.display()
        )));
    }
    ensure_out(c)?;
    train_and_save(c, &model, &mut Sft { seqs }, true)
}

/// `thresh-train reward`: a `*ForSequenceClassification` reward model on pairs, or a linear
/// head when `--model` is a sentence encoder.
pub fn reward(a: &RewardArgs) -> Result<Value> {
    let c = &a.common;
    if super::linear_reward::is_sentence_encoder(&c.model) {
        return super::linear_reward::train_linear_head(a);
    }
    let pairs = data::pairs(&load_data(&c.data, &c.format)?)?;
    let model = load_model(c, true)?;
    let enc = Encoder::for_model(&model, c.max_len);
    let pairs = pairs
        .iter()
        .map(|p| {
            let msgs = p.prompt.messages();
            Ok((
                enc.reward(&msgs, &p.chosen)?,
                enc.reward(&msgs, &p.rejected)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    ensure_out(c)?;
    train_and_save(c, &model, &mut Reward { pairs }, true)
}

/// `thresh-train aligner`: a corrector. A seeded `identity_fraction` of the examples first
/// learn to repeat the answer, then every example learns its correction; the saved model
/// names its template in `aligner_template.txt` so `thresh serve --aligner` renders the same
/// prompt.
pub fn aligner(a: &AlignerArgs) -> Result<Value> {
    let c = &a.common;
    if !(0.0..=1.0).contains(&a.identity_fraction) {
        return Err(TrainError::Config(format!(
            "--identity-fraction must be in [0, 1], got {}",
            a.identity_fraction
        )));
    }
    let template =
        AlignerTemplate::parse(&a.template).map_err(|e| TrainError::Config(e.to_string()))?;
    let records = data::corrections(&load_data(&c.data, &c.format)?)?;
    let model = load_model(c, false)?;
    let enc = Encoder::for_model(&model, c.max_len);
    let mut rng = StdRng::seed_from_u64(c.seed);
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.shuffle(&mut rng);
    let n_identity = (a.identity_fraction * records.len() as f64).round() as usize;
    let mut seqs = Vec::new();
    for &i in &order[..n_identity] {
        let r = &records[i];
        seqs.push(enc.raw(&template.render(&r.question, &r.answer), &r.answer)?);
    }
    let mut corrections: Vec<usize> = (0..records.len()).collect();
    corrections.shuffle(&mut rng);
    for i in corrections {
        let r = &records[i];
        seqs.push(enc.raw(&template.render(&r.question, &r.answer), &r.corrected)?);
    }
    ensure_out(c)?;
    // Phases in order: the data is pre-shuffled within each phase and not reshuffled.
    let summary = train_and_save(c, &model, &mut Sft { seqs }, false)?;
    if let Some(dir) = summary["model"].as_str() {
        let path = std::path::Path::new(dir).join("aligner_template.txt");
        let text = match &template {
            AlignerTemplate::V1 => "v1".to_string(),
            AlignerTemplate::Current => "current".to_string(),
            AlignerTemplate::Custom(s) => s.clone(),
        };
        crate::model::save::write_atomic(&path, text.as_bytes())?;
    }
    Ok(summary)
}
