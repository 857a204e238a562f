//! Shared helpers of the loopback tests: tiny random models written on the fly and a real
//! thresh server on a free loopback port (the server's own test harness), and the settings
//! of a small run against it.
#![allow(dead_code)]

pub mod schema;
#[path = "../../../server/tests/common/mod.rs"]
mod server_harness;

use std::time::Duration;

pub use server_harness::{start_ready, tiny_config, tiny_models};
use thresh_bench::client::{AlignmentParams, Endpoint, RequestParams, Target};
use thresh_bench::dataset::DatasetSpec;
use thresh_bench::load::LoadConfig;

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
        mix: None,
    }
}
