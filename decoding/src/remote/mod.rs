//! A policy served elsewhere: any OpenAI-compatible `/v1/completions` that takes token-id
//! prompts and answers with token ids (vLLM's `return_token_ids`; thresh itself), so thresh's
//! strategies can run over an inference fleet.
//!
//! [`RemotePolicy`] is the client; [`RemoteBatch`] is a [`RowBatch`](crate::strategy::RowBatch)
//! whose rows grow one round at a time: the first round asks for every row in one request
//! (`n` rows, seed `s`: the backend samples row `r` with `s + r`, as thresh does locally), and
//! later rounds continue each surviving row from its token ids (the prompt plus what it has
//! generated), so nothing is re-tokenised and the backend's prefix cache serves the prefill.
//!
//! # Wire
//!
//! ```text
//! request:  {"prompt": [ids], "n", "max_tokens", "temperature", "top_p", "seed", "stop"?,
//!            "top_k"?, "min_p"?, "repetition_penalty"?, "frequency_penalty"?,
//!            "presence_penalty"?, "ignore_eos"?, "min_tokens"?, "model"?,
//!            "logprobs": 0, "return_token_ids": true}
//! response: {"choices": [{"index", "token_ids": [ids], "finish_reason",
//!            "logprobs": {"token_logprobs": [f32]}?}],
//!            "usage": {"prompt_tokens", "completion_tokens",
//!                      "prompt_tokens_details": {"cached_tokens"}?}}
//! ```

mod batch;

use std::time::Duration;

pub use batch::RemoteBatch;
use serde_json::{Value, json};
use thresh_reward::ApiKey;

use crate::error::{DecodeError, Result};
use crate::sampling::SamplingParams;

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest response body read (bytes).
const MAX_BODY: u64 = 64 << 20;

/// An OpenAI-compatible completions server holding the policy.
pub struct RemotePolicy {
    url: String,
    model: Option<String>,
    api_key: Option<ApiKey>,
    agent: ureq::Agent,
}

/// One completions request: continuations of one token-id prompt.
#[derive(Debug, Clone)]
pub struct CompletionRequest<'a> {
    /// The prompt, as token ids of the backend's tokenizer.
    pub prompt: &'a [u32],
    /// Continuations to sample.
    pub n: usize,
    /// New tokens at most, per continuation.
    pub max_tokens: usize,
    /// Sampling settings (continuation `r` of the request is sampled with `seed + r`).
    pub sampling: &'a SamplingParams,
    /// Stop strings.
    pub stop: &'a [String],
    /// Keep going past EOS.
    pub ignore_eos: bool,
    /// New tokens before EOS is allowed.
    pub min_tokens: usize,
}

/// One continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteChoice {
    /// Its token ids.
    pub token_ids: Vec<u32>,
    /// Each token's log-probability (zeros where the server sends none).
    pub token_logprobs: Vec<f32>,
    /// OpenAI's finish reason (`stop` or `length`).
    pub finish_reason: String,
}

/// What the server says about itself (`GET /v1/models`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerInfo {
    /// The first model it lists.
    pub model: String,
    /// Its context, where it says (vLLM's and thresh's `max_model_len`).
    pub max_model_len: Option<usize>,
}

/// A completions answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionAnswer {
    /// The continuations, in index order.
    pub choices: Vec<RemoteChoice>,
    /// Prompt tokens the server read.
    pub prompt_tokens: usize,
    /// Of those, tokens its prefix cache served.
    pub cached_tokens: usize,
}

impl RemotePolicy {
    /// A client of the server at `url`: `http(s)://host:port`, `.../v1` or the full
    /// `.../v1/completions` endpoint.
    pub fn new(url: &str) -> Result<Self> {
        let url = url.trim().trim_end_matches('/');
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| DecodeError::Remote {
                url: url.to_string(),
                message: "a remote policy URL starts with http:// or https://".into(),
            })?;
        if rest.split(['/', '?', '#']).next().unwrap_or("").is_empty() {
            return Err(DecodeError::Remote {
                url: url.to_string(),
                message: "the URL has no host".into(),
            });
        }
        let endpoint = if url.ends_with("/completions") {
            url.to_string()
        } else if url.ends_with("/v1") {
            format!("{url}/completions")
        } else {
            format!("{url}/v1/completions")
        };
        Ok(Self {
            url: endpoint,
            model: None,
            api_key: None,
            agent: agent(DEFAULT_TIMEOUT),
        })
    }

    /// Names the model in every request (servers hosting several need it).
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Sends `Authorization: Bearer KEY` with every request.
    pub fn with_api_key(mut self, key: ApiKey) -> Self {
        self.api_key = (!key.expose().is_empty()).then_some(key);
        self
    }

    /// Sets the per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.agent = agent(timeout.max(Duration::from_millis(1)));
        self
    }

    /// The completions endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn error(&self, message: impl Into<String>) -> DecodeError {
        DecodeError::Remote {
            url: self.url.clone(),
            message: message.into(),
        }
    }

    /// The request body.
    fn body(&self, req: &CompletionRequest<'_>) -> Value {
        let s = req.sampling;
        let mut body = json!({
            "prompt": req.prompt,
            "n": req.n,
            "max_tokens": req.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            // The server reads the seed as a signed 64-bit integer and back.
            "seed": s.seed as i64,
            "logprobs": 0,
            "return_token_ids": true,
        });
        let optional = [
            ("model", self.model.as_ref().map(|m| json!(m))),
            ("stop", (!req.stop.is_empty()).then(|| json!(req.stop))),
            ("top_k", (s.top_k > 0).then(|| json!(s.top_k))),
            ("min_p", (s.min_p > 0.0).then(|| json!(s.min_p))),
            (
                "repetition_penalty",
                (s.repetition_penalty != 1.0).then(|| json!(s.repetition_penalty)),
            ),
            (
                "frequency_penalty",
                (s.frequency_penalty != 0.0).then(|| json!(s.frequency_penalty)),
            ),
            (
                "presence_penalty",
                (s.presence_penalty != 0.0).then(|| json!(s.presence_penalty)),
            ),
            ("ignore_eos", req.ignore_eos.then_some(json!(true))),
            (
                "min_tokens",
                (req.min_tokens > 0).then(|| json!(req.min_tokens)),
            ),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                body[key] = v;
            }
        }
        body
    }

    /// Asks the server for its models (`GET .../v1/models`): whether it is up, the model to
    /// name (the one set with [`RemotePolicy::with_model`] must be listed) and its context.
    pub fn probe(&self) -> Result<ServerInfo> {
        let url = format!("{}/models", self.url.trim_end_matches("/completions"));
        let mut request = self.agent.get(&url).header("accept", "application/json");
        if let Some(key) = &self.api_key {
            request = request.header("authorization", format!("Bearer {}", key.expose()));
        }
        let mut response = request
            .call()
            .map_err(|e| self.error(format!("unreachable: {e}")))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map_err(|e| self.error(format!("reading {url}: {e}")))?;
        if !(200..300).contains(&status) {
            let snippet: String = text.chars().take(300).collect();
            return Err(self.error(format!("GET {url}: HTTP {status}: {snippet}")));
        }
        let v: Value =
            serde_json::from_str(&text).map_err(|e| self.error(format!("GET {url}: {e}")))?;
        let models = v["data"].as_array().cloned().unwrap_or_default();
        let pick = match &self.model {
            Some(name) => models.iter().find(|m| m["id"].as_str() == Some(name)),
            None => models.first(),
        };
        let Some(m) = pick else {
            let listed: Vec<&str> = models.iter().filter_map(|m| m["id"].as_str()).collect();
            return Err(self.error(match &self.model {
                Some(name) => format!("the server does not serve `{name}`; it lists {listed:?}"),
                None => "the server lists no model".into(),
            }));
        };
        Ok(ServerInfo {
            model: m["id"].as_str().unwrap_or_default().to_string(),
            max_model_len: m["max_model_len"].as_u64().map(|x| x as usize),
        })
    }

    /// Sends one completions request.
    pub fn complete(&self, req: &CompletionRequest<'_>) -> Result<CompletionAnswer> {
        let mut request = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json");
        if let Some(key) = &self.api_key {
            request = request.header("authorization", format!("Bearer {}", key.expose()));
        }
        let mut response = request
            .send(self.body(req).to_string())
            .map_err(|e| self.error(format!("unreachable: {e}")))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map_err(|e| self.error(format!("reading the answer: {e}")))?;
        if !(200..300).contains(&status) {
            let snippet: String = text.chars().take(300).collect();
            return Err(self.error(format!("HTTP {status}: {snippet}")));
        }
        parse(&text, req.n).map_err(|m| self.error(m))
    }
}

/// Reads a completions answer with `n` choices.
fn parse(text: &str, n: usize) -> std::result::Result<CompletionAnswer, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let list = v["choices"]
        .as_array()
        .ok_or("the answer has no `choices` list")?;
    let mut choices: Vec<(usize, RemoteChoice)> = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        let ids = c["token_ids"].as_array().ok_or(
            "the answer has no `token_ids`: the server must support vLLM's return_token_ids \
             (vLLM 0.10.2 or later, or thresh)",
        )?;
        let token_ids = ids
            .iter()
            .map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
            .collect::<Option<Vec<u32>>>()
            .ok_or("`token_ids` holds something that is not a token id")?;
        let token_logprobs = match c["logprobs"]["token_logprobs"].as_array() {
            Some(l) if l.len() == token_ids.len() => {
                l.iter().map(|x| x.as_f64().unwrap_or(0.0) as f32).collect()
            }
            _ => vec![0.0; token_ids.len()],
        };
        let index = c["index"].as_u64().map_or(i, |x| x as usize);
        choices.push((
            index,
            RemoteChoice {
                token_ids,
                token_logprobs,
                finish_reason: c["finish_reason"].as_str().unwrap_or("length").to_string(),
            },
        ));
    }
    choices.sort_by_key(|c| c.0);
    if choices.len() != n {
        return Err(format!(
            "asked for {n} continuations, got {}",
            choices.len()
        ));
    }
    let usage = &v["usage"];
    Ok(CompletionAnswer {
        choices: choices.into_iter().map(|c| c.1).collect(),
        prompt_tokens: usage["prompt_tokens"].as_u64().unwrap_or(0) as usize,
        cached_tokens: usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0) as usize,
    })
}

/// An HTTP agent whose requests end within `timeout` and that hands back error statuses.
fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_completions_endpoint() {
        for (given, want) in [
            ("http://h:8000", "http://h:8000/v1/completions"),
            ("http://h:8000/v1/", "http://h:8000/v1/completions"),
            ("https://h/v1/completions", "https://h/v1/completions"),
        ] {
            assert_eq!(RemotePolicy::new(given).unwrap().url(), want);
        }
        assert!(RemotePolicy::new("h:8000").is_err());
        assert!(RemotePolicy::new("http:///v1").is_err());
    }

    #[test]
    fn answers_are_read_in_index_order_and_checked() {
        let text = r#"{"choices": [
            {"index": 1, "token_ids": [5, 6], "finish_reason": "length"},
            {"index": 0, "token_ids": [7], "finish_reason": "stop",
             "logprobs": {"token_logprobs": [-0.5]}}],
            "usage": {"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": 2}}}"#;
        let a = parse(text, 2).unwrap();
        assert_eq!(a.choices[0].token_ids, [7]);
        assert_eq!(a.choices[0].token_logprobs, [-0.5]);
        assert_eq!(a.choices[0].finish_reason, "stop");
        assert_eq!(a.choices[1].token_logprobs, [0.0, 0.0]);
        assert_eq!((a.prompt_tokens, a.cached_tokens), (3, 2));
        assert!(parse(text, 3).unwrap_err().contains("asked for 3"));
        let no_ids = r#"{"choices": [{"index": 0, "text": "x", "finish_reason": "stop"}]}"#;
        assert!(parse(no_ids, 1).unwrap_err().contains("return_token_ids"));
        assert!(parse("nope", 1).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn the_body_carries_only_what_differs_from_the_defaults() {
        let p = RemotePolicy::new("http://h").unwrap().with_model("m");
        let sampling = SamplingParams {
            seed: u64::MAX,
            top_k: 5,
            ..Default::default()
        };
        let b = p.body(&CompletionRequest {
            prompt: &[1, 2],
            n: 3,
            max_tokens: 8,
            sampling: &sampling,
            stop: &[],
            ignore_eos: false,
            min_tokens: 0,
        });
        assert_eq!(b["prompt"], json!([1, 2]));
        assert_eq!(
            b["seed"],
            json!(-1),
            "u64::MAX travels as -1 and comes back"
        );
        assert_eq!(b["top_k"], 5);
        assert_eq!(b["model"], "m");
        assert_eq!(b["return_token_ids"], true);
        assert!(b.get("stop").is_none() && b.get("min_p").is_none());
    }
}
