//! The remote reward backend against real HTTP servers on loopback: a small axum server that
//! speaks each wire format and scores with the real all-MiniLM-L6-v2 relevance reward, so
//! remote scores must equal the same reward run in process; plus a closed port, a slow
//! server, a server that fails before it succeeds, and servers that answer garbage.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use thresh_models::{ChatMessage, LoadOptions};
use thresh_reward::{
    Prompt, RelevanceReward, RemoteFormat, RemoteReward, RewardError, RewardInput, RewardModel,
    load,
};

/// The in-process scorer the test servers score with.
fn scorer() -> &'static RelevanceReward {
    static SCORER: OnceLock<RelevanceReward> = OnceLock::new();
    SCORER.get_or_init(|| {
        RelevanceReward::load(
            &thresh_models::testing::minilm_dir(),
            &candle_core::Device::Cpu,
        )
        .expect("loading all-MiniLM-L6-v2")
    })
}

/// What the server saw.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    largest_batch: AtomicUsize,
    model: Mutex<Option<String>>,
}

impl Seen {
    fn batch(&self, n: usize) -> usize {
        self.largest_batch.fetch_max(n, Ordering::SeqCst);
        self.requests.fetch_add(1, Ordering::SeqCst)
    }
}

type Shared = State<Arc<Seen>>;

/// Scores `inputs` in process and answers `shape(scores)`, or 500 with the error.
fn answer(inputs: &[RewardInput], shape: impl FnOnce(Vec<f32>) -> Value) -> Response {
    match scorer().score(inputs) {
        Ok(s) => Json(shape(s.iter().map(|s| s.score).collect())).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Splits the `prompt\n\nresponse` text that the text formats send.
fn split_pairs(texts: &[String]) -> Vec<RewardInput> {
    texts
        .iter()
        .map(|t| {
            let (p, r) = t.split_once("\n\n").unwrap_or((t, ""));
            RewardInput::new(p, r)
        })
        .collect()
}

/// One pair of thresh's `/v1/rewards` (the shape `thresh serve` accepts).
#[derive(Deserialize)]
struct ThreshPair {
    prompt: Option<String>,
    messages: Option<Vec<thresh_models::ChatMessage>>,
    response: String,
}

#[derive(Deserialize)]
struct ThreshRequest {
    model: Option<String>,
    input: Vec<ThreshPair>,
}

impl ThreshRequest {
    fn inputs(&self) -> Vec<RewardInput> {
        self.input
            .iter()
            .map(|p| RewardInput {
                prompt: match (&p.prompt, &p.messages) {
                    (_, Some(m)) => thresh_reward::Prompt::Messages(m.clone()),
                    (t, None) => thresh_reward::Prompt::Text(t.clone().unwrap_or_default()),
                },
                response: p.response.clone(),
            })
            .collect()
    }
}

fn thresh_answer(scores: &[f32]) -> Value {
    let data: Vec<Value> = scores
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"index": i, "object": "reward", "score": s}))
        .collect();
    json!({"object": "list", "data": data})
}

async fn thresh(State(seen): Shared, Json(req): Json<ThreshRequest>) -> Response {
    seen.batch(req.input.len());
    let inputs = req.inputs();
    *seen.model.lock().unwrap() = req.model;
    answer(&inputs, |scores| thresh_answer(&scores))
}

#[derive(Deserialize)]
struct OpenRlhfRequest {
    query: Vec<String>,
}

async fn openrlhf(State(seen): Shared, Json(req): Json<OpenRlhfRequest>) -> Response {
    seen.batch(req.query.len());
    answer(
        &split_pairs(&req.query),
        |scores| json!({ "rewards": scores, "scores": scores }),
    )
}

#[derive(Deserialize)]
struct ClassifyRequest {
    model: Option<String>,
    input: Vec<String>,
}

async fn classify(State(seen): Shared, Json(req): Json<ClassifyRequest>) -> Response {
    seen.batch(req.input.len());
    *seen.model.lock().unwrap() = req.model;
    answer(&split_pairs(&req.input), |scores| {
        // Answered in reverse order: the client must place rows by their index.
        let data: Vec<Value> = scores
            .iter()
            .enumerate()
            .rev()
            .map(|(i, s)| json!({"index": i, "label": "LABEL_0", "probs": [s], "num_classes": 1}))
            .collect();
        json!({"object": "list", "data": data})
    })
}

/// 503, then 429 with `Retry-After: 0`, then a real answer.
async fn flaky(seen: Shared, req: Json<ThreshRequest>) -> Response {
    match seen.requests.load(Ordering::SeqCst) {
        0 => {
            seen.requests.fetch_add(1, Ordering::SeqCst);
            (StatusCode::SERVICE_UNAVAILABLE, "warming up").into_response()
        }
        1 => {
            seen.requests.fetch_add(1, Ordering::SeqCst);
            let mut h = HeaderMap::new();
            h.insert("retry-after", "0".parse().unwrap());
            (StatusCode::TOO_MANY_REQUESTS, h, "slow down").into_response()
        }
        _ => thresh(seen, req).await,
    }
}

async fn slow(State(seen): Shared) -> Response {
    seen.batch(0);
    tokio::time::sleep(Duration::from_secs(30)).await;
    Json(thresh_answer(&[0.0])).into_response()
}

async fn garbage(State(seen): Shared) -> Response {
    seen.batch(0);
    (StatusCode::OK, "<html>this is not json").into_response()
}

async fn short(State(seen): Shared, Json(req): Json<ThreshRequest>) -> Response {
    seen.batch(req.input.len());
    let scores = vec![0.5f32; req.input.len().saturating_sub(1)];
    Json(thresh_answer(&scores)).into_response()
}

async fn bad_request(State(seen): Shared) -> Response {
    seen.batch(0);
    (StatusCode::BAD_REQUEST, "no such model").into_response()
}

/// A server on a loopback port of its own, stopped when dropped.
struct Server {
    base: String,
    seen: Arc<Seen>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Server {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let seen = Arc::new(Seen::default());
        let app = Router::new()
            .route("/v1/rewards", post(thresh))
            .route("/get_reward", post(openrlhf))
            .route("/classify", post(classify))
            .route("/flaky/v1/rewards", post(flaky))
            .route("/slow/v1/rewards", post(slow))
            .route("/garbage/v1/rewards", post(garbage))
            .route("/short/v1/rewards", post(short))
            .route("/bad/v1/rewards", post(bad_request))
            .with_state(seen.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move { axum::serve(listener, app).await });
        Self {
            base: format!("http://{addr}"),
            seen,
            rt: Some(rt),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn requests(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn pairs() -> Vec<RewardInput> {
    vec![
        RewardInput::new(
            "What is the capital of France?",
            "The capital of France is Paris.",
        ),
        RewardInput::new(
            "What is the capital of France?",
            "Bananas are rich in potassium.",
        ),
        RewardInput::new(
            "How do I boil an egg?",
            "Put the egg in boiling water for nine minutes.",
        ),
        RewardInput {
            prompt: Prompt::Messages(vec![
                ChatMessage::new("system", "You are a helpful gardener."),
                ChatMessage::new("user", "When should I water tomatoes?"),
            ]),
            response: "Water tomatoes early in the morning, at the base of the plant.".into(),
        },
        RewardInput::new("Name a prime number.", "Seven is a prime number"),
    ]
}

fn local_scores(inputs: &[RewardInput]) -> Vec<f32> {
    scorer()
        .score(inputs)
        .unwrap()
        .iter()
        .map(|s| s.score)
        .collect()
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 1e-5, "pair {i}: remote {g}, in process {w}");
    }
}

fn remote_scores(rm: &dyn RewardModel, inputs: &[RewardInput]) -> Vec<f32> {
    rm.score(inputs).unwrap().iter().map(|s| s.score).collect()
}

#[test]
fn thresh_format_round_trips_in_batches() {
    let server = Server::start();
    let rm = RemoteReward::new(&server.url("/v1/rewards"), RemoteFormat::Thresh)
        .unwrap()
        .with_max_batch(2)
        .with_model("minilm");
    let inputs = pairs();
    let got = remote_scores(&rm, &inputs);
    assert_close(&got, &local_scores(&inputs));
    // On-topic beats off-topic through the wire as in process.
    assert!(got[0] > got[1]);
    assert_eq!(server.requests(), 3, "5 pairs in requests of at most 2");
    assert_eq!(server.seen.largest_batch.load(Ordering::SeqCst), 2);
    assert_eq!(server.seen.model.lock().unwrap().as_deref(), Some("minilm"));
}

#[test]
fn openrlhf_format_round_trips_through_load() {
    let server = Server::start();
    let url = server.url("/get_reward");
    let rm = load(Path::new(&url), None, &LoadOptions::default()).unwrap();
    assert_eq!(rm.name(), format!("remote:{url}"));
    let inputs = pairs();
    assert_close(&remote_scores(rm.as_ref(), &inputs), &local_scores(&inputs));
    assert_eq!(server.requests(), 1);
}

#[test]
fn vllm_classify_format_round_trips() {
    let server = Server::start();
    let rm = RemoteReward::from_spec(&server.url("/classify"), None)
        .unwrap()
        .with_max_batch(4);
    assert_eq!(rm.format(), RemoteFormat::VllmClassify);
    let inputs = pairs();
    assert_close(&remote_scores(&rm, &inputs), &local_scores(&inputs));
    assert_eq!(server.requests(), 2);
    assert_eq!(*server.seen.model.lock().unwrap(), None);
}

#[test]
fn server_down_is_a_clear_error() {
    // A port that was just free: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1/rewards");
    let rm = RemoteReward::from_spec(&url, None)
        .unwrap()
        .with_retries(2)
        .with_backoff(Duration::from_millis(10));
    let start = Instant::now();
    let err = rm.score(&pairs()).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(30), "hang guard");
    assert!(
        matches!(err, RewardError::RemoteUnreachable { attempts: 3, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&url) && msg.contains("unreachable"),
        "unclear: {msg}"
    );
}

#[test]
fn slow_server_times_out() {
    let server = Server::start();
    let url = server.url("/slow/v1/rewards");
    let rm = RemoteReward::from_spec(&url, None)
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let start = Instant::now();
    let err = rm.score(&pairs()).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(25), "hang guard");
    assert!(matches!(err, RewardError::RemoteTimeout { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
    assert_eq!(server.requests(), 1, "a timeout is not retried");
}

#[test]
fn unavailable_and_rate_limited_answers_are_retried() {
    let server = Server::start();
    let rm = RemoteReward::from_spec(&server.url("/flaky/v1/rewards"), None)
        .unwrap()
        .with_backoff(Duration::from_millis(10));
    let inputs = pairs();
    assert_close(&remote_scores(&rm, &inputs), &local_scores(&inputs));
    assert_eq!(server.requests(), 3, "503, 429, then the answer");
}

#[test]
fn retries_run_out_with_the_last_status() {
    let server = Server::start();
    let url = server.url("/flaky/v1/rewards");
    let rm = RemoteReward::from_spec(&url, None)
        .unwrap()
        .with_retries(1)
        .with_backoff(Duration::from_millis(10));
    let err = rm.score(&pairs()).unwrap_err();
    assert!(
        matches!(
            err,
            RewardError::RemoteStatus {
                status: 429,
                attempts: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("slow down"), "{err}");
}

#[test]
fn client_errors_are_not_retried() {
    let server = Server::start();
    let url = server.url("/bad/v1/rewards");
    let rm = RemoteReward::from_spec(&url, None)
        .unwrap()
        .with_backoff(Duration::from_millis(10));
    let err = rm.score(&pairs()).unwrap_err();
    assert!(
        matches!(err, RewardError::RemoteStatus { status: 400, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&url) && msg.contains("no such model"), "{msg}");
    assert_eq!(server.requests(), 1);
}

#[test]
fn garbage_answers_are_clear_errors() {
    let server = Server::start();
    let url = server.url("/garbage/v1/rewards");
    let err = RemoteReward::from_spec(&url, None)
        .unwrap()
        .score(&pairs())
        .unwrap_err();
    assert!(matches!(err, RewardError::RemoteResponse { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&url) && msg.contains("<html>"), "{msg}");

    let url = server.url("/short/v1/rewards");
    let err = RemoteReward::from_spec(&url, None)
        .unwrap()
        .score(&pairs())
        .unwrap_err();
    assert!(err.to_string().contains("4 scores for 5 inputs"), "{err}");
}

#[test]
fn bad_specs_and_empty_batches_fail_before_any_request() {
    for (spec, needle) in [
        ("http://127.0.0.1:9/score", "wire format"),
        ("ftp://127.0.0.1/v1/rewards", "http://"),
        ("http:///v1/rewards", "no host"),
    ] {
        let err = RemoteReward::from_spec(spec, None).err().unwrap();
        assert!(
            matches!(err, RewardError::RemoteSpec { .. }) && err.to_string().contains(needle),
            "{spec}: {err}"
        );
    }
    let server = Server::start();
    let rm = RemoteReward::from_spec(&server.url("/v1/rewards"), None).unwrap();
    assert!(matches!(rm.score(&[]), Err(RewardError::InvalidInput(_))));
    assert_eq!(server.requests(), 0);
}
