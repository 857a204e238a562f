//! `POST /tokenize`, `POST /detokenize` and `GET /tokenizer_info`: the policy's tokenizer in
//! vLLM's shapes (a thresh gateway without the policy's files uses them, as it uses vLLM's).
//! The tokenizer may itself run on a remote policy's server, so each call runs on a blocking
//! worker.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::request::{check_model, parse_body, ready};
use crate::serve::api::errors::ApiError;
use crate::serve::api::tokenize::{DetokenizeBody, TokenizeBody};
use crate::serve::validation::messages::messages;
use crate::serve::validation::model_info::ModelInfo;

type S = State<Arc<AppState>>;

/// A tokenizer failure: the remote server's (502) or this one's (500).
fn failed(info: &ModelInfo) -> impl Fn(thresh_models::ModelError) -> ApiError + '_ {
    move |e| {
        if info.tokenizer.is_remote() {
            ApiError::Upstream(format!("the policy server's tokenizer: {e}"))
        } else {
            ApiError::Internal(format!("tokenizer: {e}"))
        }
    }
}

/// Runs `work` with the model information on a blocking worker, as JSON.
async fn blocking(
    s: &AppState,
    work: impl FnOnce(&ModelInfo) -> Result<Value, ApiError> + Send + 'static,
) -> Response {
    let info = match ready(s) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    match tokio::task::spawn_blocking(move || work(&info)).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => ApiError::Internal("the tokenizer failed".into()).into_response(),
    }
}

/// `POST /tokenize`: the token ids of `prompt`, or of `messages` through the chat template.
pub async fn tokenize(State(s): S, body: Result<Bytes, BytesRejection>) -> Response {
    let body: TokenizeBody = match parse_body(body, s.cfg.max_body_bytes) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    blocking(&s, move |info| {
        check_model(info, body.model.as_deref(), false)?;
        let ids = match (&body.prompt, &body.messages) {
            (Some(text), None) => info
                .tokenizer
                .encode(text, body.add_special_tokens.unwrap_or(true))
                .map_err(failed(info))?,
            (None, Some(raw)) => {
                let msgs = messages(raw, "messages")?;
                let template = info.chat_template.as_ref().ok_or_else(|| {
                    ApiError::param("messages", "this model has no chat template: send prompt")
                })?;
                let text = template
                    .render(&msgs, body.add_generation_prompt.unwrap_or(true))
                    .map_err(|e| {
                        ApiError::param(
                            "messages",
                            format!("the chat template rejected the messages: {e}"),
                        )
                    })?;
                info.tokenizer
                    .encode(&text, body.add_special_tokens.unwrap_or(false))
                    .map_err(failed(info))?
            }
            _ => {
                return Err(ApiError::param(
                    "prompt",
                    "give exactly one of prompt (text) and messages (a conversation)",
                ));
            }
        };
        let mut out = json!({"count": ids.len(), "max_model_len": info.context, "tokens": ids});
        if body.return_token_strs == Some(true) {
            let strs = ids
                .iter()
                .map(|&id| info.tokenizer.decode(&[id], false))
                .collect::<Result<Vec<_>, _>>()
                .map_err(failed(info))?;
            out["token_strs"] = json!(strs);
        }
        Ok(out)
    })
    .await
}

/// `POST /detokenize`: the text of `tokens`, special tokens included.
pub async fn detokenize(State(s): S, body: Result<Bytes, BytesRejection>) -> Response {
    let body: DetokenizeBody = match parse_body(body, s.cfg.max_body_bytes) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    blocking(&s, move |info| {
        check_model(info, body.model.as_deref(), false)?;
        let tokens: Vec<u32> = body.tokens.iter().map(|t| t.0).collect();
        if let Some(vocab) = info.vocab_size
            && let Some((i, id)) = tokens
                .iter()
                .enumerate()
                .find(|&(_, &id)| id as usize >= vocab)
        {
            return Err(ApiError::param(
                format!("tokens[{i}]"),
                format!("token id {id} is outside the vocabulary of {vocab} ids"),
            ));
        }
        let text = info
            .tokenizer
            .decode(&tokens, false)
            .map_err(failed(info))?;
        Ok(json!({ "prompt": text }))
    })
    .await
}

/// `GET /tokenizer_info`: the special tokens (with every id that ends generation), the chat
/// template and the limits, as vLLM's `/tokenizer_info` names them.
pub async fn tokenizer_info(State(s): S) -> Response {
    blocking(&s, |info| {
        let t = &info.tokenizer;
        let specials = t.special_tokens().map_err(failed(info))?;
        let added: serde_json::Map<String, Value> = specials
            .into_iter()
            .map(|(id, content)| (id.to_string(), json!({"content": content, "special": true})))
            .collect();
        Ok(json!({
            "tokenizer_class": "thresh",
            "bos_token": t.bos_token(),
            "eos_token": t.eos_token(),
            "eos_token_ids": t.eos_ids(),
            "chat_template": info.chat_template.as_ref().map(|c| c.source()),
            "model_max_length": info.context,
            "vocab_size": info.vocab_size,
            "added_tokens_decoder": added,
        }))
    })
    .await
}
