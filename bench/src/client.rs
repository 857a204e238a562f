//! One request to an OpenAI-compatible server: the body (with thresh's `alignment`
//! extension when asked), streamed or not, and what the client measured and read back.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::dataset::{Input, WorkItem};
use crate::error::BenchError;
use crate::kind::RequestKind;
use crate::sse::SseParser;

/// Which completion route to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// `/v1/completions` with `prompt`.
    Completions,
    /// `/v1/chat/completions` with `messages`.
    Chat,
}

impl Endpoint {
    /// The route's path.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Completions => "/v1/completions",
            Endpoint::Chat => "/v1/chat/completions",
        }
    }
}

/// The server under test.
#[derive(Debug, Clone)]
pub struct Target {
    /// `scheme://host:port` (a trailing `/` or `/v1` given by the user is removed).
    pub base_url: String,
    /// The route.
    pub endpoint: Endpoint,
    /// Sent as `Authorization: Bearer`.
    pub api_key: Option<String>,
    /// The `model` field; `None` leaves it out.
    pub model: Option<String>,
}

/// Strips a trailing `/` and `/v1` and checks the scheme.
pub fn normalize_base_url(url: &str) -> Result<String, BenchError> {
    let mut u = url.trim().trim_end_matches('/').to_string();
    if let Some(s) = u.strip_suffix("/v1") {
        u = s.to_string();
    }
    if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() <= "https://".len() {
        return Err(BenchError::Config(format!(
            "--base-url must look like http://host:port, got {url:?}"
        )));
    }
    Ok(u)
}

/// thresh's `alignment` extension, sent when `strategy` is set.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AlignmentParams {
    /// `best_of_n`, `speculative_rejection`, ...
    pub strategy: Option<String>,
    /// Candidates sampled.
    pub candidates: Option<usize>,
    /// Speculative Rejection's rejection fraction.
    pub alpha: Option<f64>,
    /// Ask for every candidate with its reward.
    #[serde(skip)]
    pub return_candidates: bool,
}

/// Sampling and shape of every request.
#[derive(Debug, Clone)]
pub struct RequestParams {
    /// New tokens per answer at most (a dataset entry's own length wins).
    pub max_tokens: usize,
    /// Stream server-sent events.
    pub stream: bool,
    /// Sampling temperature (`None`: the server's default).
    pub temperature: Option<f64>,
    /// Top-k (`None`: the server's default).
    pub top_k: Option<usize>,
    /// thresh's alignment extension.
    pub alignment: AlignmentParams,
}

/// The JSON body of one request.
pub fn body(
    target: &Target,
    item: &WorkItem,
    params: &RequestParams,
    seed: Option<u64>,
) -> Result<Value, BenchError> {
    let mut b = json!({
        "max_tokens": item.max_tokens.unwrap_or(params.max_tokens),
        "stream": params.stream,
    });
    match (target.endpoint, &item.input) {
        (Endpoint::Completions, Input::Text(t)) => b["prompt"] = json!(t),
        (Endpoint::Completions, Input::Messages(_)) => {
            return Err(BenchError::Config(
                "the dataset holds chat conversations: use --endpoint chat".into(),
            ));
        }
        (Endpoint::Chat, Input::Text(t)) => {
            b["messages"] = json!([{"role": "user", "content": t}]);
        }
        (Endpoint::Chat, Input::Messages(m)) => b["messages"] = json!(m),
    }
    if let Some(m) = &target.model {
        b["model"] = json!(m);
    }
    if params.stream {
        b["stream_options"] = json!({"include_usage": true});
    }
    if item.ignore_eos {
        b["ignore_eos"] = json!(true);
    }
    if let Some(t) = params.temperature {
        b["temperature"] = json!(t);
    }
    if let Some(k) = params.top_k {
        b["top_k"] = json!(k);
    }
    if let Some(s) = seed {
        b["seed"] = json!(s);
    }
    let a = &params.alignment;
    if a.strategy.is_some() || a.candidates.is_some() || a.alpha.is_some() {
        let mut al = json!({});
        if let Some(s) = &a.strategy {
            al["strategy"] = json!(s);
        }
        if let Some(c) = a.candidates {
            al["candidates"] = json!(c);
        }
        if let Some(x) = a.alpha {
            al["alpha"] = json!(x);
        }
        if a.return_candidates {
            al["return_candidates"] = json!(true);
        }
        b["alignment"] = al;
    }
    Ok(b)
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The HTTP status (`None`: no response, e.g. the connection failed; 200: the stream
    /// carried an error).
    pub status: Option<u16>,
    /// The server's error message or the transport error.
    pub message: String,
}

/// What one request gave.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When it was sent, seconds from the start of the run.
    pub sent_at: f64,
    /// End-to-end latency in seconds.
    pub latency: f64,
    /// Time to the first output text in seconds (streamed requests).
    pub ttft: Option<f64>,
    /// Gaps between successive output chunks in seconds.
    pub itl: Vec<f64>,
    /// Arrival times of output chunks, seconds from the start of the run.
    pub chunk_times: Vec<f64>,
    /// Output tokens (the server's `usage`, else the number of output chunks).
    pub output_tokens: usize,
    /// Prompt tokens from `usage`.
    pub prompt_tokens: Option<usize>,
    /// Whether the server reported `usage`.
    pub has_usage: bool,
    /// The reward of the first returned answer (thresh).
    pub reward: Option<f64>,
    /// The response's `alignment` object (thresh).
    pub alignment: Option<Value>,
    /// The answer's text.
    pub text: String,
    /// `None` on success.
    pub failure: Option<Failure>,
    /// The request's kind in a `--mix` run (`None`: a single-kind run).
    pub kind: Option<RequestKind>,
    /// The client dropped the request on purpose (`--mix ...,cancel=w`): neither completed
    /// nor failed.
    pub cancelled: bool,
}

impl Outcome {
    fn new(sent_at: f64) -> Self {
        Self {
            sent_at,
            latency: 0.0,
            ttft: None,
            itl: Vec::new(),
            chunk_times: Vec::new(),
            output_tokens: 0,
            prompt_tokens: None,
            has_usage: false,
            reward: None,
            alignment: None,
            text: String::new(),
            failure: None,
            kind: None,
            cancelled: false,
        }
    }

    /// Time per output token after the first, in seconds.
    pub fn tpot(&self) -> Option<f64> {
        let ttft = self.ttft?;
        (self.output_tokens > 1).then(|| (self.latency - ttft) / (self.output_tokens - 1) as f64)
    }
}

/// Builds the HTTP client: no redirects and no proxy from the environment (only the given
/// address is ever contacted) and a per-request timeout.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, BenchError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .pool_max_idle_per_host(1024)
        .build()
        .map_err(|e| BenchError::Client(e.to_string()))
}

/// A transport error with its causes, on one line.
pub fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        e.to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

fn error_message(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => match v["error"]["message"].as_str().or(v["error"].as_str()) {
            Some(m) => m.to_string(),
            None => v.to_string().chars().take(200).collect(),
        },
        Err(_) => text.trim().chars().take(200).collect(),
    }
}

fn read_usage(o: &mut Outcome, usage: &Value) {
    if let Some(c) = usage["completion_tokens"].as_u64() {
        o.output_tokens = c as usize;
        o.has_usage = true;
    }
    o.prompt_tokens = usage["prompt_tokens"].as_u64().map(|p| p as usize);
}

fn choice_text(choice: &Value) -> Option<&str> {
    choice["text"]
        .as_str()
        .or(choice["delta"]["content"].as_str())
        .or(choice["message"]["content"].as_str())
}

/// Sends one request and measures it. `run_start` anchors the times in the outcome.
pub async fn send(
    client: &reqwest::Client,
    target: &Target,
    body: &Value,
    run_start: Instant,
) -> Outcome {
    let t0 = Instant::now();
    let mut o = Outcome::new(t0.duration_since(run_start).as_secs_f64());
    let url = format!("{}{}", target.base_url, target.endpoint.path());
    let mut req = client.post(&url).json(body);
    if let Some(k) = &target.api_key {
        req = req.bearer_auth(k);
    }
    let result = match req.send().await {
        Err(e) => Err(Failure {
            status: None,
            message: describe(&e),
        }),
        Ok(resp) if resp.status().as_u16() != 200 => {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            Err(Failure {
                status: Some(status),
                message: error_message(&text),
            })
        }
        Ok(resp) => {
            if body["stream"] == json!(true) {
                read_stream(resp, &mut o, t0, run_start).await
            } else {
                read_whole(resp, &mut o).await
            }
        }
    };
    o.latency = t0.elapsed().as_secs_f64();
    o.failure = result.err();
    o
}

/// Sends one streamed request and drops it, on purpose, after its first stream event or
/// after `within`, whichever comes first (the connection is closed, so the server sees the
/// client go away). The outcome is `cancelled` unless the server answered with an error
/// status or an error event before that, which is a failure as usual.
pub async fn send_cancelled(
    client: &reqwest::Client,
    target: &Target,
    body: &Value,
    run_start: Instant,
    within: Duration,
) -> Outcome {
    let t0 = Instant::now();
    let mut o = Outcome::new(t0.duration_since(run_start).as_secs_f64());
    let url = format!("{}{}", target.base_url, target.endpoint.path());
    let mut req = client.post(&url).json(body);
    if let Some(k) = &target.api_key {
        req = req.bearer_auth(k);
    }
    let until_first_event = async {
        let resp = req.send().await.map_err(|e| Failure {
            status: None,
            message: describe(&e),
        })?;
        let status = resp.status().as_u16();
        if status != 200 {
            let text = resp.text().await.unwrap_or_default();
            return Err(Failure {
                status: Some(status),
                message: error_message(&text),
            });
        }
        let mut parser = SseParser::new();
        let mut stream = resp.bytes_stream();
        loop {
            match stream.next().await {
                None => {
                    return Err(Failure {
                        status: Some(200),
                        message: "the stream ended before its first event".into(),
                    });
                }
                Some(Err(e)) => {
                    return Err(Failure {
                        status: Some(200),
                        message: format!("the stream broke: {}", describe(&e)),
                    });
                }
                Some(Ok(b)) => {
                    if let Some(ev) = parser.feed(&b).into_iter().next() {
                        if serde_json::from_str::<Value>(&ev)
                            .is_ok_and(|v| v.get("error").is_some())
                        {
                            return Err(Failure {
                                status: Some(200),
                                message: error_message(&ev),
                            });
                        }
                        // Dropping the stream here closes the connection mid-answer.
                        return Ok(());
                    }
                }
            }
        }
    };
    let result = match tokio::time::timeout(within, until_first_event).await {
        Err(_) => Ok(()),
        Ok(r) => r,
    };
    o.latency = t0.elapsed().as_secs_f64();
    match result {
        Ok(()) => o.cancelled = true,
        Err(f) => o.failure = Some(f),
    }
    o
}

async fn read_whole(resp: reqwest::Response, o: &mut Outcome) -> Result<(), Failure> {
    let text = resp.text().await.map_err(|e| Failure {
        status: Some(200),
        message: describe(&e),
    })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| Failure {
        status: Some(200),
        message: format!("the response is not JSON: {e}"),
    })?;
    let choice = &v["choices"][0];
    o.text = choice_text(choice).unwrap_or_default().to_string();
    o.reward = choice["reward"].as_f64();
    if v["alignment"].is_object() {
        o.alignment = Some(v["alignment"].clone());
    }
    read_usage(o, &v["usage"]);
    Ok(())
}

async fn read_stream(
    resp: reqwest::Response,
    o: &mut Outcome,
    t0: Instant,
    run_start: Instant,
) -> Result<(), Failure> {
    let mut parser = SseParser::new();
    let mut stream = resp.bytes_stream();
    let mut done = false;
    let mut finished = false;
    let mut chunks = 0usize;
    let mut last: Option<Instant> = None;
    let mut events = Vec::new();
    loop {
        let bytes = match stream.next().await {
            None => {
                events.extend(parser.finish());
                None
            }
            Some(Err(e)) => {
                return Err(Failure {
                    status: Some(200),
                    message: format!("the stream broke: {}", describe(&e)),
                });
            }
            Some(Ok(b)) => Some(b),
        };
        if let Some(b) = &bytes {
            events.extend(parser.feed(b));
        }
        let now = Instant::now();
        for ev in events.drain(..) {
            if ev == "[DONE]" {
                done = true;
                continue;
            }
            let v: Value = serde_json::from_str(&ev).map_err(|e| Failure {
                status: Some(200),
                message: format!("a stream event is not JSON: {e}"),
            })?;
            if v.get("error").is_some() {
                return Err(Failure {
                    status: Some(200),
                    message: error_message(&ev),
                });
            }
            if v["usage"].is_object() {
                read_usage(o, &v["usage"]);
            }
            if v["alignment"].is_object() {
                o.alignment = Some(v["alignment"].clone());
            }
            let Some(choices) = v["choices"].as_array() else {
                continue;
            };
            for c in choices {
                if c["index"].as_u64().unwrap_or(0) != 0 {
                    continue;
                }
                if let Some(t) = choice_text(c).filter(|t| !t.is_empty()) {
                    o.text.push_str(t);
                    chunks += 1;
                    match last {
                        None => o.ttft = Some(now.duration_since(t0).as_secs_f64()),
                        Some(l) => o.itl.push(now.duration_since(l).as_secs_f64()),
                    }
                    last = Some(now);
                    o.chunk_times
                        .push(now.duration_since(run_start).as_secs_f64());
                }
                if !c["finish_reason"].is_null() {
                    finished = true;
                    if let Some(r) = c["reward"].as_f64() {
                        o.reward = Some(r);
                    }
                }
            }
        }
        if bytes.is_none() {
            break;
        }
    }
    if !o.has_usage {
        o.output_tokens = chunks;
    }
    if !done && !finished {
        return Err(Failure {
            status: Some(200),
            message: "the stream ended before the answer was finished".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(endpoint: Endpoint) -> Target {
        Target {
            base_url: "http://x".into(),
            endpoint,
            api_key: None,
            model: Some("m".into()),
        }
    }

    fn params() -> RequestParams {
        RequestParams {
            max_tokens: 9,
            stream: true,
            temperature: None,
            top_k: None,
            alignment: AlignmentParams {
                strategy: Some("best_of_n".into()),
                candidates: Some(4),
                alpha: None,
                return_candidates: false,
            },
        }
    }

    #[test]
    fn bodies_carry_the_route_shape_and_the_alignment_extension() {
        let item = WorkItem {
            input: Input::Text("hello".into()),
            max_tokens: None,
            ignore_eos: false,
        };
        let c = body(&target(Endpoint::Completions), &item, &params(), Some(3)).unwrap();
        assert_eq!(c["prompt"], "hello");
        assert_eq!(c["max_tokens"], 9);
        assert_eq!(c["seed"], 3);
        assert_eq!(c["model"], "m");
        assert_eq!(c["stream_options"]["include_usage"], true);
        assert_eq!(
            c["alignment"],
            json!({"strategy": "best_of_n", "candidates": 4})
        );
        let h = body(&target(Endpoint::Chat), &item, &params(), None).unwrap();
        assert_eq!(h["messages"], json!([{"role": "user", "content": "hello"}]));
        assert!(h.get("seed").is_none());
        let chat_only = WorkItem {
            input: Input::Messages(vec![]),
            max_tokens: Some(2),
            ignore_eos: true,
        };
        let e = body(&target(Endpoint::Completions), &chat_only, &params(), None).unwrap_err();
        assert!(e.to_string().contains("--endpoint chat"));
        let h = body(&target(Endpoint::Chat), &chat_only, &params(), None).unwrap();
        assert_eq!(
            (h["max_tokens"].clone(), h["ignore_eos"].clone()),
            (json!(2), json!(true))
        );
    }

    #[test]
    fn base_urls_are_normalised_and_checked() {
        assert_eq!(normalize_base_url("http://h:1/v1/").unwrap(), "http://h:1");
        assert_eq!(normalize_base_url("https://h").unwrap(), "https://h");
        assert!(normalize_base_url("h:1").is_err());
        assert!(normalize_base_url("http://").is_err());
    }

    #[test]
    fn tpot_excludes_the_first_token() {
        let mut o = Outcome::new(0.0);
        o.latency = 1.0;
        o.ttft = Some(0.1);
        o.output_tokens = 10;
        assert!((o.tpot().unwrap() - 0.1).abs() < 1e-12);
        o.output_tokens = 1;
        assert_eq!(o.tpot(), None);
    }
}
