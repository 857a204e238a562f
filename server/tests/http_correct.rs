//! `POST /correct` over real HTTP: a tiny random Llama corrector and the real SmolLM2 as a
//! stand-in corrector (same results as the corrector in process), batches, bad input, and
//! the 503 without a corrector.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;
use thresh_aligner::{AlignerTemplate, CorrectionInput, Corrector};
use thresh_decoding::{SamplingParams, StopConditions};
use thresh_models::{LoadOptions, load};
use thresh_server::serve::ServeConfig;

#[tokio::test]
async fn without_an_aligner_correct_is_503_and_says_how_to_load_one() {
    let m = tiny_models(256);
    let server = start_ready(tiny_config(&m)).await;
    let (status, _, v) = post(
        &client(),
        &url(&server, "/correct"),
        &json!({"question": "q", "answer": "a"}),
    )
    .await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "no_aligner");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--aligner")
    );
}

#[tokio::test]
async fn a_remote_corrector_corrects_as_the_same_model_in_process() {
    let m = tiny_models(256);
    // The backend serves the tiny policy behind a key; the gateway drives it as its Aligner,
    // sending that key.
    let mut backend_cfg = tiny_config(&m);
    backend_cfg.api_keys = vec!["aligner-key".into()];
    let backend = start_ready(backend_cfg).await;
    let mut cfg = tiny_config(&m);
    cfg.aligner = Some(url(&backend, "/v1").into());
    cfg.aligner_api_key = Some(thresh_reward::ApiKey::from("aligner-key".to_string()));
    cfg.aligner_tokenizer = Some(m.policy.clone());
    cfg.aligner_template = Some("v1".into());
    let gateway = start_ready(cfg).await;
    let c = client();
    let u = url(&gateway, "/correct");
    let pairs = [("Is ice hot?", "Yes."), ("Name a colour.", "Seven.")];
    let (status, _, v) = post(
        &c,
        &u,
        &json!({"inputs": pairs.iter().map(|(q, a)| json!({"question": q, "answer": a}))
                    .collect::<Vec<_>>(),
                "max_tokens": 6, "temperature": 0}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["template"], "v1");
    assert_eq!(v["model"], "tiny-policy", "the backend's model name");
    let model = load(m.policy.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let local = Corrector::new(Arc::new(model), AlignerTemplate::V1);
    let want = local
        .correct(
            &pairs
                .iter()
                .map(|(q, a)| CorrectionInput::new(*q, *a))
                .collect::<Vec<_>>(),
            &SamplingParams {
                temperature: 0.0,
                ..Default::default()
            },
            &StopConditions {
                max_tokens: 6,
                ..Default::default()
            },
            None,
        )
        .unwrap();
    assert!(want.iter().all(|w| w.completion_tokens > 0), "{want:?}");
    let got = v["corrections"].as_array().expect("corrections");
    assert_eq!(got.len(), 2, "{v}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g["correction"], json!(w.text), "{v}");
    }
    // The backend generated them: the gateway's client counts its answers from it (the
    // capability check's, then one a pair).
    let page = get_text(&c, &url(&gateway, "/metrics")).await;
    let from = format!("replica=\"{}/completions\"", url(&backend, "/v1"));
    assert!(
        metric(&page, "thresh_policy_replica_requests_total", &from) >= 3.0,
        "{page}"
    );
    for s in [gateway, backend] {
        s.shutdown();
        s.wait().await.unwrap();
    }
}

#[tokio::test]
async fn tiny_corrector_single_batch_and_errors() {
    let m = tiny_models(256);
    let mut cfg = tiny_config(&m);
    // The tiny policy doubles as the corrector, with the v1 template.
    cfg.aligner = Some(m.policy.clone());
    cfg.aligner_template = Some("v1".into());
    let server = start_ready(cfg).await;
    let c = client();
    let u = url(&server, "/correct");
    let (status, _, one) = post(
        &c,
        &u,
        &json!({"question": "Is ice hot?", "answer": "Yes.", "max_tokens": 5}),
    )
    .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["template"], "v1");
    assert_eq!(one["model"], "tiny-policy");
    // The same pair in process, rendered with the same template, gives the same text.
    let model = load(m.policy.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let corrector = Corrector::new(Arc::new(model), AlignerTemplate::V1);
    let want = corrector
        .correct(
            &[CorrectionInput::new("Is ice hot?", "Yes.")],
            &SamplingParams {
                temperature: 0.0,
                ..Default::default()
            },
            &StopConditions {
                max_tokens: 5,
                ..Default::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(one["correction"], json!(want[0].text));
    assert_eq!(
        one["usage"]["prompt_tokens"].as_u64().unwrap() as usize,
        want[0].prompt_tokens
    );
    // A batch: the second pair's correction equals the single request's.
    let (status, _, batch) = post(
        &c,
        &u,
        &json!({"inputs": [
            {"messages": [{"role": "user", "content": "Name a colour."}], "answer": "Seven."},
            {"question": "Is ice hot?", "answer": "Yes."}
        ], "max_tokens": 5}),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["corrections"].as_array().unwrap().len(), 2);
    assert_eq!(batch["corrections"][1]["correction"], one["correction"]);
    assert!(batch.get("correction").is_none());
    // Bad input: each a 400 naming the field.
    for (body, param) in [
        (json!({"question": " ", "answer": "a"}), "question"),
        (json!({"question": "q", "answer": ""}), "answer"),
        (json!({"question": "q"}), "answer"),
        (json!({"inputs": []}), "inputs"),
        (
            json!({"inputs": [{"question": "q", "answer": ""}]}),
            "inputs[0].answer",
        ),
        (
            json!({"question": "q", "answer": "a", "max_tokens": 100000}),
            "max_tokens",
        ),
        (
            json!({"question": "q", "answer": "x".repeat(400), "max_tokens": 5}),
            "inputs",
        ),
        (
            json!({"question": "q", "answer": "a", "stream": true}),
            "stream",
        ),
        (
            json!({"question": "q", "answer": "a", "model": "nope"}),
            "model",
        ),
    ] {
        let (status, _, v) = post(&c, &u, &body).await;
        let want_status = if param == "model" { 404 } else { 400 };
        assert_eq!(status, want_status, "{body}: {v}");
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
    }
}

#[tokio::test]
async fn smollm2_as_a_stand_in_corrector() {
    let smol = thresh_models::testing::smollm2_gguf();
    let mut cfg = ServeConfig::for_models(smol.clone(), thresh_models::testing::minilm_dir());
    cfg.aligner = Some(smol);
    let server = start_ready(cfg).await;
    let (status, _, v) = post(
        &client(),
        &url(&server, "/correct"),
        &json!({"question": "What is the capital of France?",
                "answer": "The capital of France is Berlin.", "max_tokens": 16}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["template"], "current");
    let text = v["correction"].as_str().unwrap();
    assert!(!text.is_empty());
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 16);
    let models: serde_json::Value = client()
        .get(url(&server, "/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(models.to_string().contains("\"aligner\""), "{models}");
}

#[tokio::test]
async fn generate_then_correct_pipelines() {
    let m = tiny_models(256);
    let mut cfg = tiny_config(&m);
    cfg.aligner = Some(m.policy.clone());
    let server = start_ready(cfg).await;
    let c = client();
    for route in ["/v1/completions", "/v1/chat/completions"] {
        for mode in [json!(true), json!("guarded")] {
            let mut body = json!({"max_tokens": 6, "seed": 3, "temperature": 0.9, "n": 2,
                "alignment": {"strategy": "best_of_n", "candidates": 3, "correct": mode}});
            if route == "/v1/completions" {
                body["prompt"] = json!("Tell me about ice");
            } else {
                body["messages"] = json!([{"role": "user", "content": "Tell me about ice"}]);
            }
            let (status, _, v) = post(&c, &url(&server, route), &body).await;
            assert_eq!(status, 200, "{route} {mode}: {v}");
            for ch in v["choices"].as_array().unwrap() {
                let k = &ch["correction"];
                let text = ch["text"].as_str().or(ch["message"]["content"].as_str());
                let orig = k["original_reward"].as_f64().unwrap();
                // An empty correction is not scored (null) and never wins a guarded choice.
                let corr = k["corrected_reward"].as_f64();
                if corr.is_none() {
                    assert_eq!(
                        k["corrected"], "",
                        "only an empty correction is unscored: {v}"
                    );
                }
                let returned = k["returned"].as_str().unwrap();
                if mode == json!(true) {
                    assert_eq!(returned, "corrected");
                } else {
                    // Guarded: the better-scored text wins, and its reward is reported.
                    assert_eq!(
                        returned == "corrected",
                        corr.is_some_and(|c| c >= orig),
                        "{v}"
                    );
                }
                let (want_text, want_reward) = if returned == "corrected" {
                    (&k["corrected"], corr)
                } else {
                    (&k["original"], Some(orig))
                };
                assert_eq!(text, want_text.as_str(), "{v}");
                match want_reward {
                    Some(r) => assert!((ch["reward"].as_f64().unwrap() - r).abs() < 1e-6),
                    None => assert!(ch["reward"].is_null(), "{v}"),
                }
            }
        }
    }
    // Under a grammar a correction must keep the structure: the random tiny aligner's text is
    // not one of the choices, so it is reported and the original answer returned.
    let body = json!({"prompt": "Is ice cold?", "max_tokens": 6, "seed": 3, "temperature": 0.9,
        "guided_choice": ["yes", "no"],
        "alignment": {"strategy": "best_of_n", "candidates": 2, "correct": true}});
    let (status, _, v) = post(&c, &url(&server, "/v1/completions"), &body).await;
    assert_eq!(status, 200, "{v}");
    let ch = &v["choices"][0];
    let k = &ch["correction"];
    assert!(
        !["yes", "no"].contains(&k["corrected"].as_str().unwrap()),
        "{v}"
    );
    assert_eq!(k["follows_format"], false, "{v}");
    assert_eq!(k["returned"], "original", "{v}");
    assert!(["yes", "no"].contains(&ch["text"].as_str().unwrap()), "{v}");
    // Bad modes and streaming are 400s naming the field.
    for alignment in [
        json!({"correct": "sometimes"}),
        json!({"correct": true, "stream": true}),
    ] {
        let mut body =
            json!({"prompt": "x", "max_tokens": 2, "alignment": {"correct": alignment["correct"]}});
        if alignment.get("stream").is_some() {
            body["stream"] = json!(true);
        }
        let (status, _, v) = post(&c, &url(&server, "/v1/completions"), &body).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["param"], "alignment.correct");
    }
}

#[tokio::test]
async fn correct_in_a_completion_without_an_aligner_is_a_400_naming_the_field() {
    let m = tiny_models(256);
    let server = start_ready(tiny_config(&m)).await;
    let (status, _, v) = post(
        &client(),
        &url(&server, "/v1/completions"),
        &json!({"prompt": "x", "max_tokens": 2, "alignment": {"correct": "guarded"}}),
    )
    .await;
    // The server's set-up, not a passing state: retrying cannot help, so not a 503.
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "alignment.correct");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("--aligner"), "{message}");
}
