//! The tokenizer endpoints' bodies and their part of the OpenAPI document: `POST /tokenize`,
//! `POST /detokenize` and `GET /tokenizer_info`, in vLLM's shapes, so that a thresh gateway
//! (or any client) can use this server's tokenizer without its files.

#![allow(dead_code)]

use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::openai::RawMessage;

/// The body of `/tokenize`: text (`prompt`) or a conversation (`messages`, rendered with the
/// policy's chat template).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizeBody {
    /// The policy's id (optional).
    pub model: Option<String>,
    /// Text to tokenize.
    pub prompt: Option<String>,
    /// Or a conversation, through the chat template.
    pub messages: Option<Vec<RawMessage>>,
    /// Add what the model expects around plain text (a BOS); default: true for `prompt`,
    /// false for `messages` (the template writes its own).
    pub add_special_tokens: Option<bool>,
    /// With `messages`: end with the assistant's turn opened (default true).
    pub add_generation_prompt: Option<bool>,
    /// Also return each token's text.
    pub return_token_strs: Option<bool>,
}

/// The body of `/detokenize`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DetokenizeBody {
    /// The policy's id (optional).
    pub model: Option<String>,
    /// The token ids to write as text (special tokens included); integral numbers (`17.0`)
    /// are read as integers, as JSON Schema counts them.
    #[schema(value_type = Vec<u32>)]
    pub tokens: Vec<super::integers::TokenId>,
}

/// Token ids of text or of a rendered conversation, with the policy's tokenizer.
#[utoipa::path(post, path = "/tokenize", request_body = TokenizeBody,
    responses(
        (status = 200, description = "`{count, max_model_len, tokens, token_strs?}`", body = Object),
    ))]
pub fn tokenize() {}

/// The text of token ids, with the policy's tokenizer.
#[utoipa::path(post, path = "/detokenize", request_body = DetokenizeBody,
    responses((status = 200, description = "`{prompt}`", body = Object)))]
pub fn detokenize() {}

/// The policy's tokenizer: its special tokens, chat template and limits (vLLM's
/// `/tokenizer_info`, with `eos_token_ids`).
#[utoipa::path(get, path = "/tokenizer_info",
    responses((status = 200, body = Object), (status = 503, body = Object)))]
pub fn tokenizer_info() {}

/// The limits of the tokenizer bodies: exactly one of `prompt` and `messages` (a
/// conversation as the chat route takes it, `messages`), ids below the vocabulary.
pub fn refine(schemas: &mut Value, messages: Value, vocab_size: Option<usize>) {
    let body = &mut schemas["TokenizeBody"];
    body["additionalProperties"] = json!(false);
    body["oneOf"] = json!([
        {"required": ["prompt"],
         "properties": {"prompt": {"type": "string"}, "messages": {"type": "null"}}},
        {"required": ["messages"],
         "properties": {"messages": messages, "prompt": {"type": "null"}}},
    ]);
    let body = &mut schemas["DetokenizeBody"];
    body["additionalProperties"] = json!(false);
    let mut id = json!({"type": "integer", "minimum": 0, "maximum": u32::MAX});
    if let Some(v) = vocab_size {
        id["maximum"] = json!(v.saturating_sub(1));
    }
    body["properties"]["tokens"] = json!({"type": "array", "items": id});
}
