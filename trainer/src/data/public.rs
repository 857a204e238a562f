//! Adapters for the public preference-data layouts. Every field a layout defines as
//! required is required here; extra columns (ids, sources, categories) are ignored.

use serde::Deserialize;
use thresh_models::ChatMessage;

use super::{Correction, Example, Prompt, Response, from_value};

const HUMAN: &str = "\n\nHuman:";
const ASSISTANT: &str = "\n\nAssistant:";

/// Splits an HH-RLHF transcript at its last `"\n\nAssistant:"` into the dialogue before it
/// and the (trimmed) final assistant turn.
fn split_last_assistant<'a>(t: &'a str, which: &str) -> Result<(&'a str, String), String> {
    let idx = t
        .rfind(ASSISTANT)
        .ok_or_else(|| format!("`{which}` has no \"\\n\\nAssistant:\" turn"))?;
    Ok((&t[..idx], t[idx + ASSISTANT.len()..].trim().to_string()))
}

/// The turns of an HH-RLHF dialogue (`"\n\nHuman: ..."` / `"\n\nAssistant: ..."`).
fn hh_messages(dialogue: &str) -> Result<Vec<ChatMessage>, String> {
    let mut marks: Vec<(usize, &str, &str)> = dialogue
        .match_indices(HUMAN)
        .map(|(i, m)| (i, m, "user"))
        .chain(
            dialogue
                .match_indices(ASSISTANT)
                .map(|(i, m)| (i, m, "assistant")),
        )
        .collect();
    marks.sort_unstable_by_key(|m| m.0);
    let Some(&(first, _, _)) = marks.first() else {
        return Err("no \"\\n\\nHuman:\" turn before the last \"\\n\\nAssistant:\"".into());
    };
    if !dialogue[..first].trim().is_empty() {
        return Err("text before the first \"\\n\\nHuman:\" turn".into());
    }
    let mut out = Vec::with_capacity(marks.len());
    for (k, &(start, mark, role)) in marks.iter().enumerate() {
        let end = marks.get(k + 1).map_or(dialogue.len(), |m| m.0);
        out.push(ChatMessage::new(
            role,
            dialogue[start + mark.len()..end].trim(),
        ));
    }
    if out.last().is_some_and(|m| m.role != "user") {
        return Err(
            "the dialogue before the last \"\\n\\nAssistant:\" does not end with a Human turn"
                .into(),
        );
    }
    Ok(out)
}

/// Anthropic HH-RLHF: `{"chosen": transcript, "rejected": transcript}`. Each transcript is
/// split at its last `"\n\nAssistant:"`; the dialogues before it must be identical and
/// become the prompt's messages; the two final turns become responses 0 (chosen) and 1.
pub(super) fn hh_rlhf(value: serde_json::Value) -> Result<Example, String> {
    #[derive(Deserialize)]
    struct Row {
        chosen: String,
        rejected: String,
    }
    let row: Row = from_value(value)?;
    let (pc, chosen) = split_last_assistant(&row.chosen, "chosen")?;
    let (pr, rejected) = split_last_assistant(&row.rejected, "rejected")?;
    if pc != pr {
        return Err("`chosen` and `rejected` differ before their last \"\\n\\nAssistant:\" turn, so they do not answer one prompt".into());
    }
    Ok(Example {
        prompt: Prompt::Messages(hh_messages(pc)?),
        responses: vec![Response::new(chosen), Response::new(rejected)],
        pairs: vec![(0, 1)],
        correction: None,
    })
}

/// Splits a conversation into the messages before its final assistant turn and that turn.
fn split_final_assistant(
    mut messages: Vec<ChatMessage>,
    which: &str,
) -> Result<(Vec<ChatMessage>, String), String> {
    match messages.pop() {
        Some(last) if last.role == "assistant" => Ok((messages, last.content)),
        Some(last) => Err(format!(
            "the last message of `{which}` is from `{}`, not `assistant`",
            last.role
        )),
        None => Err(format!("`{which}` has no messages")),
    }
}

/// HuggingFaceH4/ultrafeedback_binarized: `chosen` and `rejected` are conversations ending
/// in the assistant's answer, with `score_chosen` / `score_rejected` (kept as the
/// responses' scores when present). The conversations before the answers must match.
pub(super) fn ultrafeedback(value: serde_json::Value) -> Result<Example, String> {
    #[derive(Deserialize)]
    struct Row {
        prompt: Option<String>,
        chosen: Vec<ChatMessage>,
        rejected: Vec<ChatMessage>,
        score_chosen: Option<f64>,
        score_rejected: Option<f64>,
    }
    let row: Row = from_value(value)?;
    let (pc, chosen) = split_final_assistant(row.chosen, "chosen")?;
    let (pr, rejected) = split_final_assistant(row.rejected, "rejected")?;
    if pc != pr {
        return Err("`chosen` and `rejected` differ before their final assistant turns".into());
    }
    let prompt = match (pc.is_empty(), row.prompt) {
        (false, _) => Prompt::Messages(pc),
        (true, Some(p)) => Prompt::Text(p),
        (true, None) => {
            return Err("no prompt: neither `prompt` nor a user turn in `chosen`".into());
        }
    };
    if row.score_chosen.is_some() != row.score_rejected.is_some() {
        return Err("has only one of `score_chosen` and `score_rejected`".into());
    }
    let response = |text: String, score: Option<f64>| Response {
        text,
        label: None,
        score,
        kind: None,
    };
    Ok(Example {
        prompt,
        responses: vec![
            response(chosen, row.score_chosen),
            response(rejected, row.score_rejected),
        ],
        pairs: vec![(0, 1)],
        correction: None,
    })
}

/// PKU-Alignment/PKU-SafeRLHF: two responses labelled by `is_response_{0,1}_safe`, and the
/// pair `(safer, other)` from `safer_response_id` (the safety preference; the
/// helpfulness preference `better_response_id` is not used).
pub(super) fn pku_safe_rlhf(value: serde_json::Value) -> Result<Example, String> {
    #[derive(Deserialize)]
    struct Row {
        prompt: String,
        response_0: String,
        response_1: String,
        is_response_0_safe: bool,
        is_response_1_safe: bool,
        safer_response_id: u8,
    }
    let row: Row = from_value(value)?;
    let safer = usize::from(row.safer_response_id);
    if safer > 1 {
        return Err(format!(
            "safer_response_id must be 0 or 1, got {}",
            row.safer_response_id
        ));
    }
    let response = |text: String, safe: bool| Response {
        text,
        label: Some(safe),
        score: None,
        kind: None,
    };
    Ok(Example {
        prompt: Prompt::Text(row.prompt),
        responses: vec![
            response(row.response_0, row.is_response_0_safe),
            response(row.response_1, row.is_response_1_safe),
        ],
        pairs: vec![(safer, 1 - safer)],
        correction: None,
    })
}

/// Aligner triples `{"question", "answer", "correction"}`: a correction example.
pub(super) fn aligner(value: serde_json::Value) -> Result<Example, String> {
    #[derive(Deserialize)]
    struct Row {
        question: String,
        answer: String,
        correction: String,
    }
    let row: Row = from_value(value)?;
    Ok(Example {
        prompt: Prompt::Text(row.question),
        responses: Vec::new(),
        pairs: Vec::new(),
        correction: Some(Correction {
            answer: row.answer,
            corrected: row.correction,
        }),
    })
}

/// KLDO's rows: `safety` 0 marks a harmful prompt (its refusals `rej_responses` are the
/// aligned responses), 1 a benign one (its compliant `acc_responses` are). Responses get
/// `kind` `compliance` / `refusal` and `label` aligned or not, and every (aligned,
/// unaligned) combination becomes a pair.
pub(super) fn kldo(value: serde_json::Value) -> Result<Example, String> {
    #[derive(Deserialize)]
    struct Row {
        safety: serde_json::Value,
        prompt: String,
        #[serde(default)]
        acc_responses: Vec<String>,
        #[serde(default)]
        rej_responses: Vec<String>,
    }
    let row: Row = from_value(value)?;
    let benign = match &row.safety {
        serde_json::Value::Number(n) if n.as_u64() == Some(0) => false,
        serde_json::Value::Number(n) if n.as_u64() == Some(1) => true,
        serde_json::Value::Bool(b) => *b,
        other => {
            return Err(format!(
                "safety must be 0 (harmful prompt) or 1 (benign prompt), got {other}"
            ));
        }
    };
    if row.acc_responses.is_empty() && row.rej_responses.is_empty() {
        return Err("both `acc_responses` and `rej_responses` are empty".into());
    }
    let response = |text: String, kind: &str, aligned: bool| Response {
        text,
        label: Some(aligned),
        score: None,
        kind: Some(kind.to_string()),
    };
    let responses: Vec<Response> = row
        .acc_responses
        .into_iter()
        .map(|t| response(t, "compliance", benign))
        .chain(
            row.rej_responses
                .into_iter()
                .map(|t| response(t, "refusal", !benign)),
        )
        .collect();
    let mut pairs = Vec::new();
    for (i, a) in responses.iter().enumerate() {
        for (j, u) in responses.iter().enumerate() {
            if a.label == Some(true) && u.label == Some(false) {
                pairs.push((i, j));
            }
        }
    }
    Ok(Example {
        prompt: Prompt::Text(row.prompt),
        responses,
        pairs,
        correction: None,
    })
}

/// A TRL field that is either plain text or a conversation.
#[derive(Deserialize)]
#[serde(untagged)]
enum TextOrMessages {
    Text(String),
    Messages(Vec<ChatMessage>),
}

/// TRL's unpaired preference rows `{"prompt", "completion", "label"}`, standard (strings)
/// or conversational (message lists; the completion must be one assistant message).
pub(super) fn trl_unpaired(value: serde_json::Value) -> Result<Example, String> {
    #[derive(Deserialize)]
    struct Row {
        prompt: TextOrMessages,
        completion: TextOrMessages,
        label: bool,
    }
    let row: Row = from_value(value)?;
    let prompt = match row.prompt {
        TextOrMessages::Text(t) => Prompt::Text(t),
        TextOrMessages::Messages(m) if m.is_empty() => return Err("`prompt` is empty".into()),
        TextOrMessages::Messages(m) => Prompt::Messages(m),
    };
    let text = match row.completion {
        TextOrMessages::Text(t) => t,
        TextOrMessages::Messages(m) => match <[ChatMessage; 1]>::try_from(m) {
            Ok([msg]) if msg.role == "assistant" => msg.content,
            _ => return Err("a conversational `completion` must be one assistant message".into()),
        },
    };
    Ok(Example {
        prompt,
        responses: vec![Response {
            text,
            label: Some(row.label),
            score: None,
            kind: None,
        }],
        pairs: Vec::new(),
        correction: None,
    })
}
