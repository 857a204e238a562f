//! `POST /correct`'s body to pairs and settings: one pair or a batch, each question text or
//! chat messages, every limit checked before any work.

use thresh_aligner::CorrectionInput;
use thresh_decoding::{SamplingParams, StopConditions};
use thresh_reward::Prompt;

use super::{bad, messages};
use crate::serve::api::errors::ApiError;
use crate::serve::api::openai::{CorrectBody, RawMessage};

/// Most pairs in one `/correct` request.
pub const MAX_PAIRS: usize = crate::serve::api::contract::MAX_CORRECT_PAIRS;

fn pair(
    question: Option<String>,
    msgs: Option<Vec<RawMessage>>,
    answer: String,
    at: &str,
) -> Result<CorrectionInput, ApiError> {
    let question = match (question, msgs) {
        (Some(q), None) => Prompt::Text(q),
        (None, Some(m)) => Prompt::Messages(messages(&m, &format!("{at}messages"))?),
        (Some(_), Some(_)) => {
            return Err(bad(
                &format!("{at}question"),
                "give the question as `question` or as `messages`, not both",
            ));
        }
        (None, None) => {
            return Err(bad(
                &format!("{at}question"),
                "question is required (text, or chat messages as `messages`)",
            ));
        }
    };
    let input = CorrectionInput { question, answer };
    if input.question_text().trim().is_empty() {
        return Err(bad(
            &format!("{at}question"),
            "the question must not be empty",
        ));
    }
    if input.answer.trim().is_empty() {
        return Err(bad(&format!("{at}answer"), "the answer must not be empty"));
    }
    Ok(input)
}

/// Turns the body into pairs and settings, checking every limit before any work.
pub fn validate(
    body: CorrectBody,
    context: usize,
) -> Result<(Vec<CorrectionInput>, SamplingParams, StopConditions), ApiError> {
    if body.stream == Some(true) {
        return Err(bad(
            "stream",
            "streaming is not available on /correct; send stream: false",
        ));
    }
    let single = body.question.is_some() || body.messages.is_some() || body.answer.is_some();
    let inputs = match (single, body.inputs) {
        (true, Some(_)) => {
            return Err(bad(
                "inputs",
                "send either one pair (question, answer) or `inputs`, not both",
            ));
        }
        (true, None) => {
            let answer = body
                .answer
                .ok_or_else(|| bad("answer", "answer is required"))?;
            vec![pair(body.question, body.messages, answer, "")?]
        }
        (false, Some(list)) => {
            if list.is_empty() || list.len() > MAX_PAIRS {
                return Err(bad(
                    "inputs",
                    format!(
                        "inputs must hold 1 to {MAX_PAIRS} pairs, got {}",
                        list.len()
                    ),
                ));
            }
            list.into_iter()
                .enumerate()
                .map(|(i, p)| pair(p.question, p.messages, p.answer, &format!("inputs[{i}].")))
                .collect::<Result<_, _>>()?
        }
        (false, None) => {
            return Err(bad(
                "question",
                "send a pair as {\"question\", \"answer\"} or a batch as {\"inputs\": [...]}",
            ));
        }
    };
    let max_tokens = body.max_tokens.unwrap_or(256);
    if max_tokens == 0 || max_tokens >= context {
        return Err(bad(
            "max_tokens",
            format!(
                "max_tokens must be between 1 and {} (the aligner's context), got {max_tokens}",
                context - 1
            ),
        ));
    }
    let temperature = body.temperature.unwrap_or(0.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(bad(
            "temperature",
            format!("temperature must be between 0 and 2, got {temperature}"),
        ));
    }
    let top_p = body.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(bad(
            "top_p",
            format!("top_p must be in (0, 1], got {top_p}"),
        ));
    }
    let sampling = SamplingParams {
        temperature,
        top_p,
        top_k: body.top_k.unwrap_or(0),
        seed: body.seed.unwrap_or(0),
        ..Default::default()
    };
    let stop = StopConditions {
        max_tokens,
        ..Default::default()
    };
    Ok((inputs, sampling, stop))
}
