//! The daemon on the real demo models (SmolLM2-135M-Instruct policy, MiniLM relevance
//! reward) over real HTTP: every endpoint, each strategy through both completion routes,
//! streaming with the usage chunk.

mod common;

use common::*;
use serde_json::json;
use thresh_server::serve::ServeConfig;

const STRATEGIES: &[&str] = &[
    "none",
    "best_of_n",
    "speculative_rejection",
    "soft_best_of_n",
    "rejection_sampling",
];

#[tokio::test]
async fn smollm2_and_minilm_end_to_end() {
    let cfg = ServeConfig::for_models(
        thresh_models::testing::smollm2_gguf(),
        thresh_models::testing::minilm_dir(),
    );
    let server = start_ready(cfg).await;
    let c = client();
    let models: serde_json::Value = c
        .get(url(&server, "/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "SmolLM2-135M-Instruct.Q4_1");
    assert_eq!(models["data"][1]["id"], "all-minilm-l6-v2");
    for route in ["/v1/completions", "/v1/chat/completions"] {
        for &strategy in STRATEGIES {
            let mut body = json!({"max_tokens": 6, "seed": 2, "temperature": 0.8,
                "alignment": {"strategy": strategy, "candidates": 3, "threshold": 0.2, "max_tries": 2,
                    "score": true}});
            if route == "/v1/completions" {
                body["prompt"] = json!("The capital of France is");
            } else {
                body["messages"] =
                    json!([{"role": "user", "content": "What is the capital of France?"}]);
            }
            let (status, _, v) = post(&c, &url(&server, route), &body).await;
            assert_eq!(status, 200, "{route} {strategy}: {v}");
            let ch = &v["choices"][0];
            let text = ch["text"]
                .as_str()
                .or(ch["message"]["content"].as_str())
                .unwrap();
            assert!(!text.is_empty(), "{route} {strategy}: {v}");
            let r = ch["reward"].as_f64().unwrap();
            assert!(
                (-1.0..=1.0).contains(&r),
                "a MiniLM relevance is a cosine: {r}"
            );
            assert_eq!(v["alignment"]["strategy"], strategy);
            assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 6);
        }
    }
    // Streaming a chat answer with the usage chunk.
    let body = json!({"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 6,
        "seed": 1, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}});
    let (status, events) = post_stream(&c, &url(&server, "/v1/chat/completions"), &body).await;
    assert_eq!(status, 200);
    let chunks = data_events(&events);
    let usage = &chunks.last().unwrap()["usage"];
    assert!(usage["completion_tokens"].as_u64().unwrap() >= 1);
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            c["choices"].get(0)?["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    let plain_body = json!({"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 6,
        "seed": 1, "temperature": 0});
    let (_, _, plain) = post(&c, &url(&server, "/v1/chat/completions"), &plain_body).await;
    assert_eq!(
        text,
        plain["choices"][0]["message"]["content"].as_str().unwrap()
    );
    // Rewards: a relevant answer scores above an unrelated one.
    let (status, _, v) = post(&c, &url(&server, "/v1/rewards"), &json!({"input": [
        {"prompt": "What is the capital of France?", "response": "Paris is the capital of France."},
        {"prompt": "What is the capital of France?", "response": "Bananas are yellow."},
    ]})).await;
    assert_eq!(status, 200);
    assert!(v["data"][0]["score"].as_f64().unwrap() > v["data"][1]["score"].as_f64().unwrap());
    let page = get_text(&c, &url(&server, "/metrics")).await;
    assert!(
        metric(
            &page,
            "thresh_requests_total",
            "strategy=\"speculative_rejection\""
        ) >= 2.0
    );
    server.shutdown();
    server.wait().await.unwrap();
}
