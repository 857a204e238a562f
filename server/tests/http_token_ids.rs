//! `return_token_ids` (vLLM's shape): the prompt's and each answer's token ids, so a client
//! (a thresh gateway running Speculative Rejection by rounds) can continue a row exactly.

mod common;

use common::{client, ids, post, start_ready, tiny_config, tiny_models, url};
use serde_json::{Value, json};

#[tokio::test]
async fn token_ids_come_back_and_continuing_from_them_is_exact() {
    let m = tiny_models(256);
    let server = start_ready(tiny_config(&m)).await;
    let c = client();
    let u = url(&server, "/v1/completions");

    // Text prompt, two answers: each choice carries the prompt's ids and its own.
    let (status, _, v) = post(
        &c,
        &u,
        &json!({"prompt": "hello", "max_tokens": 6, "n": 2, "seed": 3,
                "ignore_eos": true, "return_token_ids": true}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let prompt_ids = ids(&v["choices"][0]["prompt_token_ids"]);
    assert_eq!(
        prompt_ids.len() as u64,
        v["usage"]["prompt_tokens"].as_u64().unwrap()
    );
    let mut total = 0;
    for ch in v["choices"].as_array().unwrap() {
        assert_eq!(ids(&ch["prompt_token_ids"]), prompt_ids);
        let t = ids(&ch["token_ids"]);
        assert_eq!(t.len(), 6, "{ch}");
        total += t.len() as u64;
    }
    assert_eq!(total, v["usage"]["completion_tokens"].as_u64().unwrap());
    // Without the flag, no ids.
    let (_, _, plain) = post(&c, &u, &json!({"prompt": "hello", "max_tokens": 2})).await;
    assert!(plain["choices"][0].get("token_ids").is_none(), "{plain}");

    // Greedy: 8 tokens at once equal 4 tokens, then 4 more from the ids of the first 4.
    let greedy = |prompt: Value, n: u64| {
        json!({"prompt": prompt, "max_tokens": n, "temperature": 0,
               "ignore_eos": true, "return_token_ids": true})
    };
    let (_, _, whole) = post(&c, &u, &greedy(json!(prompt_ids), 8)).await;
    let whole_ids = ids(&whole["choices"][0]["token_ids"]);
    let (_, _, first) = post(&c, &u, &greedy(json!(prompt_ids), 4)).await;
    let first_ids = ids(&first["choices"][0]["token_ids"]);
    assert_eq!(ids(&first["choices"][0]["prompt_token_ids"]), prompt_ids);
    let mut cont_prompt = prompt_ids.clone();
    cont_prompt.extend(&first_ids);
    let (_, _, rest) = post(&c, &u, &greedy(json!(cont_prompt), 4)).await;
    let mut joined = first_ids.clone();
    joined.extend(ids(&rest["choices"][0]["token_ids"]));
    assert_eq!(joined, whole_ids, "continuing from token ids is exact");

    // Aligned answers carry their ids too.
    let (status, _, v) = post(
        &c,
        &u,
        &json!({"prompt": "hello", "max_tokens": 4, "return_token_ids": true,
                "alignment": {"strategy": "best_of_n", "candidates": 3}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(ids(&v["choices"][0]["token_ids"]).len() <= 4, "{v}");

    // Streamed, as vLLM streams them: each chunk's ids are the new ones, and they add up to
    // the whole answer's; the first chunk of each answer carries the prompt's.
    let body = json!({"prompt": "hello", "max_tokens": 6, "n": 2, "seed": 3,
                      "ignore_eos": true, "return_token_ids": true});
    let (_, _, whole) = post(&c, &u, &body).await;
    for aligned in [false, true] {
        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        if aligned {
            streamed["n"] = json!(1);
            streamed["alignment"] = json!({"strategy": "best_of_n", "candidates": 3});
        }
        let (status, events) = common::post_stream(&c, &u, &streamed).await;
        assert_eq!(status, 200);
        let (_, _, want) = post(&c, &u, &{
            let mut b = streamed.clone();
            b["stream"] = json!(false);
            b
        })
        .await;
        let n = if aligned { 1 } else { 2 };
        for i in 0..n {
            let chunks: Vec<Value> = common::data_events(&events)
                .into_iter()
                .filter_map(|e| {
                    e["choices"]
                        .as_array()
                        .and_then(|cs| cs.iter().find(|c| c["index"] == i).cloned())
                })
                .collect();
            assert_eq!(ids(&chunks[0]["prompt_token_ids"]), prompt_ids);
            assert!(
                chunks[1..]
                    .iter()
                    .all(|c| c.get("prompt_token_ids").is_none())
            );
            let joined: Vec<u64> = chunks
                .iter()
                .filter(|c| c.get("token_ids").is_some())
                .flat_map(|c| ids(&c["token_ids"]))
                .collect();
            assert_eq!(
                joined,
                ids(&want["choices"][i]["token_ids"]),
                "{aligned} {i}"
            );
            let with_ids = chunks
                .iter()
                .filter(|c| c.get("token_ids").is_some())
                .count();
            if !aligned {
                assert_eq!(joined, ids(&whole["choices"][i]["token_ids"]));
                assert!(with_ids > 1, "token by token: {chunks:?}");
            }
        }
    }
    server.shutdown();
    server.wait().await.unwrap();
}
