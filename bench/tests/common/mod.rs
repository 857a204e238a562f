//! Shared helpers of the loopback tests: tiny random models written on the fly and a real
//! thresh server on a free loopback port (copied from the server's own test harness), and
//! the settings of a small run against it.
#![allow(dead_code)]

pub mod schema;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use thresh_bench::client::{AlignmentParams, Endpoint, RequestParams, Target};
use thresh_bench::dataset::DatasetSpec;
use thresh_bench::load::LoadConfig;
use thresh_models::config::Family;
use thresh_models::testing::{
    BYTE_TOKENIZER_VOCAB, TinySpec, write_byte_tokenizer, write_tiny_classifier,
};
use thresh_server::serve::{ServeConfig, Server, start};

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
    let server = start(cfg).await.expect("server starts");
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

pub fn target(base_url: String, endpoint: Endpoint) -> Target {
    Target {
        base_url,
        endpoint,
        api_key: None,
        model: None,
    }
}

/// A run of `n` streamed requests of the built-in prompts, 8 tokens each.
pub fn small_run(base_url: String, n: usize) -> LoadConfig {
    LoadConfig {
        target: target(base_url, Endpoint::Completions),
        params: RequestParams {
            max_tokens: 8,
            stream: true,
            temperature: None,
            top_k: None,
            alignment: AlignmentParams::default(),
        },
        items: DatasetSpec::Builtin.load(n, 0).unwrap(),
        dataset_name: "builtin".into(),
        num_requests: Some(n),
        duration: None,
        request_rate: f64::INFINITY,
        burstiness: 1.0,
        max_concurrency: Some(4),
        warmup_requests: 0,
        seed: 1,
        timeout: Duration::from_secs(300),
        progress: false,
    }
}
