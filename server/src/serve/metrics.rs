//! Prometheus metrics (`GET /metrics`): requests by route, status and strategy; latency
//! histograms for the queue, the time to first token and the whole request; tokens
//! generated, pruned and scored; Speculative Rejection's decisions and the requests that made
//! none; the active batch size and the queue depth.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use thresh_decoding::strategy::StrategyStats;

const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The process-wide recorder (installed once, shared by every server in the process).
pub fn handle() -> PrometheusHandle {
    static H: OnceLock<PrometheusHandle> = OnceLock::new();
    H.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding program): then this
        // handle renders an empty page rather than failing.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
    .clone()
}

/// One finished HTTP request.
pub fn request(route: &'static str, status: u16, strategy: &'static str, took: Duration) {
    counter!("thresh_requests_total", "route" => route, "status" => status.to_string(), "strategy" => strategy)
        .increment(1);
    histogram!("thresh_request_duration_seconds", "route" => route).record(took.as_secs_f64());
}

/// Time a job waited for the engine.
pub fn queue_time(d: Duration) {
    histogram!("thresh_queue_duration_seconds").record(d.as_secs_f64());
}

/// Time from arrival to the first token sent.
pub fn time_to_first_token(d: Duration) {
    histogram!("thresh_time_to_first_token_seconds").record(d.as_secs_f64());
}

/// Jobs waiting for the engine.
pub fn queue_depth(n: usize) {
    gauge!("thresh_queue_depth").set(n as f64);
}

/// Rows in the batch the engine is decoding.
pub fn active_rows(n: usize) {
    gauge!("thresh_active_batch_size").set(n as f64);
}

/// One batched decoder pass over the rows of `requests` running requests (0: idle).
pub fn decode_pass(rows: usize, requests: usize) {
    active_rows(rows);
    if requests == 0 {
        // The engine went idle.
        return;
    }
    counter!("thresh_decode_passes_total").increment(1);
    histogram!("thresh_decode_pass_requests").record(requests as f64);
}

/// A job stopped because its client went away or its deadline passed.
pub fn cancelled(strategy: &'static str) {
    counter!("thresh_requests_cancelled_total", "strategy" => strategy).increment(1);
}

/// Reward-model tokens run.
pub fn reward_tokens(n: usize) {
    counter!("thresh_reward_tokens_total").increment(n as u64);
}

/// Tokens of a finished generation: its strategy's counters, and the tokens of candidates
/// pruned before they finished (`None` where the strategy kept no candidates).
pub fn generated(stats: &StrategyStats, pruned_tokens: Option<usize>, strategy: &'static str) {
    counter!("thresh_generated_tokens_total", "strategy" => strategy)
        .increment(stats.policy_tokens as u64);
    counter!("thresh_prompt_tokens_total").increment(stats.prompt_tokens as u64);
    counter!("thresh_prompt_tokens_cached_total").increment(stats.cached_prompt_tokens as u64);
    if let Some(n) = pruned_tokens {
        counter!("thresh_pruned_tokens_total", "strategy" => strategy).increment(n as u64);
    }
    reward_tokens(stats.reward_tokens);
    let decisions = stats.decision_tokens.len();
    if decisions > 0 {
        counter!("thresh_speculative_decisions_total").increment(decisions as u64);
    }
    if let Some(why) = stats.no_decision {
        counter!("thresh_speculative_no_decision_total", "reason" => why.label()).increment(1);
    }
}
