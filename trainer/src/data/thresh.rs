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

/// The schema line of an example (what [`parse`] reads back to the same example).
pub(super) fn to_json(e: &Example) -> serde_json::Value {
    let mut line = serde_json::Map::new();
    match &e.prompt {
        Prompt::Text(t) => line.insert("prompt".into(), serde_json::json!(t)),
        Prompt::Messages(m) => line.insert("messages".into(), serde_json::json!(m)),
    };
    if !e.responses.is_empty() {
        let responses: Vec<serde_json::Value> = e
            .responses
            .iter()
            .map(|r| {
                let mut o = serde_json::Map::new();
                o.insert("text".into(), serde_json::json!(r.text));
                if let Some(l) = r.label {
                    o.insert("label".into(), serde_json::json!(l));
                }
                if let Some(s) = r.score {
                    o.insert("score".into(), serde_json::json!(s));
                }
                if let Some(k) = &r.kind {
                    o.insert("kind".into(), serde_json::json!(k));
                }
                serde_json::Value::Object(o)
            })
            .collect();
        line.insert("responses".into(), serde_json::Value::Array(responses));
    }
    if !e.pairs.is_empty() {
        line.insert("pairs".into(), serde_json::json!(e.pairs));
    }
    if let Some(c) = &e.correction {
        line.insert("correction".into(), serde_json::json!(c));
    }
    serde_json::Value::Object(line)
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
