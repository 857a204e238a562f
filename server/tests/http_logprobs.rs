//! `logprobs` over HTTP: the sampled tokens' log-probabilities in the completions and chat
//! shapes, for plain sampling and for an aligned strategy, on a tiny random model.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn sampled_token_logprobs_in_both_shapes() {
    let m = tiny_models(256);
    let server = start_ready(tiny_config(&m)).await;
    let c = client();
    // Greedy picks the argmax, whose probability is at least 1 / vocabulary.
    let floor = -(thresh_models::testing::BYTE_TOKENIZER_VOCAB as f64).ln() - 1e-4;
    for strategy in ["none", "best_of_n"] {
        let body = json!({"prompt": "Ice is", "max_tokens": 6, "temperature": 0, "logprobs": 0,
            "ignore_eos": true, "alignment": {"strategy": strategy, "candidates": 2}});
        let (status, _, v) = post(&c, &url(&server, "/v1/completions"), &body).await;
        assert_eq!(status, 200, "{v}");
        let lp = &v["choices"][0]["logprobs"];
        let tokens = lp["tokens"].as_array().unwrap();
        let values = lp["token_logprobs"].as_array().unwrap();
        let n = v["usage"]["completion_tokens"].as_u64().unwrap() as usize;
        assert_eq!(tokens.len(), n, "{v}");
        assert_eq!(values.len(), n);
        for x in values {
            let x = x.as_f64().unwrap();
            assert!(x <= 0.0 && x >= floor, "{strategy}: {x}");
        }
        let offsets: Vec<u64> = lp["text_offset"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_u64().unwrap())
            .collect();
        assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
    }
    let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
        "temperature": 0, "logprobs": true, "ignore_eos": true});
    let (status, _, v) = post(&c, &url(&server, "/v1/chat/completions"), &body).await;
    assert_eq!(status, 200, "{v}");
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 4);
    assert!(
        content
            .iter()
            .all(|e| e["logprob"].as_f64().unwrap() <= 0.0)
    );
    // Without the flag the field is null, as OpenAI sends it.
    let body = json!({"prompt": "Ice is", "max_tokens": 2});
    let (_, _, v) = post(&c, &url(&server, "/v1/completions"), &body).await;
    assert!(v["choices"][0]["logprobs"].is_null());
    // Alternatives are 400s naming the parameter (streaming is covered by
    // http_stream_logprobs.rs).
    for (body, param) in [
        (json!({"prompt": "x", "logprobs": 2}), "logprobs"),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 2}),
            "top_logprobs",
        ),
    ] {
        let route = if body.get("messages").is_some() {
            "/v1/chat/completions"
        } else {
            "/v1/completions"
        };
        let (status, _, v) = post(&c, &url(&server, route), &body).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
}
