//! Every endpoint over real HTTP on loopback, against tiny random models: each strategy
//! through both completion routes, streaming with the usage chunk, rewards, models, health,
//! metrics, and every error status.

mod common;

use common::*;
use serde_json::{Value, json};
use thresh_models::testing::BYTE_TOKENIZER_VOCAB;

const STRATEGIES: &[&str] = &[
    "none",
    "best_of_n",
    "speculative_rejection",
    "soft_best_of_n",
    "rejection_sampling",
];

fn body_for(route: &str, strategy: &str) -> Value {
    let mut b = json!({
        "max_tokens": 12, "temperature": 1.0, "seed": 7, "n": 2,
        "alignment": {"strategy": strategy, "candidates": 4, "return_candidates": true},
    });
    if route == "/v1/completions" {
        b["prompt"] = json!("Hello there");
    } else {
        b["messages"] = json!([{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "Hello there"}]);
    }
    b
}

#[tokio::test]
async fn every_strategy_on_both_routes() {
    let m = tiny_models(256);
    let server = start_ready(tiny_config(&m)).await;
    let c = client();
    for route in ["/v1/completions", "/v1/chat/completions"] {
        for &strategy in STRATEGIES {
            let (status, headers, v) =
                post(&c, &url(&server, route), &body_for(route, strategy)).await;
            assert_eq!(status, 200, "{route} {strategy}: {v}");
            assert!(headers.contains_key("x-request-id"));
            let timing = headers["server-timing"].to_str().unwrap();
            assert!(
                timing.contains("queue;dur=") && timing.contains("policy;dur="),
                "{timing}"
            );
            let choices = v["choices"].as_array().unwrap();
            assert_eq!(choices.len(), 2, "{route} {strategy}: n answers");
            for ch in choices {
                // Plain answers are scored only when asked (below); aligned ones always are.
                assert_eq!(
                    ch["reward"].is_number(),
                    strategy != "none",
                    "{route} {strategy}: reward: {ch}"
                );
                let text = if route == "/v1/completions" {
                    ch["text"].as_str()
                } else {
                    assert_eq!(ch["message"]["role"], "assistant");
                    ch["message"]["content"].as_str()
                };
                assert!(text.is_some());
                assert!(["stop", "length"].contains(&ch["finish_reason"].as_str().unwrap()));
            }
            let a = &v["alignment"];
            assert_eq!(a["strategy"], strategy);
            assert!(a["stats"]["policy_tokens"].as_u64().unwrap() > 0);
            assert!(a["stats"]["rounds"].as_u64().unwrap() >= 1);
            let usage = &v["usage"];
            assert_eq!(
                usage["total_tokens"].as_u64().unwrap(),
                usage["prompt_tokens"].as_u64().unwrap()
                    + usage["completion_tokens"].as_u64().unwrap()
            );
            assert_eq!(
                v["object"],
                if route == "/v1/completions" {
                    "text_completion"
                } else {
                    "chat.completion"
                }
            );
            if strategy != "none" {
                assert_eq!(a["stats"]["candidates"], 4, "{strategy}");
                let cands = a["candidates"].as_array().unwrap();
                assert!(cands.len() >= 4, "{strategy}: every candidate returned");
                // Aligned answers come best first.
                if strategy == "best_of_n" || strategy == "speculative_rejection" {
                    let r0 = choices[0]["reward"].as_f64().unwrap();
                    let r1 = choices[1]["reward"].as_f64().unwrap();
                    assert!(r0 >= r1, "{strategy}: top-n by reward");
                    let best = cands
                        .iter()
                        .filter_map(|c| c["reward"].as_f64())
                        .filter(|_| strategy == "best_of_n")
                        .fold(f64::NEG_INFINITY, f64::max);
                    if strategy == "best_of_n" {
                        assert!(
                            (best - r0).abs() < 1e-6,
                            "best_of_n returns the best candidate"
                        );
                    }
                }
            }
        }
    }
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn plain_answers_are_scored_when_asked() {
    let m = tiny_models(256);
    let server = start_ready(tiny_config(&m)).await;
    let c = client();
    let route = "/v1/chat/completions";
    let mut body = body_for(route, "none");
    body["alignment"]["score"] = json!(true);
    let (status, _, scored) = post(&c, &url(&server, route), &body).await;
    assert_eq!(status, 200, "{scored}");
    assert_eq!(scored["alignment"]["stats"]["reward_calls"], 1, "{scored}");
    body["alignment"]["score"] = json!(false);
    let (_, _, unscored) = post(&c, &url(&server, route), &body).await;
    assert_eq!(
        unscored["alignment"]["stats"]["reward_calls"], 0,
        "{unscored}"
    );
    for (a, b) in scored["choices"]
        .as_array()
        .unwrap()
        .iter()
        .zip(unscored["choices"].as_array().unwrap())
    {
        assert!(a["reward"].is_number(), "{a}");
        assert!(b["reward"].is_null(), "{b}");
        assert_eq!(
            a["message"], b["message"],
            "scoring does not change the answer"
        );
    }
    // Streamed: the last chunk of each choice carries its reward.
    body["alignment"]["score"] = json!(true);
    body["stream"] = json!(true);
    let (status, events) = post_stream(&c, &url(&server, route), &body).await;
    assert_eq!(status, 200);
    let rewards: Vec<f64> = data_events(&events)
        .iter()
        .flat_map(|e| e["choices"].as_array().cloned().unwrap_or_default())
        .filter_map(|ch| ch["reward"].as_f64())
        .collect();
    let want: Vec<f64> = scored["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ch| ch["reward"].as_f64().unwrap())
        .collect();
    assert_eq!(rewards.len(), 2, "{events:?}");
    for w in &want {
        assert!(
            rewards.iter().any(|r| (r - w).abs() < 1e-6),
            "{rewards:?} vs {want:?}"
        );
    }
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn repeated_prompts_reuse_the_prefix_cache() {
    let m = tiny_models(256);
    let body = json!({"prompt": "Hello there, how are you today?", "max_tokens": 8,
        "seed": 3, "temperature": 1.0, "alignment": {"strategy": "best_of_n", "candidates": 2}});
    let mut cfg = tiny_config(&m);
    let mut runs = Vec::new();
    for mb in [256, 0] {
        cfg.prefix_cache_mb = mb;
        let server = start_ready(cfg.clone()).await;
        let c = client();
        let u = url(&server, "/v1/completions");
        let (s1, _, first) = post(&c, &u, &body).await;
        let counted = || async {
            let page = get_text(&c, &url(&server, "/metrics")).await;
            metric(&page, "thresh_prompt_tokens_cached_total", "")
        };
        let before = counted().await;
        let (s2, _, again) = post(&c, &u, &body).await;
        let after = counted().await;
        assert_eq!((s1, s2), (200, 200), "{first} {again}");
        let prompt = first["usage"]["prompt_tokens"].as_u64().unwrap();
        let cached = |v: &Value| v["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64();
        assert_eq!(cached(&first), Some(0), "a fresh server has nothing cached");
        let want = if mb > 0 { prompt - 1 } else { 0 };
        assert_eq!(cached(&again), Some(want), "{again}");
        assert_eq!(
            again["alignment"]["stats"]["cached_prompt_tokens"].as_u64(),
            Some(want)
        );
        assert_eq!(
            first["choices"], again["choices"],
            "the same seeded answers"
        );
        // Other tests of this binary count into the same process-wide metrics.
        assert!(after - before >= want as f64, "{before} -> {after}");
        runs.push(again["choices"].clone());
        server.shutdown();
        server.wait().await.unwrap();
    }
    assert_eq!(runs[0], runs[1], "with and without the cache");
}

#[tokio::test]
async fn speculative_rejection_prunes_and_best_of_matches_seeded_answer() {
    let m = tiny_models(256);
    let server = start_ready(tiny_config(&m)).await;
    let c = client();
    let body = json!({
        "prompt": "abc", "max_tokens": 40, "ignore_eos": true, "seed": 3,
        "alignment": {"strategy": "speculative_rejection", "candidates": 8, "alpha": 0.5,
                      "return_candidates": true},
    });
    let (status, _, v) = post(&c, &url(&server, "/v1/completions"), &body).await;
    assert_eq!(status, 200, "{v}");
    let stats = &v["alignment"]["stats"];
    let pruned: u64 = stats["pruned_per_round"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert!(pruned > 0, "the default budget forces pruning: {stats}");
    let cands = v["alignment"]["candidates"].as_array().unwrap();
    assert!(cands.iter().any(|c| c["fate"] == "pruned"));
    // Best-of-N through `best_of` equals the same request through the alignment object.
    let a = json!({"prompt": "abc", "max_tokens": 10, "seed": 5, "best_of": 4});
    let b = json!({"prompt": "abc", "max_tokens": 10, "seed": 5,
                   "alignment": {"strategy": "best_of_n", "candidates": 4}});
    let (_, _, va) = post(&c, &url(&server, "/v1/completions"), &a).await;
    let (_, _, vb) = post(&c, &url(&server, "/v1/completions"), &b).await;
    assert_eq!(va["choices"][0]["text"], vb["choices"][0]["text"]);
    assert_eq!(va["alignment"]["strategy"], "best_of_n");
    // best_of: 1 is accepted quietly as no alignment.
    let (s1, _, v1) = post(
        &c,
        &url(&server, "/v1/completions"),
        &json!({"prompt": "abc", "max_tokens": 3, "best_of": 1}),
    )
    .await;
    assert_eq!(s1, 200);
    assert_eq!(v1["alignment"]["strategy"], "none");
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn streaming_matches_the_plain_answer_and_ends_with_usage() {
    let m = tiny_models(256);
    let server = start_ready(tiny_config(&m)).await;
    let c = client();
    for route in ["/v1/completions", "/v1/chat/completions"] {
        let mut body = body_for(route, "none");
        body["n"] = json!(1);
        body["max_tokens"] = json!(20);
        let (_, _, plain) = post(&c, &url(&server, route), &body).await;
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let (status, events) = post_stream(&c, &url(&server, route), &body).await;
        assert_eq!(status, 200);
        let chunks = data_events(&events);
        let usage = chunks.last().unwrap();
        assert_eq!(
            usage["choices"],
            json!([]),
            "the usage chunk has no choices"
        );
        // The same counts; the streamed request found the plain one's prompt cached.
        let mut want = plain["usage"].clone();
        want["prompt_tokens_details"]["cached_tokens"] =
            json!(want["prompt_tokens"].as_u64().unwrap() - 1);
        assert_eq!(usage["usage"], want, "{route}");
        let mut text = String::new();
        let mut finish = None;
        for ch in &chunks[..chunks.len() - 1] {
            for choice in ch["choices"].as_array().unwrap() {
                let piece = if route == "/v1/completions" {
                    choice["text"].as_str()
                } else {
                    choice["delta"]["content"].as_str()
                };
                text.push_str(piece.unwrap_or(""));
                if let Some(f) = choice["finish_reason"].as_str() {
                    finish = Some(f.to_string());
                }
            }
            if route == "/v1/chat/completions" {
                assert_eq!(ch["object"], "chat.completion.chunk");
            }
        }
        let expected = if route == "/v1/completions" {
            plain["choices"][0]["text"].as_str().unwrap()
        } else {
            plain["choices"][0]["message"]["content"].as_str().unwrap()
        };
        assert_eq!(
            text, expected,
            "{route}: streamed text equals the same seeded request's"
        );
        assert_eq!(
            finish.as_deref(),
            plain["choices"][0]["finish_reason"].as_str()
        );
    }
    // An aligned stream: progress comments, then the chosen answer with its reward.
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16,
        "seed": 1, "stream": true, "alignment": {"strategy": "best_of_n", "candidates": 4}});
    let (status, events) = post_stream(&c, &url(&server, "/v1/chat/completions"), &body).await;
    assert_eq!(status, 200);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Sse::Comment(c) if c.starts_with("started")))
    );
    let chunks = data_events(&events);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let last = chunks.last().unwrap();
    assert!(last["choices"][0]["reward"].is_number(), "{last}");
    assert_eq!(last["alignment"]["strategy"], "best_of_n");
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn rewards_models_health_and_metrics() {
    let m = tiny_models(128);
    let server = start_ready(tiny_config(&m)).await;
    let c = client();
    let h = c.get(url(&server, "/health")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    let models: Value = c
        .get(url(&server, "/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["tiny-policy", "tiny-reward"]);
    let body = json!({"input": [
        {"prompt": "What is 2+2?", "response": "4"},
        {"messages": [{"role": "user", "content": "What is 2+2?"}], "response": "4"},
        {"prompt": "What is 2+2?", "response": "five"},
    ]});
    let (status, _, v) = post(&c, &url(&server, "/v1/rewards"), &body).await;
    assert_eq!(status, 200, "{v}");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    // A text prompt is the same conversation as one user message.
    assert_eq!(data[0]["score"], data[1]["score"]);
    assert_ne!(data[0]["score"], data[2]["score"]);
    assert_eq!(v["model"], "tiny-reward");
    // The model id is checked.
    let (s404, _, e) = post(
        &c,
        &url(&server, "/v1/completions"),
        &json!({"model": "gpt-4", "prompt": "x"}),
    )
    .await;
    assert_eq!(s404, 404);
    assert_eq!(e["error"]["code"], "model_not_found");
    let (s200, _, _) = post(
        &c,
        &url(&server, "/v1/completions"),
        &json!({"model": "tiny-policy", "prompt": "x", "max_tokens": 2}),
    )
    .await;
    assert_eq!(s200, 200);
    let page = get_text(&c, &url(&server, "/metrics")).await;
    assert!(
        metric(&page, "thresh_requests_total", "route=\"/v1/rewards\"") >= 1.0,
        "{page}"
    );
    assert!(metric(&page, "thresh_requests_total", "status=\"404\"") >= 1.0);
    assert!(metric(&page, "thresh_generated_tokens_total", "") >= 1.0);
    assert!(page.contains("thresh_queue_duration_seconds_bucket"));
    assert!(page.contains("thresh_time_to_first_token_seconds"));
    let doc: Value = c
        .get(url(&server, "/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/completions",
        "/v1/chat/completions",
        "/v1/rewards",
        "/v1/models",
        "/health",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    // This server has no aligner: /correct is not part of its API.
    assert!(doc["paths"].get("/correct").is_none());
    for schema in ["CompletionRequest", "ChatRequest"] {
        let props = &doc["components"]["schemas"][schema]["properties"];
        assert!(
            props["alignment"].is_object() && props["max_tokens"].is_object(),
            "{props}"
        );
        // The server's own limit, and the tiny model's vocabulary for token-id prompts.
        assert_eq!(props["n"]["maximum"], 64, "{props}");
    }
    let ids = &doc["components"]["schemas"]["PromptInput"]["oneOf"][1]["items"];
    assert_eq!(ids["maximum"], BYTE_TOKENIZER_VOCAB - 1, "{ids}");
    server.shutdown();
    server.wait().await.unwrap();
}

async fn expect_error(
    c: &reqwest::Client,
    url: &str,
    body: &Value,
    status: u16,
    param: Option<&str>,
) {
    let (s, headers, v) = post(c, url, body).await;
    assert_eq!(s, status, "{body} -> {v}");
    assert!(headers.contains_key("x-request-id"));
    let err = &v["error"];
    assert!(
        err["message"].is_string() && err["type"].is_string() && err["code"].is_string(),
        "{v}"
    );
    if let Some(p) = param {
        assert_eq!(err["param"], p, "{v}");
    }
}

#[tokio::test]
async fn every_error_status() {
    let m = tiny_models(128);
    let mut cfg = tiny_config(&m);
    cfg.api_keys = vec!["sk-one".into(), "sk-two".into()];
    cfg.max_n = 8;
    cfg.max_body_bytes = 4096;
    let server = start_ready(cfg).await;
    let anon = client();
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("authorization", "Bearer sk-two".parse().unwrap());
    let c = reqwest::Client::builder()
        .default_headers(h)
        .build()
        .unwrap();
    let comp = url(&server, "/v1/completions");
    // 401: missing and wrong keys; /health needs none.
    expect_error(&anon, &comp, &json!({"prompt": "x"}), 401, None).await;
    let wrong = anon
        .post(&comp)
        .bearer_auth("sk-three")
        .json(&json!({"prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        anon.get(url(&server, "/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // 400 naming the parameter.
    for (body, param) in [
        (json!({"prompt": "x", "temperature": 3.0}), "temperature"),
        (json!({"prompt": "x", "top_p": 0.0}), "top_p"),
        (json!({"prompt": "x", "n": 9}), "n"),
        (json!({"prompt": "x", "n": 0}), "n"),
        (json!({"prompt": "x", "max_tokens": 0}), "max_tokens"),
        (json!({"prompt": "x", "max_tokens": 500}), "max_tokens"),
        (json!({"prompt": "x", "max_tokens": -1}), "max_tokens"),
        (json!({"prompt": "x", "min_p": 2}), "min_p"),
        (json!({"prompt": "x", "top_k": -5}), "top_k"),
        (
            json!({"prompt": "x", "max_tokens": 4, "min_tokens": 5}),
            "min_tokens",
        ),
        (json!({"prompt": "x", "stop": [""]}), "stop"),
        (json!({"prompt": "x", "logprobs": 3}), "logprobs"),
        (json!({"prompt": ""}), "prompt"),
        (json!({"prompt": [1, 2, 999999]}), "prompt"),
        (json!({"prompt": ["a", "b"]}), "prompt"),
        (json!({"max_tokens": 3}), "prompt"),
        (
            json!({"prompt": "x", "alignment": {"strategy": "magic"}}),
            "alignment.strategy",
        ),
        (
            json!({"prompt": "x", "alignment": {"strategy": "best_of_n", "candidates": 9}}),
            "alignment.candidates",
        ),
        (
            json!({"prompt": "x", "n": 4, "alignment": {"strategy": "best_of_n", "candidates": 2}}),
            "alignment.candidates",
        ),
        (json!({"prompt": "x", "best_of": 100}), "best_of"),
        (
            json!({"prompt": "x", "alignment": {"strategy": "speculative_rejection", "alpha": 1.0}}),
            "alignment.alpha",
        ),
        (
            json!({"prompt": "x", "alignment": {"strategy": "soft_best_of_n", "lambda": 0}}),
            "alignment.lambda",
        ),
        (
            json!({"prompt": "x", "alignment": {"correct": "sometimes"}}),
            "alignment.correct",
        ),
        (
            json!({"prompt": "x", "alignment": {"strategy": "speculative_rejection", "candidates": 4, "kv_budget_tokens": 10}}),
            "alignment.kv_budget_tokens",
        ),
        (
            json!({"prompt": "x", "alignment": {"unknown": 1}}),
            "alignment.unknown",
        ),
        (json!({"prompt": "x", "temperature": "hot"}), "temperature"),
    ] {
        expect_error(&c, &comp, &body, 400, Some(param)).await;
    }
    let chat = url(&server, "/v1/chat/completions");
    expect_error(&c, &chat, &json!({"messages": []}), 400, Some("messages")).await;
    expect_error(
        &c,
        &chat,
        &json!({"messages": [{"role": "wizard", "content": "x"}]}),
        400,
        Some("messages[0].role"),
    )
    .await;
    expect_error(&c, &chat, &json!({"prompt": "x"}), 400, Some("prompt")).await;
    // Fields not implemented are refused by name, not dropped (the answer would not parse).
    for (field, value) in [
        ("logit_bias", json!({"42": 5})),
        (
            "functions",
            json!([{"name": "f", "parameters": {"type": "object"}}]),
        ),
    ] {
        let mut body = json!({"messages": [{"role": "user", "content": "x"}]});
        body[field] = value;
        expect_error(&c, &chat, &body, 400, Some(field)).await;
    }
    expect_error(
        &c,
        &url(&server, "/v1/rewards"),
        &json!({"input": [{"prompt": "a", "response": "b"}], "extra": 1}),
        400,
        Some("extra"),
    )
    .await;
    expect_error(
        &c,
        &url(&server, "/v1/rewards"),
        &json!({"input": []}),
        400,
        Some("input"),
    )
    .await;
    expect_error(
        &c,
        &url(&server, "/v1/rewards"),
        &json!({"input": [{"prompt": " ", "response": "x"}]}),
        400,
        Some("input[0].prompt"),
    )
    .await;
    // Malformed JSON.
    let r = c
        .post(&comp)
        .header("content-type", "application/json")
        .body("{\"prompt\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_json");
    // 404: unknown route and model; 405: wrong method.
    let r = c.get(url(&server, "/v2/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-request-id"));
    expect_error(
        &c,
        &comp,
        &json!({"model": "nope", "prompt": "x"}),
        404,
        Some("model"),
    )
    .await;
    assert_eq!(c.get(&comp).send().await.unwrap().status(), 405);
    // 413: body over --max-body-bytes.
    let big = json!({"prompt": "x".repeat(5000)});
    expect_error(&c, &comp, &big, 413, None).await;
    // A client's own request id is echoed back.
    let r = c
        .get(url(&server, "/v1/models"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    // No input a user can send is answered 500.
    for body in [
        json!(null),
        json!([]),
        json!("text"),
        json!({"prompt": {"a": 1}}),
        json!({"prompt": "x", "seed": -5, "max_tokens": 2}),
        json!({"prompt": "x", "stop": "\u{0}", "max_tokens": 2}),
        json!({"prompt": "\u{fffd}\u{1F600}", "max_tokens": 2, "stream": true}),
        json!({"prompt": [0, 1, 2], "max_tokens": 2}),
        json!({"prompt": "x", "n": 8, "max_tokens": 100, "alignment": {"strategy": "rejection_sampling", "candidates": 8, "max_tries": 16}}),
    ] {
        let r = c.post(&comp).json(&body).send().await.unwrap();
        assert!(r.status().as_u16() < 500, "{body} -> {}", r.status());
    }
    server.shutdown();
    server.wait().await.unwrap();
}
