//! The record views the training commands consume, one per kind of feedback.

use serde::{Deserialize, Serialize};

use super::{Example, Prompt};
use crate::error::{Result, TrainError};

/// A preference pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairRecord {
    /// The prompt.
    pub prompt: Prompt,
    /// The preferred response.
    pub chosen: String,
    /// The dispreferred response.
    pub rejected: String,
}

/// One response with binary feedback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryRecord {
    /// The prompt.
    pub prompt: Prompt,
    /// The response.
    pub response: String,
    /// `true` desired (aligned), `false` undesired.
    pub desired: bool,
}

/// A prompt with several scored responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalarRecord {
    /// The prompt.
    pub prompt: Prompt,
    /// The responses.
    pub responses: Vec<String>,
    /// Their raw scores (higher is better), one per response.
    pub scores: Vec<f64>,
}

/// An Aligner training triple.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorrectionRecord {
    /// The question (the prompt's last user turn).
    pub question: String,
    /// The answer to correct.
    pub answer: String,
    /// Its correction.
    pub corrected: String,
}

/// Every `(chosen, rejected)` pair of every example, in order.
pub fn pairs(ex: &[Example]) -> Result<Vec<PairRecord>> {
    let mut out = Vec::new();
    for (k, e) in ex.iter().enumerate() {
        for &(c, r) in &e.pairs {
            let (Some(chosen), Some(rejected)) = (e.responses.get(c), e.responses.get(r)) else {
                return Err(TrainError::Input(format!(
                    "example {k}: pair ({c}, {r}) refers past its {} responses",
                    e.responses.len()
                )));
            };
            out.push(PairRecord {
                prompt: e.prompt.clone(),
                chosen: chosen.text.clone(),
                rejected: rejected.text.clone(),
            });
        }
    }
    if out.is_empty() {
        return Err(TrainError::NoExamples(
            "the data holds no preference pairs (`pairs` in the thresh schema)".into(),
        ));
    }
    Ok(out)
}

/// Every response that carries a `label`, in order.
pub fn binary(ex: &[Example]) -> Result<Vec<BinaryRecord>> {
    let out: Vec<BinaryRecord> = ex
        .iter()
        .flat_map(|e| {
            e.responses.iter().filter_map(|r| {
                r.label.map(|desired| BinaryRecord {
                    prompt: e.prompt.clone(),
                    response: r.text.clone(),
                    desired,
                })
            })
        })
        .collect();
    if out.is_empty() {
        return Err(TrainError::NoExamples(
            "the data holds no labelled responses (`label` in the thresh schema)".into(),
        ));
    }
    Ok(out)
}

/// Every example with at least two responses, all of them scored. An example whose
/// responses are only partly scored is an error.
pub fn scalar(ex: &[Example]) -> Result<Vec<ScalarRecord>> {
    let mut out = Vec::new();
    for (k, e) in ex.iter().enumerate() {
        let scores: Vec<f64> = e.responses.iter().filter_map(|r| r.score).collect();
        if scores.is_empty() {
            continue;
        }
        if scores.len() != e.responses.len() {
            return Err(TrainError::Input(format!(
                "example {k}: {} of its {} responses have a score",
                scores.len(),
                e.responses.len()
            )));
        }
        if scores.len() < 2 {
            continue;
        }
        out.push(ScalarRecord {
            prompt: e.prompt.clone(),
            responses: e.responses.iter().map(|r| r.text.clone()).collect(),
            scores,
        });
    }
    if out.is_empty() {
        return Err(TrainError::NoExamples(
            "the data holds no prompts with two or more scored responses".into(),
        ));
    }
    Ok(out)
}

/// Every example with a correction; the question is the prompt's last user turn.
pub fn corrections(ex: &[Example]) -> Result<Vec<CorrectionRecord>> {
    let out: Vec<CorrectionRecord> = ex
        .iter()
        .filter_map(|e| {
            e.correction.as_ref().map(|c| CorrectionRecord {
                question: e.prompt.last_user_text().to_string(),
                answer: c.answer.clone(),
                corrected: c.corrected.clone(),
            })
        })
        .collect();
    if out.is_empty() {
        return Err(TrainError::NoExamples(
            "the data holds no corrections (`correction` in the thresh schema)".into(),
        ));
    }
    Ok(out)
}
