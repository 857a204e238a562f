//! thresh's own JSONL schema (documented in `data/README.md`).

use serde::Deserialize;
use thresh_models::ChatMessage;

use super::{Correction, Example, Prompt, Response, from_value};

/// One line as written on disk.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    /// Free-form identifier, kept out of training.
    #[serde(default)]
    #[allow(dead_code)]
    id: Option<serde_json::Value>,
    prompt: Option<String>,
    messages: Option<Vec<ChatMessage>>,
    #[serde(default)]
    responses: Vec<LineResponse>,
    #[serde(default)]
    pairs: Vec<(usize, usize)>,
    correction: Option<Correction>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineResponse {
    text: String,
    label: Option<bool>,
    score: Option<f64>,
    kind: Option<String>,
}

/// Parses and validates one line of the schema.
pub(super) fn parse(value: serde_json::Value) -> Result<Example, String> {
    let line: Line = from_value(value)?;
    let prompt = match (line.prompt, line.messages) {
        (Some(p), None) => Prompt::Text(p),
        (None, Some(m)) if m.is_empty() => return Err("`messages` is empty".into()),
        (None, Some(m)) => Prompt::Messages(m),
        (Some(_), Some(_)) => return Err("has both `prompt` and `messages`; give one".into()),
        (None, None) => return Err("has neither `prompt` nor `messages`".into()),
    };
    if line.responses.is_empty() && line.correction.is_none() {
        return Err("has neither `responses` nor `correction`".into());
    }
    let n = line.responses.len();
    for (k, &(c, r)) in line.pairs.iter().enumerate() {
        if c >= n || r >= n {
            return Err(format!(
                "pairs[{k}] = [{c}, {r}] refers past the {n} responses"
            ));
        }
        if c == r {
            return Err(format!(
                "pairs[{k}] = [{c}, {r}] pairs a response with itself"
            ));
        }
    }
    let scored = line.responses.iter().filter(|r| r.score.is_some()).count();
    if scored != 0 && scored != n {
        return Err(format!(
            "{scored} of {n} responses have a `score`: score all of them or none"
        ));
    }
    let responses = line
        .responses
        .into_iter()
        .map(|r| Response {
            text: r.text,
            label: r.label,
            score: r.score,
            kind: r.kind,
        })
        .collect();
    Ok(Example {
        prompt,
        responses,
        pairs: line.pairs,
        correction: line.correction,
    })
}
