//! Speculative Rejection through the daemon with its defaults (SmolLM2 q8_0, MiniLM
//! relevance): the default schedule decides early enough to save tokens against Best-of-N,
//! the schedule and `alpha: "auto"` parameters, and requests that make no decision say why
//! (in `alignment.stats` and on `/metrics`).

mod common;

use common::*;
use serde_json::{Value, json};
use thresh_server::serve::ServeConfig;

const TEA: &str = "Name three things that make a good cup of tea.";

fn chat(alignment: Value, max_tokens: usize) -> Value {
    json!({"messages": [{"role": "user", "content": TEA}], "max_tokens": max_tokens,
        "temperature": 1.0, "seed": 1234, "alignment": alignment})
}

#[tokio::test]
async fn speculative_rejection_decides_with_the_defaults() {
    let cfg = ServeConfig::for_models(
        thresh_models::testing::smollm2_gguf(),
        thresh_models::testing::minilm_dir(),
    );
    let server = start_ready(cfg).await;
    let c = client();
    let route = url(&server, "/v1/chat/completions");

    // The case that used to run as Best-of-N: 16 candidates, alpha 0.5, 96 tokens.
    let sr = json!({"strategy": "speculative_rejection", "candidates": 16, "alpha": 0.5});
    let (status, _, body) = post(&c, &route, &chat(sr, 96)).await;
    assert_eq!(status, 200, "{body}");
    let stats = &body["alignment"]["stats"];
    let decisions = stats["decision_tokens"].as_array().unwrap();
    assert!(!decisions.is_empty(), "no decision: {stats}");
    assert_eq!(
        decisions[0], 12,
        "first decision at max_tokens / 8: {stats}"
    );
    assert!(stats.get("no_decision").is_none(), "{stats}");
    let (status, _, bon) = post(
        &c,
        &route,
        &chat(json!({"strategy": "best_of_n", "candidates": 16}), 96),
    )
    .await;
    assert_eq!(status, 200, "{bon}");
    let (sr_tokens, bon_tokens) = (
        stats["policy_tokens"].as_u64().unwrap(),
        bon["alignment"]["stats"]["policy_tokens"].as_u64().unwrap(),
    );
    assert!(sr_tokens < bon_tokens, "{sr_tokens} >= {bon_tokens}");

    // Explicit schedules and adaptive rejection.
    let (status, _, body) = post(
        &c,
        &route,
        &chat(
            json!({"strategy": "speculative_rejection", "candidates": 6, "alpha": "auto",
                "decision_tokens": [4, 10]}),
            24,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let d = body["alignment"]["stats"]["decision_tokens"]
        .as_array()
        .unwrap();
    assert!(!d.is_empty() && d[0] == 4, "{body}");
    let (status, _, body) = post(
        &c,
        &route,
        &chat(
            json!({"strategy": "speculative_rejection", "candidates": 4,
                "first_decision_tokens": 3}),
            16,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let d = body["alignment"]["stats"]["decision_tokens"]
        .as_array()
        .unwrap();
    assert!(!d.is_empty() && d[0] == 3, "{body}");

    // No decision possible: the first one would fall at max_tokens.
    let before = metric(
        &get_text(&c, &url(&server, "/metrics")).await,
        "thresh_speculative_no_decision_total",
        "reason=\"beyond_max_tokens\"",
    );
    let (status, _, body) = post(
        &c,
        &route,
        &chat(
            json!({"strategy": "speculative_rejection", "candidates": 4}),
            8,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["alignment"]["stats"]["no_decision"],
        "the first decision falls at or after max_tokens"
    );
    let page = get_text(&c, &url(&server, "/metrics")).await;
    let after = metric(
        &page,
        "thresh_speculative_no_decision_total",
        "reason=\"beyond_max_tokens\"",
    );
    assert_eq!(after, before + 1.0);
    assert!(metric(&page, "thresh_speculative_decisions_total", "") >= 2.0);

    // Bad schedule parameters are 400s naming the parameter.
    for (alignment, param) in [
        (json!({"alpha": "half"}), "alignment.alpha"),
        (
            json!({"decision_tokens": [8, 4]}),
            "alignment.decision_tokens",
        ),
        (
            json!({"decision_tokens": [8], "first_decision_tokens": 4}),
            "alignment.first_decision_tokens",
        ),
    ] {
        let mut a = alignment;
        a["strategy"] = json!("speculative_rejection");
        let (status, _, body) = post(&c, &route, &chat(a, 16)).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["param"], param, "{body}");
    }
    // A token-id prompt of special tokens decodes to no text: a 400 naming the prompt, not a
    // reward-model failure reported as a 500.
    let (status, _, body) = post(
        &c,
        &url(&server, "/v1/completions"),
        &json!({"prompt": [1, 2, 3], "max_tokens": 1, "alignment": {
            "strategy": "speculative_rejection", "candidates": 4, "alpha": 0,
            "kv_budget_tokens": 200}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "prompt", "{body}");
    server.shutdown();
    server.wait().await.unwrap();
}
