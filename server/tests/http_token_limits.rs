//! The operator's token limits: `--max-input-tokens`, `--max-tokens-limit` and the default
//! `max_tokens` of chat and completions requests, enforced with a 400 that says the limit and
//! shown in `/v1/models`.

mod common;

use common::{client, get_json, post, start_ready, tiny_config, tiny_models, url};
use serde_json::json;
use thresh_server::serve::TokenLimits;

#[tokio::test]
async fn token_limits_are_enforced_defaulted_and_shown() {
    let m = tiny_models(512);
    let mut cfg = tiny_config(&m);
    cfg.tokens = TokenLimits {
        max_input_tokens: Some(40),
        max_tokens_limit: Some(12),
        default_chat_max_tokens: 7,
        default_completion_max_tokens: 3,
    };
    let server = start_ready(cfg).await;
    let c = client();
    let completions = url(&server, "/v1/completions");
    let chat = url(&server, "/v1/chat/completions");

    // The byte tokenizer: one token per byte (plus BOS), so 50 bytes are over 40 tokens;
    // a short chat message in its template is under it.
    let (status, _, v) = post(
        &c,
        &completions,
        &json!({"prompt": "x".repeat(50), "max_tokens": 2}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "prompt");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("at most 40") && msg.contains("--max-input-tokens"),
        "{msg}"
    );
    let (status, _, v) = post(
        &c,
        &completions,
        &json!({"prompt": "x".repeat(10), "max_tokens": 2, "ignore_eos": true}),
    )
    .await;
    assert_eq!(status, 200, "a prompt within the limit: {v}");

    let (status, _, v) = post(&c, &completions, &json!({"prompt": "hi", "max_tokens": 13})).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "max_tokens");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit of 12"),
        "{v}"
    );
    let (status, _, v) = post(
        &c,
        &completions,
        &json!({"prompt": "hi", "max_tokens": 12, "ignore_eos": true}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 12);

    // Without max_tokens: the server's defaults, per route.
    let (status, _, v) = post(
        &c,
        &completions,
        &json!({"prompt": "hi", "ignore_eos": true}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    let (status, _, v) = post(
        &c,
        &chat,
        &json!({"messages": [{"role": "user", "content": "hi"}], "ignore_eos": true}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 7);

    let models = get_json(&c, &url(&server, "/v1/models")).await;
    let limits = &models["data"][0]["thresh_limits"];
    assert_eq!(limits["max_input_tokens"], 40, "{models}");
    assert_eq!(limits["max_tokens_limit"], 12);
    assert_eq!(limits["default_max_tokens"]["chat"], 7);
    assert_eq!(limits["default_max_tokens"]["completions"], 3);
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn without_limits_the_context_bounds_the_request() {
    let m = tiny_models(64);
    let server = start_ready(tiny_config(&m)).await;
    let c = client();
    let models = get_json(&c, &url(&server, "/v1/models")).await;
    let limits = &models["data"][0]["thresh_limits"];
    assert_eq!(limits["max_input_tokens"], 63, "{models}");
    assert_eq!(limits["max_tokens_limit"], 63);
    assert_eq!(limits["default_max_tokens"]["chat"], 512);
    assert_eq!(limits["default_max_tokens"]["completions"], 16);
    // The chat default (512) is cut to what the 64-token context leaves.
    let (status, _, v) = post(
        &c,
        &url(&server, "/v1/chat/completions"),
        &json!({"messages": [{"role": "user", "content": "hi"}], "ignore_eos": true}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let used = v["usage"]["prompt_tokens"].as_u64().unwrap()
        + v["usage"]["completion_tokens"].as_u64().unwrap();
    assert_eq!(used, 64, "{v}");
    server.shutdown();
    server.wait().await.unwrap();
}
