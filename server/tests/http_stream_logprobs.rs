//! Streamed `logprobs` over real HTTP: each chunk carries the log-probabilities of the tokens
//! its text completes; concatenated, they are the non-streamed response's logprobs for the
//! same seed, less the tokens a stop string cut. Tiny random models (byte tokenizer, so
//! tokens often end inside a character) and the real SmolLM2 with MiniLM.

mod common;

use common::*;
use serde_json::{Value, json};
use thresh_server::serve::ServeConfig;

/// One answer's logprob entries, route-independent: (token, logprob as JSON, extra), where
/// extra is the completions' `text_offset` or chat's `bytes`.
type Entry = (String, Value, Value);

fn entries(route: &str, lp: &Value) -> Vec<Entry> {
    if route == "/v1/completions" {
        assert!(lp["top_logprobs"].is_null(), "{lp}");
        let tokens = lp["tokens"].as_array().expect("tokens");
        let values = lp["token_logprobs"].as_array().expect("token_logprobs");
        let offsets = lp["text_offset"].as_array().expect("text_offset");
        assert_eq!(tokens.len(), values.len(), "{lp}");
        assert_eq!(tokens.len(), offsets.len(), "{lp}");
        tokens
            .iter()
            .zip(values)
            .zip(offsets)
            .map(|((t, v), o)| (t.as_str().unwrap().to_string(), v.clone(), o.clone()))
            .collect()
    } else {
        lp["content"]
            .as_array()
            .expect("content")
            .iter()
            .map(|e| {
                assert_eq!(e["top_logprobs"], json!([]), "{e}");
                (
                    e["token"].as_str().unwrap().to_string(),
                    e["logprob"].clone(),
                    e["bytes"].clone(),
                )
            })
            .collect()
    }
}

/// A non-streamed response: per choice, its text and entries; and the completion tokens.
fn whole(route: &str, v: &Value) -> (Vec<(String, Vec<Entry>)>, u64) {
    let choices = v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let text = c["text"]
                .as_str()
                .or(c["message"]["content"].as_str())
                .unwrap()
                .to_string();
            (text, entries(route, &c["logprobs"]))
        })
        .collect();
    (choices, v["usage"]["completion_tokens"].as_u64().unwrap())
}

/// A streamed response: per choice index, the concatenated text and entries; and the usage
/// chunk's completion tokens. Every chunk with text must carry `logprobs`. With
/// `spelled` (a tokenizer whose tokens, decoded alone, spell the text), the tokens sent so
/// far must spell a prefix of the text sent so far after every chunk: a token's logprob
/// never comes before its text.
fn streamed(
    route: &str,
    events: &[Sse],
    n: usize,
    spelled: bool,
) -> (Vec<(String, Vec<Entry>)>, u64) {
    let chunks = data_events(events);
    let mut out = vec![(String::new(), Vec::new()); n];
    let mut usage = None;
    for ch in &chunks {
        if let Some(u) = ch.get("usage") {
            usage = u["completion_tokens"].as_u64();
        }
        for c in ch["choices"].as_array().unwrap() {
            let i = c["index"].as_u64().unwrap() as usize;
            let text = if route == "/v1/completions" {
                c["text"].as_str()
            } else {
                c["delta"]["content"].as_str()
            };
            let finish = !c["finish_reason"].is_null();
            let role_only = c["delta"].get("role").is_some();
            match text {
                Some(t) if !finish && !role_only => {
                    out[i].0.push_str(t);
                    assert!(
                        !c["logprobs"].is_null(),
                        "a text chunk without logprobs: {c}"
                    );
                    out[i].1.extend(entries(route, &c["logprobs"]));
                    if spelled {
                        let tokens: String = out[i].1.iter().map(|e| e.0.as_str()).collect();
                        assert!(out[i].0.starts_with(&tokens), "{:?} {tokens:?}", out[i].0);
                    }
                }
                _ => assert!(c["logprobs"].is_null(), "{c}"),
            }
        }
    }
    (out, usage.expect("a usage chunk"))
}

fn body_for(route: &str, prompt: &str, extra: Value) -> Value {
    let mut body = extra;
    if route == "/v1/completions" {
        body["prompt"] = json!(prompt);
        body["logprobs"] = json!(0);
    } else {
        body["messages"] = json!([{"role": "user", "content": prompt}]);
        body["logprobs"] = json!(true);
    }
    body
}

/// Runs `body` plain and streamed; returns both readings.
async fn both(
    c: &reqwest::Client,
    base: &str,
    route: &str,
    body: &Value,
    spelled: bool,
) -> (
    Vec<(String, Vec<Entry>)>,
    u64,
    Vec<(String, Vec<Entry>)>,
    u64,
) {
    let (status, _, v) = post(c, &format!("{base}{route}"), body).await;
    assert_eq!(status, 200, "{v}");
    let (plain, plain_tokens) = whole(route, &v);
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let (status, events) = post_stream(c, &format!("{base}{route}"), &sbody).await;
    assert_eq!(status, 200, "{events:?}");
    let (stream, stream_tokens) = streamed(route, &events, plain.len(), spelled);
    (plain, plain_tokens, stream, stream_tokens)
}

/// Without a stop string: the streamed text and entries equal the non-streamed ones, and
/// there is one entry per completion token.
async fn assert_same(c: &reqwest::Client, base: &str, route: &str, body: &Value, spelled: bool) {
    let (plain, plain_tokens, stream, stream_tokens) = both(c, base, route, body, spelled).await;
    assert_eq!(plain_tokens, stream_tokens, "{route} {body}");
    assert_eq!(stream, plain, "{route} {body}");
    let count: usize = stream.iter().map(|(_, e)| e.len()).sum();
    assert_eq!(count as u64, stream_tokens, "{route} {body}");
    assert!(count > 0);
}

#[tokio::test]
async fn tiny_model_streams_the_same_logprobs_as_a_plain_response() {
    let m = tiny_models(256);
    let server = start_ready(tiny_config(&m)).await;
    let c = client();
    let base = format!("http://{}", server.addr());
    for route in ["/v1/completions", "/v1/chat/completions"] {
        // Sampled bytes: many tokens end inside a UTF-8 character.
        let body = body_for(
            route,
            "Ice is",
            json!({"max_tokens": 20, "temperature": 1.0, "seed": 7, "n": 2, "ignore_eos": true}),
        );
        assert_same(&c, &base, route, &body, false).await;
        for strategy in ["best_of_n", "speculative_rejection", "soft_best_of_n"] {
            let body = body_for(
                route,
                "Ice is",
                json!({"max_tokens": 12, "temperature": 1.0, "seed": 3, "ignore_eos": true,
                       "alignment": {"strategy": strategy, "candidates": 3}}),
            );
            assert_same(&c, &base, route, &body, false).await;
        }
    }
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn tiny_model_leaves_off_the_tokens_a_stop_string_cut() {
    let m = tiny_models(256);
    let server = start_ready(tiny_config(&m)).await;
    let c = client();
    let base = format!("http://{}", server.addr());
    let route = "/v1/completions";
    let mut checked = 0;
    for seed in 0..6 {
        let body = body_for(
            route,
            "Snow",
            json!({"max_tokens": 24, "temperature": 1.0, "seed": seed, "ignore_eos": true}),
        );
        let (status, _, v) = post(&c, &format!("{base}{route}"), &body).await;
        assert_eq!(status, 200, "{v}");
        let text = v["choices"][0]["text"].as_str().unwrap().to_string();
        // A two-character stop string from the second half of the answer.
        let chars: Vec<char> = text.chars().collect();
        if chars.len() < 6 {
            continue;
        }
        let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
        for strategy in ["none", "best_of_n"] {
            let mut body = body.clone();
            body["stop"] = json!(stop);
            body["alignment"] = json!({"strategy": strategy, "candidates": 1});
            let (plain, plain_tokens, stream, stream_tokens) =
                both(&c, &base, route, &body, false).await;
            let ((ptext, pent), (stext, sent)) = (&plain[0], &stream[0]);
            assert_eq!(stext, ptext, "{strategy} {stop:?}");
            assert_eq!(plain_tokens, stream_tokens);
            assert!(!ptext.contains(&stop), "{ptext:?} {stop:?}");
            assert_eq!(
                pent.len() as u64,
                plain_tokens,
                "plain logprobs keep every token"
            );
            // The streamed entries are the plain ones less at least the token that
            // completed the stop string.
            assert!(sent.len() < pent.len(), "{strategy}: nothing was cut");
            assert_eq!(sent[..], pent[..sent.len()], "{strategy}");
            checked += 1;
        }
    }
    assert!(checked >= 4, "too few answers to cut: {checked}");
    server.shutdown();
    server.wait().await.unwrap();
}

/// The token texts of `entries`, concatenated.
fn joined(entries: &[Entry]) -> String {
    entries.iter().map(|e| e.0.as_str()).collect()
}

#[tokio::test]
async fn smollm2_streams_logprobs_and_cuts_at_stop_strings() {
    let cfg = ServeConfig::for_models(
        thresh_models::testing::smollm2_gguf(),
        thresh_models::testing::minilm_dir(),
    );
    let server = start_ready(cfg).await;
    let c = client();
    let base = format!("http://{}", server.addr());
    for route in ["/v1/completions", "/v1/chat/completions"] {
        let q = if route == "/v1/completions" {
            "The capital of France is"
        } else {
            "What is the capital of France?"
        };
        let body = body_for(
            route,
            q,
            json!({"max_tokens": 16, "temperature": 0.7, "seed": 3}),
        );
        assert_same(&c, &base, route, &body, true).await;
        let body = body_for(
            route,
            q,
            json!({"max_tokens": 12, "temperature": 0.8, "seed": 2,
                   "alignment": {"strategy": "best_of_n", "candidates": 3}}),
        );
        assert_same(&c, &base, route, &body, true).await;
    }
    // A stop string inside the answer: the streamed tokens spell a prefix of the returned
    // text, the next token (the first one cut) runs past its end, and the count is the
    // completion tokens less the cut ones.
    let route = "/v1/completions";
    let body = body_for(
        route,
        "The capital of France is",
        json!({"max_tokens": 24, "temperature": 0}),
    );
    let (status, _, v) = post(&c, &format!("{base}{route}"), &body).await;
    assert_eq!(status, 200, "{v}");
    let text = v["choices"][0]["text"].as_str().unwrap();
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(words.len() >= 4, "{text:?}");
    let stop = format!(" {}", words[3]);
    assert!(text.contains(&stop), "{text:?}");
    let mut body = body.clone();
    body["stop"] = json!(stop);
    let (plain, plain_tokens, stream, stream_tokens) = both(&c, &base, route, &body, true).await;
    assert_eq!(plain_tokens, stream_tokens);
    let ((ptext, pent), (stext, sent)) = (&plain[0], &stream[0]);
    assert_eq!(stext, ptext);
    assert!(text.starts_with(ptext.as_str()) && ptext.len() < text.len());
    assert_eq!(sent[..], pent[..sent.len()]);
    assert!(
        ptext.starts_with(&joined(sent)),
        "{ptext:?} vs {:?}",
        joined(sent)
    );
    let cut = pent.len() - sent.len();
    assert!(cut >= 1);
    assert!(
        joined(&pent[..sent.len() + 1]).len() > ptext.len(),
        "the first token left off ends past the returned text"
    );
    // Independently: the tokens whose text ends past the returned text.
    let mut end = 0;
    let past = pent
        .iter()
        .filter(|e| {
            end += e.0.len();
            end > ptext.len()
        })
        .count();
    assert_eq!(sent.len() as u64, stream_tokens - past as u64);
    server.shutdown();
    server.wait().await.unwrap();
}
