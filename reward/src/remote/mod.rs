//! Remote reward over HTTP: [`RemoteReward`] POSTs batches of pairs to a reward model served
//! elsewhere, with a per-request timeout, retries with exponential backoff, and errors that
//! name the URL.
//!
//! # Wire formats ([`RemoteFormat`])
//!
//! **thresh** (`POST /v1/rewards`, thresh's own; thresh's server answers the same shape):
//!
//! ```text
//! request:  {"model": "name"?,                      // optional, omitted when not set
//!            "inputs": [{"prompt": "text" | [{"role": "user", "content": "..."}, ...],
//!                        "response": "text"}, ...]}
//! response: {"scores": [f32, ...]}                   // one per input, in input order
//! ```
//!
//! Prompts travel structured (text or chat messages), so the server renders them with its own
//! model's chat template.
//!
//! **openrlhf** (`POST /get_reward`, OpenRLHF's `serve_rm`): `{"query": ["prompt\n\nresponse",
//! ...]}` answered by `{"rewards": [f32, ...]}`.
//!
//! **vllm** (`POST /classify`, vLLM's classification API): `{"model": "name"?, "input":
//! ["prompt\n\nresponse", ...]}` answered by `{"data": [{"index": i, "probs": [f32, ...]},
//! ...]}`; a pair's score is `probs[0]` (for a one-label reward model, the value vLLM returns
//! for its single logit).
//!
//! The text formats send each pair as [`remote_text`] renders it: the client does not know the
//! remote model's chat template.
//!
//! # Authentication
//!
//! [`RemoteReward::with_api_key`] sends `Authorization: Bearer KEY` with every request. The
//! key is an [`ApiKey`], whose `Debug` and `Display` print `***`, so it reaches no log.
//!
//! # Failures
//!
//! Connection errors (refused, reset), HTTP 429 and HTTP 5xx are retried up to
//! [`RemoteReward::with_retries`] times, waiting `backoff * 2^(attempt - 1)` (at most
//! [`MAX_BACKOFF`]; a 429's `Retry-After` in seconds is honoured up to that cap). A timeout is
//! not retried: the server may still be working on the batch. Other statuses and unusable
//! answers fail at once.

mod format;

use std::time::Duration;

pub use format::{RemoteFormat, remote_text};

use crate::RewardModel;
use crate::error::{Result, RewardError};
use crate::input::{RewardInput, Scored, validate};

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default number of retries after the first attempt.
pub const DEFAULT_RETRIES: u32 = 3;
/// Default wait before the first retry.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Default number of pairs in one request.
pub const DEFAULT_MAX_BATCH: usize = 64;
/// Largest response body read (bytes).
const MAX_BODY: u64 = 64 << 20;

/// A bearer token for a remote server. It prints as `***` (`Debug` and `Display`), so
/// logging a configuration that holds one does not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// The key as sent.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl std::fmt::Display for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for ApiKey {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(Self(s.trim().to_string()))
    }
}

impl From<String> for ApiKey {
    fn from(s: String) -> Self {
        Self(s.trim().to_string())
    }
}

/// A reward model served over HTTP.
pub struct RemoteReward {
    url: String,
    api_key: Option<ApiKey>,
    format: RemoteFormat,
    model: Option<String>,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
    max_batch: usize,
    agent: ureq::Agent,
    name: String,
}

/// Why one attempt failed.
enum Failure {
    /// Worth another attempt.
    Retry {
        status: Option<u16>,
        reason: String,
        wait: Option<Duration>,
    },
    /// Final.
    Fatal(RewardError),
}

impl RemoteReward {
    /// A client of the server at `url` (`http://` or `https://`, the full endpoint path)
    /// speaking `format`, with the default timeout, retries and batch size.
    pub fn new(url: &str, format: RemoteFormat) -> Result<Self> {
        let url = url.trim();
        let spec_err = |reason: String| RewardError::RemoteSpec {
            spec: url.to_string(),
            reason,
        };
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| {
                spec_err("a remote reward URL starts with http:// or https://".into())
            })?;
        if rest.split(['/', '?', '#']).next().unwrap_or("").is_empty() {
            return Err(spec_err("the URL has no host".into()));
        }
        Ok(Self {
            url: url.to_string(),
            api_key: None,
            format,
            model: None,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            backoff: DEFAULT_BACKOFF,
            max_batch: DEFAULT_MAX_BATCH,
            agent: agent(DEFAULT_TIMEOUT),
            name: format!("remote:{url}"),
        })
    }

    /// A client from a command-line specification: the endpoint URL, and the format if given,
    /// else the one the URL's path names (`/v1/rewards`, `/get_reward`, `/classify`).
    pub fn from_spec(url: &str, format: Option<RemoteFormat>) -> Result<Self> {
        let format = match format.or_else(|| RemoteFormat::from_url(url)) {
            Some(f) => f,
            None => {
                return Err(RewardError::RemoteSpec {
                    spec: url.to_string(),
                    reason: "cannot tell the wire format from the path: end it with /v1/rewards, /get_reward or /classify, or name the format (thresh, openrlhf, vllm)".into(),
                });
            }
        };
        Self::new(url, format)
    }

    /// Sends `Authorization: Bearer KEY` with every request (an empty key sends none).
    pub fn with_api_key(mut self, key: ApiKey) -> Self {
        self.api_key = (!key.0.is_empty()).then_some(key);
        self
    }

    /// Sets the per-request timeout (connection, upload and answer together).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self.agent = agent(self.timeout);
        self
    }

    /// Sets how many times a failed request is tried again (connection errors, 429, 5xx).
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Sets the wait before the first retry; it doubles at each further retry.
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the most pairs sent in one request (at least 1).
    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch.max(1);
        self
    }

    /// Sets the model name sent to servers that take one (thresh, vLLM).
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// The endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The wire format.
    pub fn format(&self) -> RemoteFormat {
        self.format
    }

    /// Scores of one request's pairs.
    fn score_chunk(&self, chunk: &[RewardInput]) -> Result<Vec<f32>> {
        let body = self
            .format
            .request(self.model.as_deref(), chunk)
            .to_string();
        let answer = self.post(&body)?;
        self.format
            .parse(&answer, chunk.len())
            .map_err(|reason| RewardError::RemoteResponse {
                url: self.url.clone(),
                format: self.format.name(),
                reason,
            })
    }

    /// POSTs `body`, retrying as the module documentation says, and returns the answer's body.
    fn post(&self, body: &str) -> Result<String> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let failure = match self.attempt(body) {
                Ok(answer) => return Ok(answer),
                Err(f) => f,
            };
            let (status, reason, wait) = match failure {
                Failure::Fatal(mut e) => {
                    if let RewardError::RemoteStatus { attempts, .. }
                    | RewardError::RemoteUnreachable { attempts, .. } = &mut e
                    {
                        *attempts = attempt;
                    }
                    return Err(e);
                }
                Failure::Retry {
                    status,
                    reason,
                    wait,
                } => (status, reason, wait),
            };
            if attempt > self.retries {
                return Err(match status {
                    Some(status) => RewardError::RemoteStatus {
                        url: self.url.clone(),
                        status,
                        attempts: attempt,
                        body: reason,
                    },
                    None => RewardError::RemoteUnreachable {
                        url: self.url.clone(),
                        attempts: attempt,
                        reason,
                    },
                });
            }
            let backoff = self
                .backoff
                .saturating_mul(1u32 << (attempt - 1).min(20))
                .min(MAX_BACKOFF);
            let wait = wait.map_or(backoff, |w| w.min(MAX_BACKOFF));
            tracing::warn!(
                url = %self.url,
                attempt,
                ?status,
                %reason,
                "reward server request failed; retrying in {wait:?}"
            );
            std::thread::sleep(wait);
        }
    }

    /// One request.
    fn attempt(&self, body: &str) -> std::result::Result<String, Failure> {
        let mut request = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json");
        if let Some(key) = &self.api_key {
            request = request.header("authorization", format!("Bearer {}", key.expose()));
        }
        let mut response = request.send(body).map_err(|e| self.failure(e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map_err(|e| self.failure(e))?;
        match status {
            200..=299 => Ok(text),
            429 | 500..=599 => Err(Failure::Retry {
                status: Some(status),
                reason: format::snippet(&text),
                wait: retry_after,
            }),
            _ => Err(Failure::Fatal(RewardError::RemoteStatus {
                url: self.url.clone(),
                status,
                attempts: 1, // `post` sets the real count
                body: format::snippet(&text),
            })),
        }
    }

    /// Sorts a transport error into retryable or final.
    fn failure(&self, e: ureq::Error) -> Failure {
        let timeout = || {
            Failure::Fatal(RewardError::RemoteTimeout {
                url: self.url.clone(),
                timeout: self.timeout,
            })
        };
        match e {
            ureq::Error::Timeout(_) => timeout(),
            ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::TimedOut => timeout(),
            ureq::Error::Io(_) | ureq::Error::ConnectionFailed => Failure::Retry {
                status: None,
                reason: e.to_string(),
                wait: None,
            },
            ureq::Error::BodyExceedsLimit(_) => Failure::Fatal(RewardError::RemoteResponse {
                url: self.url.clone(),
                format: self.format.name(),
                reason: format!("the body is larger than {MAX_BODY} bytes"),
            }),
            other => Failure::Fatal(RewardError::RemoteUnreachable {
                url: self.url.clone(),
                attempts: 1, // `post` sets the real count
                reason: other.to_string(),
            }),
        }
    }
}

/// An HTTP agent whose every request ends within `timeout`, and that hands back error
/// statuses as responses so that their bodies can be reported.
fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

impl RewardModel for RemoteReward {
    fn name(&self) -> &str {
        &self.name
    }

    /// Scores in requests of at most the batch size, one after the other. `tokens` is 0 and
    /// `truncated` false: the server does not report them.
    fn score(&self, inputs: &[RewardInput]) -> Result<Vec<Scored>> {
        validate(inputs)?;
        let mut out = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(self.max_batch) {
            out.extend(self.score_chunk(chunk)?.into_iter().map(|score| Scored {
                score,
                tokens: 0,
                truncated: false,
            }));
        }
        Ok(out)
    }
}
