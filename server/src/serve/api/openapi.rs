//! `GET /openapi.json`: the API description, generated from the request types with utoipa.

#![allow(dead_code)]

use serde::Serialize;
use serde_json::{Value, json};
use utoipa::{OpenApi, ToSchema};

use super::contract;
use super::openai::{
    AlignmentInput, AlphaInput, ContentPart, CorrectBody, CorrectInput, FunctionInput,
    GenerationBody, JsonSchemaInput, MessageContent, NamedFunction, NamedToolChoice, PromptInput,
    RawFunctionCall, RawMessage, RawPair, RawToolCall, ResponseFormatInput, ResponseFormatKind,
    RewardPair, RewardsBody, StopInput, StreamOptions, ToolChoiceInput, ToolInput, ToolKind,
};

/// OpenAI's error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The fields of an error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// What went wrong; for a 400, the parameter and its limit.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error`,
    /// `service_unavailable` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending parameter, where one is to blame.
    pub param: Option<String>,
    /// A machine-readable code (`invalid_parameter`, `queue_full`, ...).
    pub code: String,
}

/// A generated answer, its reward and the strategy's statistics in `alignment`.
#[utoipa::path(post, path = "/v1/completions", request_body = GenerationBody,
    responses(
        (status = 200, description = "A `text_completion` (or SSE chunks with `stream`); each choice carries `reward`, the response `alignment` (strategy, stats, candidates)", content((Object = "application/json"), (String = "text/event-stream"))),
    ))]
fn completions() {}

/// A chat answer through the model's chat template.
#[utoipa::path(post, path = "/v1/chat/completions", request_body = GenerationBody,
    responses(
        (status = 200, description = "A `chat.completion` (or `chat.completion.chunk` SSE with `stream`)", content((Object = "application/json"), (String = "text/event-stream"))),
    ))]
fn chat_completions() {}

/// Scores (prompt or messages, response) pairs with the reward model.
#[utoipa::path(post, path = "/v1/rewards", request_body = RewardsBody,
    responses(
        (status = 200, description = "`{object: list, data: [{index, score, tokens, truncated}]}`", body = Object),
    ))]
fn rewards() {}

/// Corrects upstream answers with the Aligner model (`--aligner`).
#[utoipa::path(post, path = "/correct", request_body = CorrectBody,
    responses(
        (status = 200, description = "`{object: correction, model, template, corrections: [{index, correction, finish_reason}], correction (one pair), usage}`", body = Object),
    ))]
fn correct() {}

/// The served models: policy, reward model and aligner.
#[utoipa::path(get, path = "/v1/models", responses((status = 200, body = Object)))]
fn models() {}

/// 200 once the models are loaded; 503 before, and while shutting down.
#[utoipa::path(get, path = "/health", responses((status = 200, body = Object), (status = 503, body = Object)))]
fn health() {}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, body = String, content_type = "text/plain")))]
fn metrics() {}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "thresh",
        description = "OpenAI-compatible inference-time alignment server: sample from a policy LLM, pick by a reward model."
    ),
    paths(
        completions,
        chat_completions,
        rewards,
        correct,
        models,
        health,
        metrics,
        super::tokenize::tokenize,
        super::tokenize::detokenize,
        super::tokenize::tokenizer_info
    ),
    components(schemas(
        GenerationBody,
        AlignmentInput,
        PromptInput,
        RawMessage,
        MessageContent,
        ContentPart,
        StopInput,
        StreamOptions,
        RewardsBody,
        RewardPair,
        CorrectBody,
        RawPair,
        CorrectInput,
        AlphaInput,
        ResponseFormatInput,
        ResponseFormatKind,
        JsonSchemaInput,
        ToolInput,
        ToolKind,
        FunctionInput,
        ToolChoiceInput,
        NamedToolChoice,
        NamedFunction,
        RawToolCall,
        RawFunctionCall,
        ErrorBody,
        ErrorDetail,
        super::tokenize::TokenizeBody,
        super::tokenize::DetokenizeBody
    ))
)]
pub struct ApiDoc;

/// The server's limits the document states (they differ between servers).
#[derive(Debug, Clone, Copy)]
pub struct DocLimits {
    /// Largest `n`, `best_of` and `alignment.candidates`.
    pub max_n: usize,
    /// The server's KV budget per request (`--kv-budget-tokens`): `alignment.kv_budget_tokens`
    /// at most.
    pub kv_budget_tokens: usize,
    /// Largest `max_tokens` (`--max-tokens-limit`, else the policy's context less one).
    pub max_tokens: usize,
    /// The policy's vocabulary, where known: token-id prompts must be below it.
    pub vocab_size: Option<usize>,
    /// Whether an aligner is loaded: without one, `/correct` is not part of the API.
    pub aligner: bool,
}

/// The OpenAPI document as JSON: the generated one, with one request schema per completion
/// route (each with only its own prompt field, required) and the limits validation enforces.
pub fn document(limits: DocLimits) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    add_errors(&mut doc);
    let schemas = &mut doc["components"]["schemas"];
    let Some(generation) = schemas.get("GenerationBody").cloned() else {
        return doc;
    };
    let routes: [(&str, &str, &[&str]); 2] = [
        (
            "CompletionRequest",
            "prompt",
            &[
                "messages",
                "max_completion_tokens",
                "top_logprobs",
                "tools",
                "tool_choice",
                "parallel_tool_calls",
            ],
        ),
        ("ChatRequest", "messages", &["prompt", "echo", "best_of"]),
    ];
    for (name, keep, drop) in routes {
        let mut schema = generation.clone();
        if let Some(props) = schema["properties"].as_object_mut() {
            for &field in drop {
                props.remove(field);
            }
        }
        schema["required"] = json!([keep]);
        constrain(&mut schema["properties"], limits);
        // The required field is not nullable; the bookkeeping fields ignored on purpose are
        // listed; anything else is refused (a 400 naming it).
        let props = &mut schema["properties"];
        props[keep] = match keep {
            "prompt" => json!({"$ref": "#/components/schemas/PromptInput"}),
            _ => chat_messages(),
        };
        props["metadata"] = json!({"description": "Accepted and ignored."});
        props["store"] = json!({"description": "Accepted and ignored."});
        schema["additionalProperties"] = json!(false);
        schemas[name] = schema;
    }
    refine_parts(schemas, limits);
    super::tokenize::refine(schemas, chat_messages(), limits.vocab_size);
    let name = &mut schemas["JsonSchemaInput"]["properties"]["name"];
    name["minLength"] = json!(1);
    name["maxLength"] = json!(64);
    schemas["FunctionInput"]["properties"]["name"]["pattern"] = json!("^[A-Za-z0-9_-]{1,64}$");
    schemas["ToolChoiceInput"] = json!({
        "description": "none, auto (the default with tools), required, or a function of tools by name",
        "oneOf": [{"type": "string", "enum": ["none", "auto", "required"]},
                  {"$ref": "#/components/schemas/NamedToolChoice"}]});
    if let Some(all) = schemas.as_object_mut() {
        all.remove("GenerationBody");
    }
    if !limits.aligner
        && let Some(paths) = doc["paths"].as_object_mut()
    {
        paths.remove("/correct");
    }
    // Before OpenAPI 3.2 an event stream's schema describes each event: `data` holds a chunk
    // of JSON, or `[DONE]` last.
    let event = json!({"type": "object", "required": ["data"], "properties": {
        "data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"},
        "retry": {"type": "integer"}}});
    for (path, schema) in [
        ("/v1/completions", "CompletionRequest"),
        ("/v1/chat/completions", "ChatRequest"),
    ] {
        let post = &mut doc["paths"][path]["post"];
        post["requestBody"]["content"]["application/json"]["schema"] =
            json!({"$ref": format!("#/components/schemas/{schema}")});
        post["responses"]["200"]["content"]["text/event-stream"]["schema"] = event.clone();
    }
    doc
}

/// A conversation as the chat route takes it: messages, one of them with text.
fn chat_messages() -> Value {
    json!({"type": "array", "minItems": 1,
           "items": {"$ref": "#/components/schemas/RawMessage"},
           "contains": some_text_message()})
}

/// A message with text: string content, or a text part, with a non-space character (every
/// list of messages needs one).
fn some_text_message() -> Value {
    let some_text = json!({"type": "string", "pattern": "\\S"});
    json!({"required": ["content"], "properties": {"content": {"anyOf": [
        some_text,
        {"type": "array", "contains": {"required": ["text"],
                                       "properties": {"text": some_text}}}]}}})
}

/// The limits of the shared parts: prompts, messages, stop strings, reward pairs.
fn refine_parts(schemas: &mut Value, limits: DocLimits) {
    let text = json!({"type": "string", "minLength": 1});
    let mut ids = json!({"type": "array", "minItems": 1,
                         "items": {"type": "integer", "minimum": 0}});
    if let Some(v) = limits.vocab_size {
        ids["items"]["maximum"] = json!(v.saturating_sub(1));
    }
    schemas["PromptInput"]["oneOf"] = json!([
        text,
        ids,
        {"type": "array", "minItems": 1, "maxItems": 1, "items": text},
    ]);
    let stop = json!({"type": "string", "minLength": 1,
                      "maxLength": contract::MAX_STOP_CHARS});
    schemas["StopInput"]["oneOf"] = json!([
        stop,
        {"type": "array", "maxItems": contract::MAX_STOP, "items": stop},
    ]);
    schemas["RawMessage"]["properties"]["role"]["enum"] =
        json!(["system", "user", "assistant", "tool", "developer"]);
    schemas["ContentPart"]["properties"]["type"]["enum"] = json!(["text"]);
    schemas["ContentPart"]["properties"]["text"] = json!({"type": "string"});
    schemas["ContentPart"]["required"] = json!(["type", "text"]);
    // A pair's prompt is text or messages, exactly one, with some text.
    let pair = &mut schemas["RewardPair"];
    // Null is read as absent.
    pair["properties"]["prompt"] = json!({"type": ["string", "null"], "pattern": "\\S"});
    pair["properties"]["messages"] = json!({"type": ["array", "null"], "minItems": 1,
        "items": {"$ref": "#/components/schemas/RawMessage"},
        "contains": some_text_message()});
    pair["oneOf"] = json!([
        {"required": ["prompt"], "properties": {"prompt": {"type": "string"}, "messages": {"type": "null"}}},
        {"required": ["messages"], "properties": {"messages": {"type": "array"}, "prompt": {"type": "null"}}},
    ]);
    refine_alignment(&mut schemas["AlignmentInput"], limits);
    for name in ["RawPair", "CorrectBody"] {
        if let Some(m) = schemas[name]["properties"].get_mut("messages") {
            m["contains"] = some_text_message();
        }
    }
    schemas["RewardsBody"]["properties"]["input"]["minItems"] = json!(1);
    schemas["RewardsBody"]["properties"]["input"]["maxItems"] = json!(contract::MAX_REWARD_PAIRS);
}

/// The `alignment` fields' ranges, each on its own (validation checks every field given,
/// whatever the strategy). The rules between fields (candidates at least `n`, one decision
/// schedule, increasing decision points, `best_of` with an aligned strategy) are stated in
/// the descriptions.
fn refine_alignment(schema: &mut Value, limits: DocLimits) {
    let props = &mut schema["properties"];
    let mut set = |field: &str, extra: Value| {
        if let (Some(p), Some(extra)) = (props.get_mut(field), extra.as_object()) {
            for (k, v) in extra {
                p[k] = v.clone();
            }
        }
    };
    set(
        "strategy",
        json!({"enum": contract::STRATEGIES.iter().map(|s| json!(s))
        .chain([Value::Null]).collect::<Vec<_>>()}),
    );
    set("candidates", json!({"minimum": 1, "maximum": limits.max_n}));
    set(
        "lambda",
        json!({"exclusiveMinimum": 0, "maximum": contract::MAX_LAMBDA}),
    );
    set(
        "max_tries",
        json!({"minimum": contract::MAX_TRIES.0, "maximum": contract::MAX_TRIES.1}),
    );
    set(
        "kv_budget_tokens",
        json!({"minimum": 1, "maximum": limits.kv_budget_tokens}),
    );
    // A row never holds more tokens than the request's KV budget: later decisions are
    // unreachable, and refused.
    let kv = limits.kv_budget_tokens;
    set(
        "first_decision_tokens",
        json!({"minimum": 1, "maximum": kv}),
    );
    set(
        "decision_tokens",
        json!({"minItems": 1, "maxItems": contract::MAX_DECISIONS, "uniqueItems": true,
               "items": {"type": "integer", "minimum": 1, "maximum": kv}}),
    );
    // A fraction in [0, 1) or "auto"; null is absent.
    props["alpha"] = json!({"description": props["alpha"]["description"].clone(), "oneOf": [
        {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        {"type": "string", "enum": ["auto"]},
        {"type": "null"}]});
    // Without an aligner, only "no correction" is valid.
    let (flags, modes) = if limits.aligner {
        (json!([true, false]), json!(["on", "off", "guarded"]))
    } else {
        (json!([false]), json!(["off"]))
    };
    props["correct"] = json!({"description": props["correct"]["description"].clone(), "oneOf": [
        {"type": "boolean", "enum": flags},
        {"type": "string", "enum": modes},
        {"type": "null"}]});
}

/// The error statuses of the POST routes, each with OpenAI's error body.
const ERRORS: [(u16, &str); 11] = [
    (
        400,
        "Invalid parameter, or a field the server does not implement (named in `param`)",
    ),
    (401, "Missing or wrong API key"),
    (404, "Unknown model"),
    (405, "Method not allowed"),
    (408, "The body did not arrive within --body-timeout"),
    (413, "Body too large"),
    (429, "Queue full"),
    (500, "The engine failed on this request"),
    (502, "A remote policy or reward server failed or refused"),
    (
        503,
        "Loading or shutting down (/correct: also no aligner loaded)",
    ),
    (504, "Past --request-timeout, or a remote server too slow"),
];

/// Which of [`ERRORS`] each POST route can answer (`/correct` does not check API keys and
/// calls no remote server).
const ROUTE_ERRORS: [(&str, &[u16]); 6] = [
    (
        "/v1/completions",
        &[400, 401, 404, 405, 408, 413, 429, 500, 502, 503, 504],
    ),
    (
        "/v1/chat/completions",
        &[400, 401, 404, 405, 408, 413, 429, 500, 502, 503, 504],
    ),
    (
        "/v1/rewards",
        &[400, 401, 404, 405, 408, 413, 429, 502, 503, 504],
    ),
    ("/correct", &[400, 404, 405, 408, 413, 429, 503, 504]),
    ("/tokenize", &[400, 404, 405, 408, 413, 502, 503, 504]),
    ("/detokenize", &[400, 404, 405, 408, 413, 502, 503, 504]),
];

/// Adds the error responses of every POST route from one table.
fn add_errors(doc: &mut Value) {
    let body = json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}});
    for (path, statuses) in ROUTE_ERRORS {
        let responses = &mut doc["paths"][path]["post"]["responses"];
        for (status, description) in ERRORS {
            if statuses.contains(&status) {
                responses[status.to_string()] =
                    json!({"description": description, "content": body});
            }
        }
    }
}

/// Adds each field's limits to the generated properties.
fn constrain(props: &mut Value, limits: DocLimits) {
    let Some(props) = props.as_object_mut() else {
        return;
    };
    let mut set = |field: &str, extra: Value| {
        if let (Some(p), Some(extra)) = (props.get_mut(field), extra.as_object()) {
            // Optional fields are generated as `oneOf [null, T]` or with `type: [T, null]`;
            // the limits go beside, where JSON Schema applies them to the value when present.
            for (k, v) in extra {
                // A null removes the generated keyword (to replace a type with a `oneOf`).
                match (v.is_null(), p.as_object_mut()) {
                    (true, Some(o)) => {
                        o.remove(k);
                    }
                    _ => p[k] = v.clone(),
                }
            }
        }
    };
    for r in contract::SAMPLING {
        let low = if r.exclusive_min {
            "exclusiveMinimum"
        } else {
            "minimum"
        };
        let mut c = json!({"maximum": r.max});
        c[low] = json!(r.min);
        set(r.name, c);
    }
    set("n", json!({"minimum": 1, "maximum": limits.max_n}));
    set("best_of", json!({"minimum": 1, "maximum": limits.max_n}));
    for field in ["max_tokens", "max_completion_tokens"] {
        set(field, json!({"minimum": 1, "maximum": limits.max_tokens}));
    }
    set("top_k", json!({"minimum": -1}));
    set(
        "min_tokens",
        json!({"minimum": 0, "maximum": limits.max_tokens,
               "description": "New tokens before end-of-sequence may be sampled; at most the request's max_tokens (else a 400)"}),
    );
    set("top_logprobs", json!({"maximum": 0}));
    set("echo", json!({"enum": [false, null]}));
    set(
        "logprobs",
        json!({"type": null, "oneOf": [{"type": "boolean"}, {"const": 0}, {"type": "null"}]}),
    );
    set(
        "stop",
        json!({"description": format!(
            "One stop string or at most {} of them, each 1 to {} characters",
            contract::MAX_STOP,
            contract::MAX_STOP_CHARS
        )}),
    );
    let one_grammar = "At most one of response_format (json_object or json_schema), guided_json, \
                       guided_regex, guided_grammar and guided_choice per request (else a 400); \
                       a grammar that does not compile is a 400 naming its field";
    for field in ["guided_regex", "guided_grammar"] {
        set(field, json!({"pattern": "\\S", "description": one_grammar}));
    }
    set(
        "guided_choice",
        json!({"minItems": 1, "items": {"type": "string", "minLength": 1}, "description": one_grammar}),
    );
    set("guided_json", json!({"description": one_grammar}));
    set(
        "tools",
        json!({"minItems": 1, "description": "Functions with distinct names; not with response_format or guided_* (else a 400)"}),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        document(DocLimits {
            max_n: 16,
            kv_budget_tokens: 4096,
            max_tokens: 100,
            vocab_size: Some(50),
            aligner: true,
        })
    }

    #[test]
    fn each_completion_route_has_its_own_request_schema() {
        let d = doc();
        let schemas = &d["components"]["schemas"];
        assert!(schemas.get("GenerationBody").is_none());
        let completion = &schemas["CompletionRequest"];
        assert_eq!(completion["required"], json!(["prompt"]));
        assert!(completion["properties"].get("messages").is_none());
        assert!(completion["properties"].get("prompt").is_some());
        let chat = &schemas["ChatRequest"];
        assert_eq!(chat["required"], json!(["messages"]));
        assert!(chat["properties"].get("prompt").is_none());
        assert!(chat["properties"].get("echo").is_none());
        for (path, name) in [
            ("/v1/completions", "CompletionRequest"),
            ("/v1/chat/completions", "ChatRequest"),
        ] {
            let r = &d["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
                ["$ref"];
            assert_eq!(r, &json!(format!("#/components/schemas/{name}")));
        }
    }

    #[test]
    fn the_limits_are_the_validators() {
        let d = doc();
        for name in ["CompletionRequest", "ChatRequest"] {
            let p = &d["components"]["schemas"][name]["properties"];
            for r in contract::SAMPLING {
                assert_eq!(p[r.name]["maximum"], json!(r.max), "{name}.{}", r.name);
                let low = if r.exclusive_min {
                    "exclusiveMinimum"
                } else {
                    "minimum"
                };
                assert_eq!(p[r.name][low], json!(r.min), "{name}.{}", r.name);
            }
            assert_eq!(p["n"]["maximum"], 16);
            assert_eq!(p["n"]["minimum"], 1);
            assert_eq!(p["max_tokens"]["maximum"], 100);
            assert_eq!(p["max_tokens"]["minimum"], 1);
        }
    }

    #[test]
    fn a_stream_is_documented_event_by_event() {
        let d = doc();
        for path in ["/v1/completions", "/v1/chat/completions"] {
            let e = &d["paths"][path]["post"]["responses"]["200"]["content"]["text/event-stream"]["schema"];
            assert_eq!(e["required"], json!(["data"]), "{path}");
            assert_eq!(e["properties"]["data"]["type"], "string", "{path}");
        }
    }

    #[test]
    fn cross_field_rules_are_in_the_schemas() {
        let d = doc();
        let schemas = &d["components"]["schemas"];
        for name in ["CompletionRequest", "ChatRequest"] {
            // Token ids stream too (vLLM's shape): no rule against the pair.
            assert!(schemas[name].get("not").is_none(), "{name}");
        }
        let a = &schemas["AlignmentInput"]["properties"];
        assert_eq!(a["candidates"]["minimum"], 1);
        assert_eq!(a["candidates"]["maximum"], 16);
        assert_eq!(a["kv_budget_tokens"]["maximum"], 4096);
        assert_eq!(a["lambda"]["exclusiveMinimum"], 0);
        assert_eq!(a["max_tries"]["maximum"], contract::MAX_TRIES.1);
        assert_eq!(a["decision_tokens"]["maxItems"], contract::MAX_DECISIONS);
        let names = a["strategy"]["enum"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for s in contract::STRATEGIES {
            assert!(names.contains(&json!(s)), "{s}");
        }
        let messages = &schemas["RewardPair"]["properties"]["messages"];
        assert_eq!(messages["contains"]["required"], json!(["content"]));
    }

    #[test]
    fn every_route_documents_its_error_statuses() {
        let d = doc();
        let statuses = |path: &str, method: &str| -> Vec<String> {
            d["paths"][path][method]["responses"]
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default()
        };
        for path in ["/v1/completions", "/v1/chat/completions"] {
            let got = statuses(path, "post");
            for s in [
                "200", "400", "401", "404", "405", "408", "413", "429", "500", "502", "503", "504",
            ] {
                assert!(got.contains(&s.to_string()), "{path} lacks {s}: {got:?}");
            }
        }
        for s in ["400", "401", "408", "413", "429", "502", "503", "504"] {
            assert!(
                statuses("/v1/rewards", "post").contains(&s.to_string()),
                "{s}"
            );
        }
        for s in ["400", "408", "413", "429", "503", "504"] {
            assert!(statuses("/correct", "post").contains(&s.to_string()), "{s}");
        }
    }
}
