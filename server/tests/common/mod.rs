//! Shared helpers of the HTTP tests: tiny random models written on the fly, an in-process
//! server on a loopback port, and SSE parsing.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use thresh_models::config::Family;
use thresh_models::testing::{
    BYTE_TOKENIZER_VOCAB, TinySpec, write_byte_tokenizer, write_tiny_classifier,
};
use thresh_server::serve::{ServeConfig, Server, start, start_on};

/// Serialises the tests of one binary that read or move process-wide metrics (the
/// Prometheus recorder is global, so concurrent servers in one test process share it: one
/// server's engine would overwrite the active-batch gauge another test waits for).
pub static METRICS_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A tiny random policy (byte tokenizer, ChatML template) and a tiny classifier reward.
pub struct TinyModels {
    pub dir: tempfile::TempDir,
    pub policy: PathBuf,
    pub reward: PathBuf,
}

pub fn tiny_models(context: usize) -> TinyModels {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("tiny-policy");
    let reward = dir.path().join("tiny-reward");
    let mut spec = TinySpec::new(Family::Llama);
    spec.vocab_size = BYTE_TOKENIZER_VOCAB;
    spec.max_position_embeddings = context;
    spec.write(&policy).expect("write policy");
    write_byte_tokenizer(&policy).expect("write tokenizer");
    write_tiny_classifier(&TinySpec::new(Family::Llama), &reward, 1).expect("write reward");
    TinyModels {
        dir,
        policy,
        reward,
    }
}

/// Settings for the tiny models on a free loopback port.
pub fn tiny_config(m: &TinyModels) -> ServeConfig {
    let mut cfg = ServeConfig::for_models(m.policy.clone(), m.reward.clone());
    cfg.weights = "dense".into();
    cfg
}

/// Starts a server and waits until its models are loaded.
pub async fn start_ready(cfg: ServeConfig) -> Server {
    wait_ready(start(cfg).await.expect("server starts")).await
}

/// [`start_ready`] on a port held from before (see [`reserve_port`]).
pub async fn start_ready_on(port: tokio::net::TcpSocket, cfg: ServeConfig) -> Server {
    let listener = port.listen(1024).expect("listen on the reserved port");
    wait_ready(start_on(listener, cfg).expect("server starts")).await
}

/// A loopback port held for a server started later: bound, not listening, so connections to
/// it are refused until then and no other test can take it meanwhile.
pub fn reserve_port() -> (tokio::net::TcpSocket, std::net::SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(([127, 0, 0, 1], 0).into())
        .expect("bind a loopback port");
    let addr = socket.local_addr().expect("its address");
    (socket, addr)
}

async fn wait_ready(server: Server) -> Server {
    let t = Instant::now();
    while !server.is_ready() {
        if let Some(e) = server.load_error() {
            panic!("models failed to load: {e}");
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "models did not load"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client")
}

/// The body of a GET (e.g. the `/metrics` page) as text.
pub async fn get_text(c: &reqwest::Client, url: &str) -> String {
    c.get(url)
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body")
}

/// The JSON body of a GET (e.g. `/v1/models`).
pub async fn get_json(c: &reqwest::Client, url: &str) -> Value {
    let text = get_text(c, url).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"))
}

pub fn url(server: &Server, path: &str) -> String {
    format!("http://{}{}", server.addr(), path)
}

/// POSTs JSON; returns status, headers and the parsed body.
pub async fn post(
    c: &reqwest::Client,
    url: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = c.post(url).json(body).send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body");
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, v)
}

/// The SSE lines of a streamed response: data payloads and comments, in order.
#[derive(Debug)]
pub enum Sse {
    Data(String),
    Comment(String),
}

pub async fn post_stream(c: &reqwest::Client, url: &str, body: &Value) -> (u16, Vec<Sse>) {
    let r = c.post(url).json(body).send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("data: ") {
            out.push(Sse::Data(d.to_string()));
        } else if let Some(d) = line.strip_prefix("data:") {
            out.push(Sse::Data(d.to_string()));
        } else if let Some(c) = line.strip_prefix(':') {
            out.push(Sse::Comment(c.trim().to_string()));
        }
    }
    (status, out)
}

/// The JSON data events of a stream, without `[DONE]`; asserts the stream ends with `[DONE]`.
pub fn data_events(events: &[Sse]) -> Vec<Value> {
    let datas: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Sse::Data(d) => Some(d),
            Sse::Comment(_) => None,
        })
        .collect();
    assert_eq!(
        datas.last().map(|s| s.as_str()),
        Some("[DONE]"),
        "stream must end with [DONE]"
    );
    datas[..datas.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("JSON chunk"))
        .collect()
}

/// Reads a counter or gauge from the Prometheus page (sum over label sets matching `filter`).
pub fn metric(page: &str, name: &str, filter: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The token ids of SmolLM2-Instruct's chat prompt for `question` (its default system
/// prompt, the generation prompt), as `tok` encodes them.
pub fn smollm_chat_ids(tok: &thresh_models::Tokenizer, question: &str) -> Vec<u32> {
    tok.encode(
        &format!(
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by \
             Hugging Face<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
        ),
        false,
    )
    .expect("the chat prompt encodes")
}

/// The integers of a JSON list of token ids.
pub fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_u64().expect("a token id"))
        .collect()
}

/// Asks the completions endpoint `at` for 6 tokens with `logprobs: 0` and checks that each
/// comes with a real log-probability (all at most 0, some below).
pub async fn assert_logprobs_when_asked(c: &reqwest::Client, at: &str) {
    let (status, _, v) = post(
        c,
        at,
        &serde_json::json!({"prompt": "The kitchen", "max_tokens": 6, "seed": 1,
                            "logprobs": 0, "ignore_eos": true}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let lps = v["choices"][0]["logprobs"]["token_logprobs"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(lps.len(), 6, "{v}");
    assert!(
        lps.iter().all(|l| l.as_f64().is_some_and(|l| l <= 0.0))
            && lps.iter().any(|l| l.as_f64().is_some_and(|l| l < 0.0)),
        "real log-probabilities: {v}"
    );
}

/// Posts `body` to the chat route at `at` streamed: the text its deltas add up to.
pub async fn streamed_chat_text(c: &reqwest::Client, at: &str, body: &Value) -> String {
    let mut streamed = body.clone();
    streamed["stream"] = Value::Bool(true);
    let (status, events) = post_stream(c, at, &streamed).await;
    assert_eq!(status, 200);
    data_events(&events)
        .iter()
        .filter_map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}
