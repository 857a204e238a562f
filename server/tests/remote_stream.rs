//! Plain requests streamed through a gateway (`--policy http://...`) arrive token by token, as
//! the backend streams them: the deltas add up to exactly the answer the same request gets
//! whole (text, token ids and log-probabilities), stop strings cut the stream where they
//! cut the whole answer, and a thresh gateway streams its backend's token ids on.

mod common;

use common::{
    client, data_events, ids, post, post_stream, start_ready, tiny_config, tiny_models, url,
};
use serde_json::{Value, json};

/// The chunks of answer `i` in a stream's data events.
fn chunks_of(events: &[Value], i: usize) -> Vec<Value> {
    events
        .iter()
        .filter_map(|e| {
            e["choices"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["index"] == i).cloned())
        })
        .collect()
}

#[tokio::test]
async fn a_gateway_streams_a_remote_policy_token_by_token() {
    let m = tiny_models(256);
    let backend = start_ready(tiny_config(&m)).await;
    let mut cfg = tiny_config(&m);
    cfg.policy = std::path::PathBuf::from(url(&backend, "/v1"));
    cfg.policy_tokenizer = Some(m.policy.clone());
    let gateway = start_ready(cfg).await;
    let c = client();
    let at = url(&gateway, "/v1/completions");

    let body = json!({"prompt": "hello", "max_tokens": 12, "n": 2, "seed": 5,
                      "ignore_eos": true, "logprobs": 0, "return_token_ids": true});
    let (status, _, whole) = post(&c, &at, &body).await;
    assert_eq!(status, 200, "{whole}");
    let (_, _, direct) = post(&c, &url(&backend, "/v1/completions"), &body).await;
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, events) = post_stream(&c, &at, &streamed).await;
    assert_eq!(status, 200);
    let events = data_events(&events);
    for i in 0..2 {
        let chunks = chunks_of(&events, i);
        let texts: Vec<&str> = chunks.iter().filter_map(|c| c["text"].as_str()).collect();
        let text: String = texts.concat();
        assert_eq!(text, whole["choices"][i]["text"].as_str().unwrap(), "{i}");
        assert_eq!(text, direct["choices"][i]["text"].as_str().unwrap(), "{i}");
        assert!(
            texts.iter().filter(|t| !t.is_empty()).count() > 1,
            "token by token, not one delta per answer: {texts:?}"
        );
        let joined: Vec<u64> = chunks
            .iter()
            .filter(|c| c.get("token_ids").is_some())
            .flat_map(|c| ids(&c["token_ids"]))
            .collect();
        assert_eq!(joined, ids(&whole["choices"][i]["token_ids"]), "{i}");
        let lps: Vec<f64> = chunks
            .iter()
            .filter_map(|c| c["logprobs"]["token_logprobs"].as_array())
            .flatten()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let want: Vec<f64> = whole["choices"][i]["logprobs"]["token_logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(lps.len(), 12, "{chunks:?}");
        assert!(
            lps.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-4),
            "{lps:?} {want:?}"
        );
        let last = chunks.last().unwrap();
        assert_eq!(last["finish_reason"], "length", "{last}");
    }
    let usage = events
        .iter()
        .rev()
        .find(|e| e["usage"].is_object())
        .unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 24, "{usage}");

    // A stop string ends the stream where it ends the whole answer, and is left out.
    let text = whole["choices"][0]["text"].as_str().unwrap();
    let cut = text.char_indices().nth(4).map_or(0, |(j, _)| j);
    let stop: String = text[cut..].chars().take(2).collect();
    let mut with_stop = json!({"prompt": "hello", "max_tokens": 12, "n": 2, "seed": 5,
                               "ignore_eos": true, "stop": [stop]});
    let (_, _, whole) = post(&c, &at, &with_stop).await;
    with_stop["stream"] = json!(true);
    let (status, events) = post_stream(&c, &at, &with_stop).await;
    assert_eq!(status, 200);
    let events = data_events(&events);
    let answer: String = chunks_of(&events, 0)
        .iter()
        .filter_map(|c| c["text"].as_str())
        .collect();
    assert_eq!(answer, whole["choices"][0]["text"].as_str().unwrap());
    assert!(!answer.contains(stop.as_str()), "{answer:?} {stop:?}");
    assert_eq!(
        chunks_of(&events, 0).last().unwrap()["finish_reason"],
        "stop"
    );

    // Chat, one answer: deltas add up to the message.
    let chat = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10,
                      "seed": 2, "ignore_eos": true});
    let chat_at = url(&gateway, "/v1/chat/completions");
    let (_, _, whole) = post(&c, &chat_at, &chat).await;
    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    let (_, events) = post_stream(&c, &chat_at, &streamed).await;
    let pieces: Vec<String> = data_events(&events)
        .iter()
        .filter_map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .filter(|t| !t.is_empty())
        .collect();
    assert!(pieces.len() > 1, "{pieces:?}");
    assert_eq!(
        pieces.concat(),
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );
    for s in [gateway, backend] {
        s.shutdown();
        s.wait().await.unwrap();
    }
}
