//! Continuous batching over HTTP: concurrent requests decode in shared passes, and each
//! gets exactly the answer it gets alone.

mod common;

use common::*;
use serde_json::{Value, json};

fn bodies() -> Vec<(&'static str, Value)> {
    let plain = |seed: u64, tokens: usize| {
        json!({"prompt": format!("request {seed}:"), "max_tokens": tokens, "seed": seed,
               "temperature": 1.0, "ignore_eos": true})
    };
    vec![
        ("/v1/completions", plain(1, 40)),
        ("/v1/completions", plain(2, 24)),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi there"}], "max_tokens": 32,
                   "seed": 3, "ignore_eos": true, "alignment": {"strategy": "best_of_n", "candidates": 4}}),
        ),
        (
            "/v1/completions",
            json!({"prompt": "a longer prompt that differs in length", "max_tokens": 36, "seed": 4,
                   "ignore_eos": true, "n": 2, "alignment": {"strategy": "speculative_rejection",
                   "candidates": 6, "alpha": 0.5, "kv_budget_tokens": 400}}),
        ),
        ("/v1/completions", {
            let mut b = plain(5, 30);
            b["stream"] = json!(true);
            b
        }),
    ]
}

/// The text of each choice, from a JSON response or from an SSE stream's deltas.
async fn answer(c: &reqwest::Client, base: &str, route: &str, body: &Value) -> Vec<String> {
    let u = format!("{base}{route}");
    if body["stream"] == json!(true) {
        let (status, events) = post_stream(c, &u, body).await;
        assert_eq!(status, 200);
        let mut text = String::new();
        for e in data_events(&events) {
            if let Some(t) = e["choices"][0]["text"].as_str() {
                text.push_str(t);
            }
        }
        return vec![text];
    }
    let (status, _, v) = post(c, &u, body).await;
    assert_eq!(status, 200, "{v}");
    v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ch| {
            ch["text"]
                .as_str()
                .or(ch["message"]["content"].as_str())
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_share_passes_and_get_their_solo_answers() {
    let _serial = METRICS_LOCK.lock().await;
    let m = tiny_models(512);
    let server = start_ready(tiny_config(&m)).await;
    let c = client();
    let base = format!("http://{}", server.addr());
    let metrics = || async {
        let page = client()
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        (
            metric(&page, "thresh_decode_passes_total", ""),
            metric(&page, "thresh_decode_pass_requests_sum", ""),
        )
    };
    let mut solo = Vec::new();
    for (route, body) in bodies() {
        solo.push(answer(&c, &base, route, &body).await);
    }
    let (passes0, reqs0) = metrics().await;
    // Solo requests: one request per pass.
    assert!(passes0 > 0.0);
    assert_eq!(passes0, reqs0);
    let together = futures_util::future::join_all(
        bodies()
            .iter()
            .map(|(route, body)| answer(&c, &base, route, body)),
    )
    .await;
    assert_eq!(solo, together);
    let (passes1, reqs1) = metrics().await;
    let (passes, reqs) = (passes1 - passes0, reqs1 - reqs0);
    assert!(
        reqs > passes * 1.5,
        "concurrent requests shared passes: {reqs} request steps in {passes} passes"
    );
    // Nothing is decoding any more: the active batch size gauge drops to 0.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = get_text(&c, &format!("{base}/metrics")).await;
        let rows = metric(&page, "thresh_active_batch_size", "");
        if rows == 0.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "active batch size stuck at {rows}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    server.shutdown();
    server.wait().await.unwrap();
}
