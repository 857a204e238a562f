//! Helpers of the tests of a thresh gateway over a remote policy: its settings, a backend it
//! cannot drive, and the error that stops its start.
#![allow(dead_code)]

use serde_json::json;

/// A gateway: `thresh serve --policy http://backend/v1 --policy-tokenizer DIR`, with the
/// reward model here.
pub fn gateway_config(
    m: &crate::common::TinyModels,
    backend: &str,
) -> thresh_server::serve::ServeConfig {
    let mut cfg = crate::common::tiny_config(m);
    cfg.policy = std::path::PathBuf::from(backend);
    cfg.policy_tokenizer = Some(m.policy.clone());
    cfg
}

/// An OpenAI-compatible server of the kind thresh cannot drive: its `/v1/models` is fine, its
/// completions lack what `lacks` names (`token_ids`: answers without token ids, as servers
/// before vLLM's `return_token_ids`; `n`: one continuation whatever `n` asks). It lists one
/// model, `model`, with a context of 4096.
pub async fn limited_backend(lacks: &'static str, model: &'static str) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    limited_backend_on(listener, lacks, model);
    addr
}

/// [`limited_backend`] on `listener`.
pub fn limited_backend_on(
    listener: tokio::net::TcpListener,
    lacks: &'static str,
    model: &'static str,
) {
    use axum::routing::{get, post};
    let models = get(move || async move {
        axum::Json(json!({"object": "list",
                          "data": [{"id": model, "object": "model", "max_model_len": 4096}]}))
    });
    let completions = post(
        move |axum::Json(body): axum::Json<serde_json::Value>| async move {
            let n = body["n"].as_u64().unwrap_or(1) as usize;
            let choices: Vec<_> = (0..if lacks == "n" { 1 } else { n })
                .map(|i| {
                    let mut c = json!({"index": i, "text": "a", "finish_reason": "length",
                                   "token_ids": [97]});
                    if lacks == "token_ids" {
                        c.as_object_mut().unwrap().remove("token_ids");
                    }
                    c
                })
                .collect();
            axum::Json(json!({"object": "text_completion", "choices": choices,
                          "usage": {"prompt_tokens": 1, "completion_tokens": n}}))
        },
    );
    let app = axum::Router::new()
        .route("/v1/models", models)
        .route("/v1/completions", completions);
    tokio::spawn(async move { axum::serve(listener, app).await });
}

/// The error that stopped `server`'s start (it must stop within a minute).
pub async fn load_error(server: &thresh_server::serve::Server) -> String {
    let t = std::time::Instant::now();
    loop {
        if let Some(e) = server.load_error() {
            return e;
        }
        assert!(t.elapsed().as_secs() < 60, "no load error");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
