//! A policy served elsewhere: any OpenAI-compatible `/v1/completions` that takes token-id
//! prompts and answers with token ids (vLLM's `return_token_ids`; thresh itself), or llama.cpp's
//! `llama-server` through its native `/completion` (the [`Engine`] is told apart by its
//! `GET /v1/models`), so thresh's strategies can run over an inference fleet.
//!
//! [`RemotePolicy`] is the client; [`RemoteBatch`] is a [`RowBatch`](crate::strategy::RowBatch)
//! whose rows grow one round at a time: the first round asks for every row in one request
//! (`n` rows, seed `s`: the backend samples row `r` with `s + r`, as thresh does locally), and
//! later rounds continue each surviving row from its token ids (the prompt plus what it has
//! generated), so nothing is re-tokenised and the backend's prefix cache serves the prefill.
//!
//! # Replicas
//!
//! `--policy http://a:8000/v1,http://b:8000/v1` names several servers of the same model. A
//! request goes to the replica its prompt hashes to (so the rows of one prompt, every round,
//! meet the same prefix cache); a replica that is unreachable or answers 429 or 5xx is left out
//! and the request goes to the next one; a 4xx fails the request, since no replica would
//! answer it better. A replica left out comes back when an active health check
//! ([`RemotePolicy::with_health_checks`]: `GET /v1/models` of each one left out, every few
//! seconds) finds it answering, or, without health checks, after [`DOWN_FOR`]. When every
//! replica is down, they are all tried again. A replica that was down at start-up is taken in
//! only once it passes the start-up check it missed (`admission.rs`). `thresh_policy_replica_up{replica}` is 1 while
//! a replica is in, 0 while it is left out. With a concurrency limit
//! ([`RemotePolicy::with_max_in_flight`], `slots.rs`), a request whose replica is full goes
//! to the next one with room, or waits for a slot.
//!
//! Every request to a replica is counted in `thresh_policy_replica_requests_total{replica,
//! outcome}` (`ok`, `failed`: the replica's fault, `refused`: the request's) and timed in
//! `thresh_policy_replica_request_seconds{replica}`, through the `metrics` facade (the server's
//! `/metrics` exports them).
//!
//! # Wire
//!
//! ```text
//! request:  {"prompt": [ids], "n", "max_tokens", "temperature", "top_p", "seed", "stop"?,
//!            "top_k"?, "min_p"?, "repetition_penalty"?, "frequency_penalty"?,
//!            "presence_penalty"?, "ignore_eos"?, "min_tokens"?, "model"?,
//!            "logprobs": 0 (when log-probabilities are wanted), "return_token_ids": true}
//! response: {"choices": [{"index", "token_ids": [ids], "finish_reason",
//!            "logprobs": {"token_logprobs": [f32]}?}],
//!            "usage": {"prompt_tokens", "completion_tokens",
//!                      "prompt_tokens_details": {"cached_tokens"}?}}
//! ```
//!
//! llama-server's dialect is described in `llama_cpp.rs`: a request for more rows
//! than it has slots is split into requests of at most that many, sent together.
//! Replicas of one policy run one engine and serve one model: the start-up check
//! ([`RemotePolicy::check_fleet`]) asks each of them, and fails naming the one that differs.

mod admission;
mod batch;
mod capabilities;
mod fields;
mod health;
mod llama_cpp;
mod replicas;
mod slots;
mod stream;
mod tokenize;
mod wire;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use batch::RemoteBatch;
use replicas::Replica;
pub use stream::{DeltaSink, StreamDelta};
use thresh_reward::ApiKey;
pub use tokenize::{PolicyCodec, ServerTokenizer};
use wire::Failure;

use crate::error::{DecodeError, Result};
use crate::sampling::SamplingParams;

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a failing replica is left out before it is tried again.
pub const DOWN_FOR: Duration = Duration::from_secs(5);

/// Which dialect a policy server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// OpenAI completions with vLLM's `return_token_ids` (vLLM, thresh).
    OpenAi,
    /// llama.cpp's `llama-server`, through its native `/completion`.
    LlamaCpp {
        /// Its parallel slots (`-np`): the most completions one request may ask for.
        slots: usize,
    },
}

impl Engine {
    /// How its dialect is named in messages.
    fn dialect(self) -> &'static str {
        match self {
            Engine::OpenAi => "OpenAI completions (vLLM, thresh)",
            Engine::LlamaCpp { .. } => "llama-server's /completion",
        }
    }
}

/// An OpenAI-compatible completions server holding the policy, or several replicas of it.
pub struct RemotePolicy {
    replicas: Arc<[Replica]>,
    /// Health checks run (`with_health_checks`): a failed replica waits for one to pass.
    health_checked: bool,
    model: Option<String>,
    api_key: Option<ApiKey>,
    agent: ureq::Agent,
    /// The fleet's engine, once a probe has told.
    engine: Mutex<Option<Engine>>,
    /// What a replica down at start-up must offer to be taken in, once the start-up check
    /// ([`RemotePolicy::check_fleet`]) has run.
    admission: Arc<Mutex<Option<admission::Admission>>>,
    /// Generation requests out to each replica, under the concurrency limit.
    slots: slots::Slots,
    /// Per-request timeout, also the longest wait for a slot.
    timeout: Duration,
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
    /// Which replica to prefer: requests with the same key go to the same one (a hash of the
    /// request's original prompt, [`affinity`]).
    pub affinity: u64,
}

/// `call` on each of `items`, each on its own thread, the results in order.
fn in_parallel<I: Sync, T: Send>(
    items: &[I],
    call: impl Fn(&I) -> Result<T> + Sync,
) -> Vec<Result<T>> {
    std::thread::scope(|s| {
        let call = &call;
        let handles: Vec<_> = items.iter().map(|i| s.spawn(move || call(i))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(DecodeError::InvalidParameter(
                        "a remote policy request panicked".into(),
                    ))
                })
            })
            .collect()
    })
}

/// The answers of the requests one request was split into, as one answer for `n`
/// continuations.
fn merge(answers: Vec<Result<CompletionAnswer>>, n: usize) -> Result<CompletionAnswer> {
    let mut all = CompletionAnswer {
        choices: Vec::with_capacity(n),
        prompt_tokens: 0,
        cached_tokens: 0,
    };
    for answer in answers {
        let answer = answer?;
        all.choices.extend(answer.choices);
        all.prompt_tokens += answer.prompt_tokens;
        all.cached_tokens += answer.cached_tokens;
    }
    Ok(all)
}

/// The affinity key of a prompt: requests continuing it (its rows, every round) share it.
pub fn affinity(prompt: &[u32]) -> u64 {
    // FNV-1a: stable across processes and versions, unlike the std hasher.
    prompt.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &t| {
        let mut h = h;
        for b in t.to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        h
    })
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
    /// Its context, where it says (vLLM's and thresh's `max_model_len`, llama-server's
    /// per-slot `n_ctx`).
    pub max_model_len: Option<usize>,
    /// The dialect it speaks.
    pub engine: Engine,
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
    /// A client of the server at `url` (`http(s)://host:port`, `.../v1` or the full
    /// `.../v1/completions` endpoint), or of several replicas given as a comma list.
    pub fn new(url: &str) -> Result<Self> {
        let replicas = url
            .split(',')
            .filter(|u| !u.trim().is_empty())
            .map(|u| {
                wire::endpoint(u)
                    .map(Replica::new)
                    .map_err(|message| DecodeError::Remote {
                        url: u.trim().to_string(),
                        message,
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        if replicas.is_empty() {
            return Err(DecodeError::Remote {
                url: url.to_string(),
                message: "no server URL given".into(),
            });
        }
        let n = replicas.len();
        Ok(Self {
            replicas: replicas.into(),
            health_checked: false,
            model: None,
            api_key: None,
            agent: wire::agent(DEFAULT_TIMEOUT),
            engine: Mutex::new(None),
            admission: Arc::default(),
            slots: slots::Slots::new(n, None),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// A client of the one replica at `url` (an endpoint already checked), for the start-up
    /// check of each replica: no health checks, no concurrency limit.
    fn alone(
        url: String,
        model: Option<String>,
        api_key: Option<ApiKey>,
        agent: ureq::Agent,
        engine: Option<Engine>,
    ) -> Self {
        Self {
            replicas: Arc::from(vec![Replica::new(url)]),
            health_checked: false,
            model,
            api_key,
            agent,
            engine: Mutex::new(engine),
            admission: Arc::default(),
            slots: slots::Slots::new(1, None),
            timeout: DEFAULT_TIMEOUT,
        }
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
        self.timeout = timeout.max(Duration::from_millis(1));
        self.agent = wire::agent(self.timeout);
        self
    }

    /// Sends each replica at most `limit` generation requests at once: a request whose
    /// replica is full goes to the next one with room, or waits for a slot (up to the
    /// timeout) when all are full. Without it (the default) there is no limit.
    pub fn with_max_in_flight(mut self, limit: usize) -> Self {
        self.slots = slots::Slots::new(self.replicas.len(), Some(limit));
        self
    }

    /// The first replica's completions endpoint.
    pub fn url(&self) -> &str {
        &self.replicas[0].url
    }

    /// Every replica's completions endpoint.
    pub fn urls(&self) -> Vec<&str> {
        self.replicas.iter().map(|r| r.url.as_str()).collect()
    }

    /// Asks the servers for their models (`GET .../v1/models`): whether one is up, the model
    /// to name (the one set with [`RemotePolicy::with_model`] must be listed) and its context.
    pub fn probe(&self) -> Result<ServerInfo> {
        let info = self.with_replicas(0, |url| self.models(url))?;
        self.learn(&info);
        Ok(info)
    }

    /// `GET .../v1/models` of the replica at `url`, for the model named (or its first).
    fn models(&self, url: &str) -> std::result::Result<ServerInfo, Failure> {
        wire::models(
            &self.agent,
            url,
            self.api_key.as_ref(),
            self.model.as_deref(),
        )
    }

    /// Remembers the engine a probe found.
    fn learn(&self, info: &ServerInfo) {
        if let Ok(mut e) = self.engine.lock() {
            *e = Some(info.engine);
        }
    }

    /// The fleet's engine: the last probe's, or a probe's now.
    pub fn engine(&self) -> Result<Engine> {
        if let Some(e) = self.engine.lock().ok().and_then(|e| *e) {
            return Ok(e);
        }
        Ok(self.probe()?.engine)
    }

    /// [`RemotePolicy::probe`], waiting up to `wait` while no replica is up yet (refused,
    /// loading: 503), as when a fleet starts together; a refusal (4xx, an unknown model) fails
    /// at once.
    pub fn probe_waiting(&self, wait: Duration) -> Result<ServerInfo> {
        let deadline = Instant::now() + wait;
        loop {
            match self.try_replicas(0, |url| self.models(url)) {
                Ok(info) => {
                    self.learn(&info);
                    return Ok(info);
                }
                Err(f) if f.replicas_down && Instant::now() < deadline => {
                    tracing::info!(url = f.url, "waiting for the policy server: {}", f.message);
                    std::thread::sleep(Duration::from_secs(1).min(wait));
                }
                Err(f) => return Err(f.into_error()),
            }
        }
    }

    /// Sends one completions request (to another replica when the first fails); to
    /// llama-server, as requests of at most its slots, sent together.
    pub fn complete(&self, req: &CompletionRequest<'_>) -> Result<CompletionAnswer> {
        let engine = self.engine()?;
        let slots = match engine {
            Engine::OpenAi => {
                let body = wire::body(req, self.model.as_deref());
                return self.send(engine, &body, req.n, req.affinity);
            }
            Engine::LlamaCpp { slots } => slots,
        };
        let chunks = llama_cpp::chunks(req, slots)?;
        let send = |(_, n, body): &(usize, usize, serde_json::Value)| {
            self.send(engine, body, *n, req.affinity)
        };
        let answers = if chunks.len() == 1 {
            vec![send(&chunks[0])]
        } else {
            in_parallel(&chunks, send)
        };
        merge(answers, req.n)
    }

    /// POSTs `body` for `n` continuations to the replicas in `affinity`'s order.
    fn send(
        &self,
        engine: Engine,
        body: &serde_json::Value,
        n: usize,
        affinity: u64,
    ) -> Result<CompletionAnswer> {
        self.generating(affinity, |url| {
            wire::post(&self.agent, url, self.api_key.as_ref(), engine, body, n)
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
        assert!(RemotePolicy::new(" , ").is_err());
        let fleet = RemotePolicy::new("http://a/v1, http://b:9").unwrap();
        assert_eq!(
            fleet.urls(),
            ["http://a/v1/completions", "http://b:9/v1/completions"]
        );
    }

    #[test]
    fn a_prompt_keeps_its_replica_and_failed_replicas_go_last() {
        let fleet = RemotePolicy::new("http://a,http://b,http://c").unwrap();
        let key = affinity(&[1, 2, 3]);
        assert_eq!(key, affinity(&[1, 2, 3]), "stable");
        assert_ne!(key, affinity(&[1, 2, 4]));
        let first = fleet.order(key);
        assert_eq!(first.len(), 3);
        assert_eq!(fleet.order(key), first, "the same replica every time");
        fleet.mark(first[0], true);
        let after = fleet.order(key);
        assert_eq!(after[2], first[0], "a failed replica is tried last");
        assert_eq!(&after[..2], &first[1..]);
        fleet.mark(first[0], false);
        assert_eq!(fleet.order(key), first, "back once it answers");
        // Prompts spread over the replicas.
        let starts: std::collections::HashSet<usize> =
            (0..32u32).map(|i| fleet.order(affinity(&[i]))[0]).collect();
        assert_eq!(starts.len(), 3);
    }

    #[test]
    fn answers_are_read_in_index_order_and_checked() {
        let text = r#"{"choices": [
            {"index": 1, "token_ids": [5, 6], "finish_reason": "length"},
            {"index": 0, "token_ids": [7], "finish_reason": "stop",
             "logprobs": {"token_logprobs": [-0.5]}}],
            "usage": {"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": 2}}}"#;
        let a = wire::parse(text, 2).unwrap();
        assert_eq!(a.choices[0].token_ids, [7]);
        assert_eq!(a.choices[0].token_logprobs, [-0.5]);
        assert_eq!(a.choices[0].finish_reason, "stop");
        assert_eq!(a.choices[1].token_logprobs, [0.0, 0.0]);
        assert_eq!((a.prompt_tokens, a.cached_tokens), (3, 2));
        assert!(wire::parse(text, 3).unwrap_err().contains("asked for 3"));
        let no_ids = r#"{"choices": [{"index": 0, "text": "x", "finish_reason": "stop"}]}"#;
        assert!(
            wire::parse(no_ids, 1)
                .unwrap_err()
                .contains("return_token_ids")
        );
        assert!(wire::parse("nope", 1).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn the_body_carries_only_what_differs_from_the_defaults() {
        let sampling = SamplingParams {
            seed: u64::MAX,
            top_k: 5,
            ..Default::default()
        };
        let b = wire::body(
            &CompletionRequest {
                prompt: &[1, 2],
                n: 3,
                max_tokens: 8,
                sampling: &sampling,
                stop: &[],
                ignore_eos: false,
                min_tokens: 0,
                affinity: 0,
            },
            Some("m"),
        );
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
        assert_eq!(b["logprobs"], 0, "log-probabilities by default");
        let quiet = SamplingParams {
            token_logprobs: false,
            ..sampling.clone()
        };
        let b = wire::body(
            &CompletionRequest {
                prompt: &[1, 2],
                n: 1,
                max_tokens: 8,
                sampling: &quiet,
                stop: &[],
                ignore_eos: false,
                min_tokens: 0,
                affinity: 0,
            },
            None,
        );
        assert!(
            b.get("logprobs").is_none(),
            "not asked when not wanted: {b}"
        );
    }
}
