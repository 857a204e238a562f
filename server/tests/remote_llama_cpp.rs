//! thresh over a real llama.cpp `llama-server` (built by `scripts/build-llama-cpp.sh`, serving
//! the demo SmolLM2 GGUF on loopback): the engine is recognised, `n` beyond its slots is split,
//! seeds reproduce, the end-of-generation token is left out, and a thresh gateway runs Best-of-N
//! and Speculative Rejection over it with exact token accounting.

mod common;
mod remote_common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{client, post, start_ready, url};
use remote_common::request;
use serde_json::{Value, json};
use thresh_decoding::SamplingParams;
use thresh_decoding::error::DecodeError;
use thresh_decoding::remote::{Engine, RemotePolicy};
use thresh_server::serve::ServeConfig;

/// Slots the test server runs with (`-np`).
const SLOTS: usize = 2;

/// A llama-server child process, killed when dropped.
struct LlamaServer {
    child: Child,
    base: String,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn llama_server_bin() -> PathBuf {
    let bin = std::env::var_os("LLAMA_SERVER").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/llama.cpp/bin/llama-server"),
        PathBuf::from,
    );
    assert!(
        bin.exists(),
        "{} missing: run scripts/build-llama-cpp.sh (or set LLAMA_SERVER)",
        bin.display()
    );
    bin
}

/// Starts llama-server on the demo GGUF and waits for its `/health`.
fn start_llama_server() -> LlamaServer {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(llama_server_bin())
        .args(["-m"])
        .arg(thresh_models::testing::smollm2_gguf())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["-np", &SLOTS.to_string(), "-c", "4096", "-t", "2"])
        // --no-repack: llama.cpp's repacked batched matmul crashes on some AMX hosts.
        .args(["--no-repack", "--no-webui", "--no-warmup"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("llama-server starts");
    let server = LlamaServer {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .new_agent();
    let t = Instant::now();
    loop {
        let up = agent
            .get(format!("{}/health", server.base))
            .call()
            .is_ok_and(|r| r.status() == 200);
        if up {
            return server;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "llama-server did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_llama_server_is_recognised_and_answers_in_token_ids() {
    let llama = start_llama_server();
    let policy = RemotePolicy::new(&format!("{}/v1", llama.base)).unwrap();
    let info = policy.probe().unwrap();
    assert_eq!(info.engine, Engine::LlamaCpp { slots: SLOTS });
    assert!(info.max_model_len.is_some_and(|c| c >= 1024), "{info:?}");
    let files =
        thresh_models::load_tokenizer(&thresh_models::testing::smollm2_gguf().to_string_lossy())
            .unwrap();
    let tok = &files.tokenizer;
    let chat = |q: &str| common::smollm_chat_ids(tok, q);

    // More rows than slots: split into requests of at most SLOTS, the right seeds each.
    let prompt = chat("Write a short poem about the sea.");
    let sampling = SamplingParams {
        seed: 3,
        ..Default::default()
    };
    let five = policy.complete(&request(&prompt, 5, 8, &sampling)).unwrap();
    assert_eq!(five.choices.len(), 5);
    for c in &five.choices {
        assert!(!c.token_ids.is_empty() && c.token_ids.len() <= 8, "{c:?}");
        assert_eq!(c.token_logprobs.len(), c.token_ids.len());
        assert!(
            c.token_logprobs.iter().all(|&l| l <= 0.0 && l.is_finite()),
            "{c:?}"
        );
    }
    let distinct: std::collections::HashSet<&Vec<u32>> =
        five.choices.iter().map(|c| &c.token_ids).collect();
    assert!(
        distinct.len() > 1,
        "rows sample with different seeds: {five:?}"
    );
    let again = policy.complete(&request(&prompt, 5, 8, &sampling)).unwrap();
    let ids = |a: &thresh_decoding::remote::CompletionAnswer| {
        a.choices
            .iter()
            .map(|c| c.token_ids.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&again), ids(&five), "the same seed, the same rows");
    assert!(five.prompt_tokens >= prompt.len(), "{five:?}");

    // Greedy to the end: the answer stops on EOS, which is not among its tokens.
    let greedy = SamplingParams {
        temperature: 0.0,
        ..Default::default()
    };
    let hi = chat("Answer with one word: what color is the sky?");
    let a = policy.complete(&request(&hi, 1, 96, &greedy)).unwrap();
    let c = &a.choices[0];
    assert_eq!(c.finish_reason, "stop", "{c:?}");
    assert!(
        c.token_ids
            .iter()
            .all(|t| !files.config.eos_token_ids.contains(t)),
        "{c:?}"
    );
    assert!(!tok.decode(&c.token_ids, true).unwrap().trim().is_empty());

    // llama-server has no min_tokens: refused as the request's fault, not the server's.
    let mut req = request(&hi, 1, 8, &greedy);
    req.min_tokens = 4;
    match policy.complete(&req) {
        Err(DecodeError::InvalidParameter(m)) => assert!(m.contains("min_tokens"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_gateway_runs_its_strategies_over_a_llama_server() {
    let llama = tokio::task::spawn_blocking(start_llama_server)
        .await
        .unwrap();
    let gguf = thresh_models::testing::smollm2_gguf();
    let mut cfg = ServeConfig::for_models(
        PathBuf::from(format!("{}/v1", llama.base)),
        thresh_models::testing::minilm_dir(),
    );
    cfg.policy_tokenizer = Some(gguf);
    let gateway = start_ready(cfg).await;
    let c = client();
    let at = url(&gateway, "/v1/completions");
    let chat = url(&gateway, "/v1/chat/completions");
    let ask = json!([{"role": "user", "content": "Give me a tip for learning to cook."}]);

    // Plain sampling, n beyond the slots.
    let (status, _, v) = post(
        &c,
        &chat,
        &json!({"messages": ask, "n": 3, "max_tokens": 8,
        "seed": 1}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"].as_array().unwrap().len(), 3, "{v}");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{v}");
    assert!(v["choices"][0]["logprobs"].is_null(), "none unasked: {v}");

    // Streamed, token by token as llama-server streams them, to the same answers.
    let body = json!({"prompt": "The kitchen", "max_tokens": 10, "n": 2, "seed": 4,
                      "ignore_eos": true, "return_token_ids": true});
    let (status, _, whole) = post(&c, &at, &body).await;
    assert_eq!(status, 200, "{whole}");
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (status, events) = common::post_stream(&c, &at, &streamed).await;
    assert_eq!(status, 200);
    let events = common::data_events(&events);
    for i in 0..2 {
        let chunks: Vec<&Value> = events
            .iter()
            .filter_map(|e| e["choices"].as_array()?.iter().find(|c| c["index"] == i))
            .collect();
        let texts: Vec<&str> = chunks.iter().filter_map(|c| c["text"].as_str()).collect();
        assert!(
            texts.iter().filter(|t| !t.is_empty()).count() > 1,
            "{texts:?}"
        );
        assert_eq!(
            texts.concat(),
            whole["choices"][i]["text"].as_str().unwrap()
        );
        let joined: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["token_ids"].as_array())
            .flatten()
            .collect();
        assert_eq!(json!(joined), whole["choices"][i]["token_ids"], "{i}");
    }

    // Log-probabilities when asked (llama-server's n_probs), one per token.
    common::assert_logprobs_when_asked(&c, &at).await;

    // Best-of-N: every candidate to the end, one returned.
    let bon = json!({"messages": ask, "max_tokens": 24, "seed": 2, "ignore_eos": true,
        "alignment": {"strategy": "best_of_n", "candidates": 4}});
    let (status, _, v) = post(&c, &chat, &bon).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["alignment"]["stats"]["candidates"], 4, "{v}");
    assert_eq!(v["alignment"]["stats"]["policy_tokens"], 4 * 24, "{v}");
    assert!(v["choices"][0]["reward"].is_number(), "{v}");

    // Speculative Rejection prunes at its decision points and pays only for what it keeps;
    // later rounds continue rows whose prompts llama-server's slots partly hold.
    let sr = json!({"messages": ask, "max_tokens": 24, "seed": 2, "ignore_eos": true,
        "alignment": {"strategy": "speculative_rejection", "candidates": 8, "alpha": 0.5,
                      "decision_tokens": [6, 12]}});
    let (status, _, v) = post(&c, &chat, &sr).await;
    assert_eq!(status, 200, "{v}");
    let stats = &v["alignment"]["stats"];
    assert_eq!(stats["pruned_per_round"], json!([4, 2]), "{v}");
    assert_eq!(stats["policy_tokens"], 8 * 6 + 4 * 6 + 2 * 12, "{v}");
    assert!(stats["cached_prompt_tokens"].as_u64().unwrap() > 0, "{v}");
    let (_, _, again) = post(&c, &chat, &sr).await;
    assert_eq!(
        again["choices"][0]["message"]["content"], v["choices"][0]["message"]["content"],
        "the same seed, the same answer"
    );

    // What llama-server cannot do is a 400 that says so.
    let (status, _, v) = post(
        &c,
        &at,
        &json!({"prompt": "hi", "max_tokens": 8,
        "min_tokens": 2}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("min_tokens"),
        "{v}"
    );

    // Without the tokenizer's files: llama-server's own /tokenize, /detokenize and the
    // template and special tokens of its /props give the same prompts and answers.
    let mut own = ServeConfig::for_models(
        PathBuf::from(format!("{}/v1", llama.base)),
        thresh_models::testing::minilm_dir(),
    );
    own.policy_tokenizer = None;
    let bare = start_ready(own).await;
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"messages": ask, "max_tokens": 12, "temperature": 0}),
        ),
        (
            "/v1/completions",
            json!({"prompt": "The kitchen", "max_tokens": 10, "n": 2, "seed": 4}),
        ),
    ] {
        let (s1, _, files) = post(&c, &url(&gateway, path), &body).await;
        let (s2, _, served) = post(&c, &url(&bare, path), &body).await;
        assert_eq!((s1, s2), (200, 200), "{files} {served}");
        assert_eq!(
            files["usage"]["prompt_tokens"],
            served["usage"]["prompt_tokens"]
        );
        for i in 0..files["choices"].as_array().unwrap().len() {
            let (a, b) = (&files["choices"][i], &served["choices"][i]);
            assert_eq!(a["text"], b["text"], "{body}");
            assert_eq!(a["message"], b["message"], "{body}");
            assert_eq!(a["finish_reason"], b["finish_reason"], "{body}");
        }
    }
    for s in [bare, gateway] {
        s.shutdown();
        s.wait().await.unwrap();
    }
    drop(llama);
}
