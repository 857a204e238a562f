//! The policy server's own tokenizer, for a gateway started without the policy's tokenizer
//! files (`--policy http://...` with no `--policy-tokenizer`): prompts are encoded and
//! answers decoded by the server, and its special tokens and chat template are read from it.
//!
//! ```text
//! llama-server  GET /props               {"bos_token", "eos_token", "chat_template"}
//!               POST /tokenize           {"content", "add_special", "parse_special": true}
//!                                        -> {"tokens": [ids]}
//!               POST /detokenize         {"tokens"} -> {"content"}
//! vLLM, thresh  GET /tokenizer_info      {"bos_token", "eos_token", "chat_template",
//!                                         "added_tokens_decoder": {id: {"special"}},
//!                                         "model_max_length"}  (vLLM:
//!                                         --enable-tokenizer-info-endpoint)
//!               POST /tokenize           {"model", "prompt", "add_special_tokens"}
//!                                        -> {"tokens": [ids]}
//!               POST /detokenize         {"model", "tokens"} -> {"prompt"}
//! ```
//!
//! Both servers decode special tokens as text; [`Tokenizer::decode`](thresh_models::Tokenizer)
//! leaves out the special ids the server told of (its BOS, EOS and, from vLLM and thresh,
//! every added special token) when asked to skip them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use super::fields::token_ids;
use super::wire::{self, Failure};
use super::{Engine, RemotePolicy};
use crate::error::{DecodeError, Result};

/// What a policy server says of its tokenizer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerTokenizer {
    /// Its beginning-of-sequence token's text.
    pub bos_token: Option<String>,
    /// Its end-of-sequence token's text.
    pub eos_token: Option<String>,
    /// Its chat template (Jinja), where it has one.
    pub chat_template: Option<String>,
    /// Every id that ends generation, where it lists them (thresh's `eos_token_ids`).
    pub eos_ids: Vec<u32>,
    /// The ids of its special tokens, where it lists them.
    pub special_ids: Vec<u32>,
    /// Its vocabulary's size, where it says.
    pub vocab_size: Option<usize>,
    /// The longest sequence it takes, where it says.
    pub context: Option<usize>,
}

/// A token's text as the server writes it: a string, or an object with `content`.
fn token_text(v: &Value) -> Option<String> {
    v.as_str()
        .or_else(|| v["content"].as_str())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// Reads vLLM's (and thresh's) `/tokenizer_info`. Its `added_tokens_decoder` maps each id to
/// `{content, special}` (thresh) or, from vLLM, to the token's text alone (its `special` flag
/// lost in vLLM's serialisation): those are all taken as special.
fn openai_info(v: &Value) -> ServerTokenizer {
    let mut special_ids: Vec<u32> = v["added_tokens_decoder"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, t)| t.is_string() || t["special"].as_bool() == Some(true))
                .filter_map(|(id, _)| id.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    special_ids.sort_unstable();
    ServerTokenizer {
        bos_token: token_text(&v["bos_token"]),
        eos_token: token_text(&v["eos_token"]),
        eos_ids: v["eos_token_ids"]
            .as_array()
            .and_then(|ids| token_ids(ids))
            .unwrap_or_default(),
        chat_template: v["chat_template"].as_str().map(str::to_string),
        special_ids,
        vocab_size: v["vocab_size"].as_u64().map(|n| n as usize),
        // Tokenizers without a limit say 1e30.
        context: v["model_max_length"]
            .as_f64()
            .filter(|&n| n > 0.0 && n < u32::MAX as f64)
            .map(|n| n as usize),
    }
}

/// Reads llama-server's `/props` (and its model's `meta.n_vocab` from `/v1/models`).
fn llama_info(props: &Value, models: &Value) -> ServerTokenizer {
    ServerTokenizer {
        bos_token: token_text(&props["bos_token"]),
        eos_token: token_text(&props["eos_token"]),
        eos_ids: Vec::new(),
        chat_template: props["chat_template"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        special_ids: Vec::new(),
        vocab_size: models["data"][0]["meta"]["n_vocab"]
            .as_u64()
            .map(|n| n as usize),
        context: None,
    }
}

/// Whether a failure says the server has no such endpoint.
fn missing(f: &Failure) -> bool {
    matches!(f, Failure::Request(m) if m.starts_with("HTTP 404") || m.starts_with("HTTP 405"))
}

impl RemotePolicy {
    /// What the server says of its tokenizer; an error naming what is missing when it has no
    /// tokenizer endpoints (vLLM without `--enable-tokenizer-info-endpoint`, engines without
    /// `/tokenize`).
    pub fn server_tokenizer(&self) -> Result<ServerTokenizer> {
        let engine = self.engine()?;
        let info = self.with_replicas(0, |url| {
            let root = wire::root(url);
            let key = self.api_key.as_ref();
            match engine {
                Engine::LlamaCpp { .. } => {
                    let props = wire::get_json(&self.agent, &format!("{root}/props"), key)?;
                    let models = wire::get_json(&self.agent, &format!("{root}/v1/models"), key)?;
                    Ok(llama_info(&props, &models))
                }
                Engine::OpenAi => {
                    match wire::get_json(&self.agent, &format!("{root}/tokenizer_info"), key) {
                        Ok(v) => Ok(openai_info(&v)),
                        Err(f) if missing(&f) => Err(Failure::Request(
                            "the server has no GET /tokenizer_info (vLLM serves it with \
                             --enable-tokenizer-info-endpoint)"
                                .into(),
                        )),
                        Err(f) => Err(f),
                    }
                }
            }
        })?;
        // The endpoints that do the work must be there too.
        self.tokenize(&info.eos_token.clone().unwrap_or_else(|| "a".into()), false)?;
        Ok(info)
    }

    /// Token ids of `text`, as the server's tokenizer reads it (special tokens written in
    /// `text` as such).
    pub fn tokenize(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.tokenize_on(0, text, add_special_tokens)
    }

    fn tokenize_on(&self, affinity: u64, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let engine = self.engine()?;
        let body = match engine {
            Engine::LlamaCpp { .. } => json!({
                "content": text, "add_special": add_special, "parse_special": true,
            }),
            Engine::OpenAi => json!({
                "model": self.model, "prompt": text, "add_special_tokens": add_special,
            }),
        };
        self.with_replicas(affinity, |url| {
            let url = format!("{}/tokenize", wire::root(url));
            let v = wire::post_value(&self.agent, &url, self.api_key.as_ref(), &body)
                .map_err(|f| no_endpoint(f, "/tokenize"))?;
            v["tokens"]
                .as_array()
                .and_then(|ids| token_ids(ids))
                .ok_or_else(|| Failure::Request(format!("POST {url}: no `tokens` list of ids")))
        })
    }

    /// Text of `ids`, as the server's tokenizer writes it (special tokens included).
    pub fn detokenize(&self, ids: &[u32]) -> Result<String> {
        self.detokenize_on(0, ids)
    }

    fn detokenize_on(&self, affinity: u64, ids: &[u32]) -> Result<String> {
        let engine = self.engine()?;
        let (body, field) = match engine {
            Engine::LlamaCpp { .. } => (json!({ "tokens": ids }), "content"),
            Engine::OpenAi => (json!({ "model": self.model, "tokens": ids }), "prompt"),
        };
        self.with_replicas(affinity, |url| {
            let url = format!("{}/detokenize", wire::root(url));
            let v = wire::post_value(&self.agent, &url, self.api_key.as_ref(), &body)
                .map_err(|f| no_endpoint(f, "/detokenize"))?;
            v[field]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| Failure::Request(format!("POST {url}: no `{field}` text")))
        })
    }
}

/// A 404 or 405 from `endpoint`, said as its absence.
fn no_endpoint(f: Failure, endpoint: &str) -> Failure {
    if missing(&f) {
        Failure::Request(format!("the server has no POST {endpoint}"))
    } else {
        f
    }
}

/// [`thresh_models::RemoteCodec`] over a policy server's `/tokenize` and `/detokenize`; its
/// calls take the replicas in turn.
pub struct PolicyCodec {
    policy: Arc<RemotePolicy>,
    next: AtomicUsize,
}

impl PolicyCodec {
    /// The codec of `policy`'s servers.
    pub fn new(policy: Arc<RemotePolicy>) -> Self {
        Self {
            policy,
            next: AtomicUsize::new(0),
        }
    }

    fn turn(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) as u64
    }
}

fn model_err(e: DecodeError) -> thresh_models::ModelError {
    thresh_models::ModelError::Tokenizer(e.to_string())
}

impl thresh_models::RemoteCodec for PolicyCodec {
    fn encode(&self, text: &str, add_special_tokens: bool) -> thresh_models::Result<Vec<u32>> {
        self.policy
            .tokenize_on(self.turn(), text, add_special_tokens)
            .map_err(model_err)
    }

    fn decode(&self, ids: &[u32]) -> thresh_models::Result<String> {
        self.policy
            .detokenize_on(self.turn(), ids)
            .map_err(model_err)
    }

    fn describe(&self) -> String {
        format!("the policy server {}", self.policy.urls().join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vllm_tokenizer_info_names_its_specials_and_template() {
        let v = json!({
            "tokenizer_class": "GPT2TokenizerFast",
            "bos_token": "<|im_start|>",
            "eos_token": {"content": "<|im_end|>"},
            "chat_template": "{{ messages }}",
            "model_max_length": 8192,
            "eos_token_ids": [2, 0],
            "added_tokens_decoder": {
                "0": {"content": "<|endoftext|>", "special": true},
                "2": {"content": "<|im_end|>", "special": true},
                "7": {"content": "<extra>", "special": false},
            },
        });
        let info = openai_info(&v);
        assert_eq!(info.special_ids, vec![0, 2]);
        // vLLM 0.32 writes each added token as its text only.
        let v = json!({
            "bos_token": "<|im_start|>",
            "eos_token": {"content": "<|im_end|>"},
            "chat_template": "{{ messages }}",
            "model_max_length": 8192,
            "eos_token_ids": [2, 0],
            "added_tokens_decoder": {"0": "<|endoftext|>", "1": "<|im_start|>", "2": "<|im_end|>"},
        });
        let info = openai_info(&v);
        assert_eq!(info.bos_token.as_deref(), Some("<|im_start|>"));
        assert_eq!(info.eos_token.as_deref(), Some("<|im_end|>"));
        assert_eq!(info.chat_template.as_deref(), Some("{{ messages }}"));
        assert_eq!(info.special_ids, vec![0, 1, 2]);
        assert_eq!(info.eos_ids, vec![2, 0]);
        assert_eq!(info.context, Some(8192));
        let unbounded = openai_info(&json!({"model_max_length": 1e30}));
        assert_eq!(unbounded.context, None);
    }

    #[test]
    fn llama_server_props_name_its_specials_and_template() {
        let props = json!({"bos_token": "<s>", "eos_token": "</s>", "chat_template": ""});
        let models = json!({"data": [{"meta": {"n_vocab": 49152}}]});
        let info = llama_info(&props, &models);
        assert_eq!(info.eos_token.as_deref(), Some("</s>"));
        assert_eq!(info.chat_template, None);
        assert_eq!(info.vocab_size, Some(49152));
    }
}
