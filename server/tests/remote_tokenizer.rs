//! A remote policy without its tokenizer files (`--policy http://...`, no
//! `--policy-tokenizer`): the gateway encodes and decodes with the backend's `/tokenize` and
//! `/detokenize`, renders chats with the template `/tokenizer_info` gives, and answers as the
//! backend does; a backend with neither fails the start naming the flag. Also thresh's own
//! tokenizer endpoints, in vLLM's shapes.

mod common;
mod gateway;

use common::{
    client, get_json, get_text, metric, post, start_ready, tiny_config, tiny_models, url,
};
use gateway::{gateway_config, limited_backend, load_error};
use serde_json::{Value, json};

#[tokio::test]
async fn a_gateway_without_the_policys_files_tokenizes_on_the_backend_and_answers_as_it_does() {
    let _metrics = common::METRICS_LOCK.lock().await;
    let m = tiny_models(256);
    let backend = start_ready(tiny_config(&m)).await;
    let mut cfg = gateway_config(&m, &url(&backend, "/v1"));
    cfg.policy_tokenizer = None;
    let gateway = start_ready(cfg).await;
    let c = client();

    // The gateway's tokenizer ran on the backend (no request here has asked it yet).
    let page = get_text(&c, &url(&backend, "/metrics")).await;
    let asked = metric(&page, "thresh_requests_total", "route=\"/tokenize\"");
    assert!(asked > 0.0, "no /tokenize reached the backend:\n{page}");

    // Its tokenizer endpoints say what the backend's say.
    for (path, body) in [
        (
            "/tokenize",
            json!({"prompt": "hello <|im_end|> world", "return_token_strs": true}),
        ),
        (
            "/tokenize",
            json!({"messages": [{"role": "user", "content": "hi"}]}),
        ),
        ("/detokenize", json!({"tokens": [104, 105, 2, 33]})),
    ] {
        let (s1, _, direct) = post(&c, &url(&backend, path), &body).await;
        let (s2, _, through) = post(&c, &url(&gateway, path), &body).await;
        assert_eq!((s1, s2), (200, 200), "{body}: {direct} {through}");
        assert_eq!(direct, through, "{path} {body}");
    }
    let info = get_json(&c, &url(&backend, "/tokenizer_info")).await;
    let told = get_json(&c, &url(&gateway, "/tokenizer_info")).await;
    for field in [
        "bos_token",
        "eos_token",
        "eos_token_ids",
        "chat_template",
        "vocab_size",
    ] {
        assert_eq!(info[field], told[field], "{field}: {info} {told}");
    }
    assert!(
        info["eos_token_ids"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "{info}"
    );

    // Plain sampling, Best-of-N, a stop string and a token-id prompt: the same answers.
    let at = |s: &thresh_server::serve::Server| url(s, "/v1/completions");
    for body in [
        json!({"prompt": "hello", "max_tokens": 8, "n": 2, "seed": 5}),
        json!({"prompt": "hello", "max_tokens": 8, "seed": 5,
               "alignment": {"strategy": "best_of_n", "candidates": 4}}),
        json!({"prompt": "hello", "max_tokens": 12, "seed": 9, "stop": ["a"]}),
        json!({"prompt": [104, 101, 108, 108, 111], "max_tokens": 8, "seed": 3}),
    ] {
        let (s1, _, direct) = post(&c, &at(&backend), &body).await;
        let (s2, _, through) = post(&c, &at(&gateway), &body).await;
        assert_eq!((s1, s2), (200, 200), "{direct} {through}");
        for count in ["prompt_tokens", "completion_tokens"] {
            assert_eq!(direct["usage"][count], through["usage"][count], "{body}");
        }
        for i in 0..direct["choices"].as_array().unwrap().len() {
            for field in ["text", "finish_reason"] {
                assert_eq!(
                    direct["choices"][i][field], through["choices"][i][field],
                    "{body}"
                );
            }
        }
    }

    // Streamed, the same texts and finish reasons, with the text the backend streams: its
    // `/detokenize` is asked once per answer at the end, not on every delta.
    for body in [
        json!({"prompt": "hello", "max_tokens": 12, "n": 2, "seed": 5}),
        json!({"prompt": "hello", "max_tokens": 16, "n": 2, "seed": 9, "stop": ["a", "e"]}),
    ] {
        let (_, _, direct) = post(&c, &at(&backend), &body).await;
        let before = detokenized(&c, &backend).await;
        let (texts, finishes) = streamed_completions(&c, &at(&gateway), &body, 2).await;
        let asked = detokenized(&c, &backend).await - before;
        assert!(asked <= 2.0, "{asked} /detokenize calls for {body}");
        for i in 0..2 {
            assert_eq!(direct["choices"][i]["text"], texts[i], "{body}");
            assert_eq!(direct["choices"][i]["finish_reason"], finishes[i], "{body}");
        }
    }

    // Chat renders with the backend's template; streamed, the same text.
    let chat = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 6,
                      "seed": 2});
    let (s1, _, direct) = post(&c, &url(&backend, "/v1/chat/completions"), &chat).await;
    let (s2, _, through) = post(&c, &url(&gateway, "/v1/chat/completions"), &chat).await;
    assert_eq!((s1, s2), (200, 200), "{through}");
    assert_eq!(
        direct["usage"]["prompt_tokens"],
        through["usage"]["prompt_tokens"]
    );
    let answer = &through["choices"][0]["message"]["content"];
    assert_eq!(&direct["choices"][0]["message"]["content"], answer);
    let text = common::streamed_chat_text(&c, &url(&gateway, "/v1/chat/completions"), &chat).await;
    assert_eq!(Some(text.as_str()), answer.as_str());

    // The vocabulary the backend told bounds token-id prompts; grammars need the vocabulary
    // itself, which a backend's tokenizer endpoints do not hand over.
    let vocab = info["vocab_size"].as_u64().unwrap();
    let (status, _, v) = post(
        &c,
        &at(&gateway),
        &json!({"prompt": [vocab], "max_tokens": 2}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("vocabulary"),
        "{v}"
    );
    let (status, _, v) = post(
        &c,
        &at(&gateway),
        &json!({"prompt": "hello", "max_tokens": 2,
                "response_format": {"type": "json_object"}}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    for s in [gateway, backend] {
        s.shutdown();
        s.wait().await.unwrap();
    }
}

#[tokio::test]
async fn a_backend_without_tokenizer_endpoints_fails_the_start_naming_the_flag() {
    let m = tiny_models(256);
    // Completions with every capability, but no /tokenizer_info nor /tokenize.
    let addr = limited_backend("nothing", "limited").await;
    let mut cfg = gateway_config(&m, &format!("http://{addr}/v1"));
    cfg.policy_tokenizer = None;
    let server = thresh_server::serve::start(cfg).await.unwrap();
    let e = load_error(&server).await;
    assert!(
        e.contains("--policy-tokenizer") && e.contains("/tokenizer_info"),
        "{e}"
    );
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn the_tokenizer_endpoints_refuse_what_they_cannot_read() {
    let m = tiny_models(256);
    let server = start_ready(tiny_config(&m)).await;
    let c = client();
    for (path, body, param) in [
        ("/tokenize", json!({}), "prompt"),
        (
            "/tokenize",
            json!({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}),
            "prompt",
        ),
        (
            "/tokenize",
            json!({"messages": [{"role": "robot", "content": "b"}]}),
            "messages[0].role",
        ),
        (
            "/tokenize",
            json!({"prompt": "a", "model": "another"}),
            "model",
        ),
        (
            "/detokenize",
            json!({"tokens": [1, 1_000_000]}),
            "tokens[1]",
        ),
        ("/detokenize", json!({"tokens": [-1]}), "tokens[0]"),
        // A list is not read into the body's fields in order.
        ("/detokenize", json!([null, [0]]), "object"),
    ] {
        let (status, _, v) = post(&c, &url(&server, path), &body).await;
        assert!((400..500).contains(&status), "{path} {body}: {status} {v}");
        let named = v["error"]["param"].as_str().unwrap_or_default();
        assert!(
            named == param || v["error"]["message"].as_str().unwrap_or("").contains(param),
            "{path} {body}: {v}"
        );
    }
    // An integral number is an integer, as JSON Schema counts them.
    let (status, _, v) = post(
        &c,
        &url(&server, "/detokenize"),
        &json!({"tokens": [104.0]}),
    )
    .await;
    assert_eq!((status, v["prompt"].as_str()), (200, Some("h")), "{v}");
    server.shutdown();
    server.wait().await.unwrap();
}

/// How many `/detokenize` requests `backend` has answered.
async fn detokenized(c: &reqwest::Client, backend: &thresh_server::serve::Server) -> f64 {
    let page = get_text(c, &url(backend, "/metrics")).await;
    metric(&page, "thresh_requests_total", "route=\"/detokenize\"")
}

/// Posts `body` streamed to the completions route at `at`: each of its `n` answers' text, as
/// its deltas add up, and finish reason.
async fn streamed_completions(
    c: &reqwest::Client,
    at: &str,
    body: &Value,
    n: usize,
) -> (Vec<String>, Vec<Value>) {
    let mut streamed = body.clone();
    streamed["stream"] = Value::Bool(true);
    let (status, events) = common::post_stream(c, at, &streamed).await;
    assert_eq!(status, 200);
    let (mut texts, mut finishes) = (vec![String::new(); n], vec![Value::Null; n]);
    for e in common::data_events(&events) {
        for choice in e["choices"].as_array().into_iter().flatten() {
            let i = choice["index"].as_u64().unwrap() as usize;
            texts[i].push_str(choice["text"].as_str().unwrap_or_default());
            if !choice["finish_reason"].is_null() {
                finishes[i] = choice["finish_reason"].clone();
            }
        }
    }
    (texts, finishes)
}
