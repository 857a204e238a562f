//! Structured outputs over real HTTP on the demo models (SmolLM2 policy, MiniLM reward):
//! `response_format` with JSON schemas and JSON-object mode, vLLM's `guided_*` fields, under
//! plain sampling and every strategy, streamed and not; malformed or uncompilable grammars
//! are a 400 naming the field.

mod common;

use common::*;
use serde_json::{Value, json};
use thresh_server::serve::ServeConfig;

fn schemas() -> Vec<(&'static str, Value)> {
    let name = json!({"type": "string", "minLength": 1, "maxLength": 12});
    vec![
        (
            "Describe a cat.",
            json!({"type": "object", "properties": {"name": name, "age": {"type": "integer", "minimum": 0, "maximum": 25}},
                   "required": ["name", "age"], "additionalProperties": false}),
        ),
        (
            "List two colours.",
            json!({"type": "object", "properties": {"colours": {"type": "array", "minItems": 2, "maxItems": 2,
                   "items": {"enum": ["red", "green", "blue", "yellow"]}}}, "required": ["colours"],
                   "additionalProperties": false}),
        ),
        (
            "Who wrote Hamlet?",
            json!({"type": "object", "properties": {"author": {"type": "object",
                   "properties": {"first": name, "last": name}, "required": ["first", "last"],
                   "additionalProperties": false},
                   "sure": {"type": "boolean"}}, "required": ["author", "sure"],
                   "additionalProperties": false}),
        ),
    ]
}

fn assert_valid(schema: &Value, text: &str, what: &str) {
    let value: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: {text:?} is not JSON: {e}"));
    assert!(
        jsonschema::validator_for(schema).unwrap().is_valid(&value),
        "{what}: {text} does not follow {schema}"
    );
}

fn format_of(schema: &Value) -> Value {
    json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": true}})
}

#[tokio::test]
async fn every_strategy_answers_in_the_requested_schema() {
    let cfg = ServeConfig::for_models(
        thresh_models::testing::smollm2_gguf(),
        thresh_models::testing::minilm_dir(),
    );
    let server = start_ready(cfg).await;
    let c = client();
    let chat = url(&server, "/v1/chat/completions");
    for (i, (question, schema)) in schemas().into_iter().enumerate() {
        for strategy in [
            "none",
            "best_of_n",
            "speculative_rejection",
            "soft_best_of_n",
            "rejection_sampling",
        ] {
            let body = json!({"messages": [{"role": "user", "content": question}],
                "max_tokens": 96, "seed": 11 + i, "temperature": 0.8,
                "response_format": format_of(&schema),
                "alignment": {"strategy": strategy, "candidates": 4, "return_candidates": true,
                              "threshold": -1.0, "decision_tokens": [6]}});
            let mut body = body;
            if strategy != "speculative_rejection" {
                body["alignment"]
                    .as_object_mut()
                    .unwrap()
                    .remove("decision_tokens");
            }
            let (status, _, v) = post(&c, &chat, &body).await;
            assert_eq!(status, 200, "{strategy}: {v}");
            let choice = &v["choices"][0];
            assert_eq!(choice["finish_reason"], "stop", "{strategy}: {v}");
            let text = choice["message"]["content"].as_str().unwrap();
            assert_valid(&schema, text, &format!("case {i} {strategy}"));
            // Every candidate that finished is valid too, not only the chosen one.
            for cand in v["alignment"]["candidates"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if cand["finish_reason"] == "stop" && cand["pruned_round"].is_null() {
                    assert_valid(
                        &schema,
                        cand["text"].as_str().unwrap(),
                        &format!("case {i} {strategy} candidate"),
                    );
                }
            }
            // The same seed gives the same answer.
            let (_, _, again) = post(&c, &chat, &body).await;
            assert_eq!(
                again["choices"][0]["message"]["content"], choice["message"]["content"],
                "{strategy}"
            );
        }
    }

    // Concurrent requests share decode passes (continuous batching); each row keeps its own
    // grammar, and each answer equals the one it got alone.
    let bodies: Vec<Value> = schemas()
        .iter()
        .enumerate()
        .map(|(i, (q, schema))| {
            json!({"messages": [{"role": "user", "content": q}], "max_tokens": 96, "seed": 40 + i,
                   "response_format": format_of(schema), "alignment": {"strategy": "best_of_n", "candidates": 3}})
        })
        .collect();
    let mut alone = Vec::new();
    for b in &bodies {
        alone.push(post(&c, &chat, b).await.2);
    }
    let page = get_text(&c, &url(&server, "/metrics")).await;
    let before = (
        metric(&page, "thresh_decode_passes_total", ""),
        metric(&page, "thresh_decode_pass_requests_sum", ""),
    );
    let together = futures_util::future::join_all(bodies.iter().map(|b| post(&c, &chat, b))).await;
    let page = get_text(&c, &url(&server, "/metrics")).await;
    let passes = metric(&page, "thresh_decode_passes_total", "") - before.0;
    let requests = metric(&page, "thresh_decode_pass_requests_sum", "") - before.1;
    assert!(
        requests > passes,
        "no decode pass merged two requests: {passes} passes, {requests}"
    );
    for (i, ((_, _, v), solo)) in together.iter().zip(&alone).enumerate() {
        let text = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert_valid(&schemas()[i].1, text, &format!("concurrent {i}"));
        assert_eq!(
            v["choices"][0]["message"], solo["choices"][0]["message"],
            "concurrent {i}"
        );
    }

    // Streamed: the deltas add up to a valid answer.
    let (question, schema) = &schemas()[0];
    let body = json!({"messages": [{"role": "user", "content": question}], "max_tokens": 96,
        "seed": 5, "stream": true, "response_format": format_of(schema)});
    let (status, events) = post_stream(&c, &chat, &body).await;
    assert_eq!(status, 200);
    let text: String = data_events(&events)
        .iter()
        .filter_map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_valid(schema, &text, "streamed");

    // JSON-object mode and vLLM's guided fields on /v1/completions.
    let completions = url(&server, "/v1/completions");
    let (status, _, v) = post(
        &c,
        &completions,
        &json!({"prompt": "A JSON object describing a dog:",
        "max_tokens": 64, "seed": 1, "guided_choice": ["dog", "cat"]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(
        ["dog", "cat"].contains(&v["choices"][0]["text"].as_str().unwrap()),
        "{v}"
    );
    let (status, _, v) = post(
        &c,
        &completions,
        &json!({"prompt": "The year is",
        "max_tokens": 8, "seed": 1, "guided_regex": "[12][0-9]{3}"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let year = v["choices"][0]["text"].as_str().unwrap();
    assert!(year.len() == 4 && year.parse::<u32>().is_ok(), "{v}");
    let mut objects = 0;
    for seed in 0..3 {
        let (status, _, v) = post(
            &c,
            &chat,
            &json!({"messages": [{"role": "user", "content": "Describe a dog as JSON."}],
            "max_tokens": 128, "seed": seed, "response_format": {"type": "json_object"}}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        if v["choices"][0]["finish_reason"] == "stop" {
            let text = v["choices"][0]["message"]["content"].as_str().unwrap();
            assert!(
                serde_json::from_str::<Value>(text).unwrap().is_object(),
                "{text}"
            );
            objects += 1;
        }
    }
    assert!(objects >= 1, "no JSON object ended within 128 tokens");

    // Errors name the field.
    for (body, param) in [
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "a",
            "schema": {"type": "object", "properties": {"a": {"type": "nonsense"}}}}}}),
            "response_format",
        ),
        (json!({"guided_regex": "(unclosed"}), "guided_regex"),
        (
            json!({"guided_grammar": "start: missing_rule"}),
            "guided_grammar",
        ),
        (
            json!({"response_format": {"type": "json_schema"}}),
            "response_format.json_schema",
        ),
        (
            json!({"response_format": {"type": "json_object"}, "guided_json": {"type": "object"}}),
            "guided_json",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"}),
            "tool_choice",
        ),
    ] {
        let mut body = body;
        body["messages"] = json!([{"role": "user", "content": "hi"}]);
        let (status, _, v) = post(&c, &chat, &body).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["param"], param, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    }
}

fn weather_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string", "minLength": 1, "maxLength": 16},
                "unit": {"enum": ["celsius", "fahrenheit"]}},
                "required": ["city", "unit"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "get_time", "description": "The time in a zone",
            "parameters": {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET", "PST"]}},
                "required": ["zone"], "additionalProperties": false}}},
    ])
}

/// Each call names a declared function and its arguments follow that function's schema.
fn assert_calls(v: &Value, only: Option<&str>) {
    let tools = weather_tools();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    assert!(choice["message"]["content"].is_null(), "{v}");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert!(!calls.is_empty(), "{v}");
    for call in calls {
        assert_eq!(call["type"], "function");
        assert!(call["id"].as_str().unwrap().starts_with("call_"));
        let name = call["function"]["name"].as_str().unwrap();
        if let Some(only) = only {
            assert_eq!(name, only, "{v}");
        }
        let declared = tools
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["function"]["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not declared: {v}"));
        let args = call["function"]["arguments"].as_str().unwrap();
        assert_valid(&declared["function"]["parameters"], args, name);
    }
}

#[tokio::test]
async fn tool_calls_name_a_declared_function_with_valid_arguments() {
    let cfg = ServeConfig::for_models(
        thresh_models::testing::smollm2_gguf(),
        thresh_models::testing::minilm_dir(),
    );
    let server = start_ready(cfg).await;
    let c = client();
    let chat = url(&server, "/v1/chat/completions");
    let ask = json!([{"role": "user", "content": "What is the weather in Paris?"}]);
    for strategy in ["none", "best_of_n", "speculative_rejection"] {
        for seed in 0..2 {
            // One call per answer, so the grammar closes the list and the answer ends.
            let body = json!({"messages": ask, "tools": weather_tools(), "tool_choice": "required",
                "parallel_tool_calls": false, "max_tokens": 96, "seed": seed,
                "alignment": {"strategy": strategy, "candidates": 4}});
            let (status, _, v) = post(&c, &chat, &body).await;
            assert_eq!(status, 200, "{v}");
            assert_calls(&v, None);
            assert_eq!(
                v["choices"][0]["message"]["tool_calls"]
                    .as_array()
                    .map(Vec::len),
                Some(1),
                "{v}"
            );
        }
    }
    // Parallel calls: a small model may repeat calls until max_tokens; whatever ends in time is valid.
    for seed in 0..2 {
        let body = json!({"messages": ask, "tools": weather_tools(), "tool_choice": "required",
            "max_tokens": 96, "seed": seed});
        let (status, _, v) = post(&c, &chat, &body).await;
        assert_eq!(status, 200, "{v}");
        match v["choices"][0]["finish_reason"].as_str().unwrap() {
            "tool_calls" => assert_calls(&v, None),
            other => {
                assert_eq!(other, "length", "{v}");
                let text = v["choices"][0]["message"]["content"].as_str().unwrap();
                assert!(
                    text.starts_with("{\"tool_calls\": [{\"name\": \"get_"),
                    "{v}"
                );
            }
        }
    }
    // A named function is the one called, once.
    let body = json!({"messages": ask, "tools": weather_tools(), "max_tokens": 96, "seed": 3,
        "tool_choice": {"type": "function", "function": {"name": "get_time"}}});
    let (status, _, v) = post(&c, &chat, &body).await;
    assert_eq!(status, 200, "{v}");
    assert_calls(&v, Some("get_time"));
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // auto: a call or a text answer, either well-formed; none: plain text.
    for seed in 0..3 {
        let body =
            json!({"messages": ask, "tools": weather_tools(), "max_tokens": 96, "seed": seed});
        let (status, _, v) = post(&c, &chat, &body).await;
        assert_eq!(status, 200, "{v}");
        match v["choices"][0]["finish_reason"].as_str().unwrap() {
            "tool_calls" => assert_calls(&v, None),
            "stop" => assert!(v["choices"][0]["message"]["content"].is_string(), "{v}"),
            other => assert_eq!(other, "length", "{v}"),
        }
    }
    let body = json!({"messages": ask, "tools": weather_tools(), "tool_choice": "none",
        "max_tokens": 8, "seed": 1});
    let (status, _, v) = post(&c, &chat, &body).await;
    assert_eq!(status, 200, "{v}");
    assert!(
        v["choices"][0]["message"].get("tool_calls").is_none(),
        "{v}"
    );
    // Streamed: the calls in one delta, then finish_reason tool_calls.
    let body = json!({"messages": ask, "tools": weather_tools(), "tool_choice": "required",
        "parallel_tool_calls": false, "max_tokens": 96, "seed": 0, "stream": true});
    let (status, events) = post_stream(&c, &chat, &body).await;
    assert_eq!(status, 200);
    let events = data_events(&events);
    let with_calls: Vec<&Value> = events
        .iter()
        .filter(|e| e["choices"][0]["delta"]["tool_calls"].is_array())
        .collect();
    assert_eq!(with_calls.len(), 1, "{events:?}");
    let call = &with_calls[0]["choices"][0]["delta"]["tool_calls"][0];
    assert!(serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).is_ok());
    assert!(
        events
            .iter()
            .any(|e| e["choices"][0]["finish_reason"] == "tool_calls"),
        "{events:?}"
    );
    // A conversation that carries a call and its result goes on.
    let history = json!([
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"celsius\": 21}"},
    ]);
    let body = json!({"messages": history, "tools": weather_tools(), "max_tokens": 32, "seed": 0});
    let (status, _, v) = post(&c, &chat, &body).await;
    assert_eq!(status, 200, "{v}");
    // Refusals name the field.
    let completions = url(&server, "/v1/completions");
    let (status, _, v) = post(
        &c,
        &completions,
        &json!({"prompt": "hi", "tools": weather_tools()}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["param"].as_str()),
        (400, Some("tools")),
        "{v}"
    );
    for (extra, param) in [
        (
            json!({"tool_choice": {"type": "function", "function": {"name": "nope"}}}),
            "tool_choice.function.name",
        ),
        (
            json!({"response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "a b"}}]}),
            "tools[0].function.name",
        ),
        (json!({"tools": []}), "tools"),
    ] {
        let mut body = json!({"messages": ask, "tools": weather_tools()});
        for (k, val) in extra.as_object().unwrap() {
            body[k] = val.clone();
        }
        let (status, _, v) = post(&c, &chat, &body).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
}
