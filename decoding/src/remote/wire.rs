//! One replica's HTTP: the completions request body, reading the answer, `GET /v1/models`,
//! and which failures are worth another replica.

use std::time::Duration;

use serde_json::{Value, json};
use thresh_reward::ApiKey;

use super::fields::{logprobs, token_ids};
use super::{CompletionAnswer, CompletionRequest, Engine, RemoteChoice, ServerInfo, llama_cpp};

/// Largest response body read (bytes).
const MAX_BODY: u64 = 64 << 20;

/// Why a request to one replica failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// The replica is down or failing (unreachable, 429, 5xx): another one may answer.
    Replica(String),
    /// The request itself is refused or the answer is unusable: no replica will do better.
    Request(String),
    /// The replica failed after part of a streamed answer was handed on: it is left out, but
    /// the request cannot go to another one.
    Broken(String),
}

/// The completions endpoint of `url` (`http(s)://host:port`, `.../v1` or the endpoint).
pub(super) fn endpoint(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("a remote policy URL starts with http:// or https://")?;
    if rest.split(['/', '?', '#']).next().unwrap_or("").is_empty() {
        return Err("the URL has no host".into());
    }
    Ok(if url.ends_with("/completions") {
        url.to_string()
    } else if url.ends_with("/v1") {
        format!("{url}/completions")
    } else {
        format!("{url}/v1/completions")
    })
}

/// An HTTP agent whose requests end within `timeout` and that hands back error statuses.
pub(super) fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// The request body.
pub(super) fn body(req: &CompletionRequest<'_>, model: Option<&str>) -> Value {
    let s = req.sampling;
    let mut body = json!({
        "prompt": req.prompt,
        "n": req.n,
        "max_tokens": req.max_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
        // The server reads the seed as a signed 64-bit integer and back.
        "seed": s.seed as i64,
        "return_token_ids": true,
    });
    let optional = [
        ("model", model.map(|m| json!(m))),
        // The sampled tokens' log-probabilities, only when they are wanted.
        ("logprobs", s.token_logprobs.then(|| json!(0))),
        ("stop", (!req.stop.is_empty()).then(|| json!(req.stop))),
        ("top_k", (s.top_k > 0).then(|| json!(s.top_k))),
        ("min_p", (s.min_p > 0.0).then(|| json!(s.min_p))),
        (
            "repetition_penalty",
            (s.repetition_penalty != 1.0).then(|| json!(s.repetition_penalty)),
        ),
        (
            "frequency_penalty",
            (s.frequency_penalty != 0.0).then(|| json!(s.frequency_penalty)),
        ),
        (
            "presence_penalty",
            (s.presence_penalty != 0.0).then(|| json!(s.presence_penalty)),
        ),
        ("ignore_eos", req.ignore_eos.then_some(json!(true))),
        (
            "min_tokens",
            (req.min_tokens > 0).then(|| json!(req.min_tokens)),
        ),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            body[key] = v;
        }
    }
    body
}

/// Adds `Authorization: Bearer KEY` where there is a key.
fn with_key<B>(
    mut request: ureq::RequestBuilder<B>,
    key: Option<&ApiKey>,
) -> ureq::RequestBuilder<B> {
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {}", key.expose()));
    }
    request
}

/// Reads an answer's body and sorts its status: 2xx is the text; 429 and 5xx are the
/// replica's failure; other statuses are the request's.
fn read(mut response: ureq::http::Response<ureq::Body>) -> Result<String, Failure> {
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(|e| Failure::Replica(format!("reading the answer: {e}")))?;
    let snippet = || text.chars().take(300).collect::<String>();
    match status {
        200..=299 => Ok(text),
        429 | 500..=599 => Err(Failure::Replica(format!("HTTP {status}: {}", snippet()))),
        _ => Err(Failure::Request(format!("HTTP {status}: {}", snippet()))),
    }
}

/// Where a completions request in `engine`'s dialect goes, for the replica whose completions
/// endpoint is `url`.
fn target(url: &str, engine: Engine) -> String {
    match engine {
        Engine::OpenAi => url.to_string(),
        Engine::LlamaCpp { .. } => format!("{}/completion", root(url)),
    }
}

/// POSTs `body` (JSON) to `target`, accepting `accept`.
fn post_json(
    agent: &ureq::Agent,
    target: &str,
    key: Option<&ApiKey>,
    accept: &str,
    body: &Value,
) -> Result<ureq::http::Response<ureq::Body>, Failure> {
    let request = agent
        .post(target)
        .header("content-type", "application/json")
        .header("accept", accept);
    with_key(request, key)
        .send(body.to_string())
        .map_err(|e| Failure::Replica(format!("unreachable: {e}")))
}

/// POSTs a streamed completions request (`body` has `stream: true`) to the replica whose
/// completions endpoint is `url`: the event stream's reader, once the status is 2xx.
pub(super) fn open_stream(
    agent: &ureq::Agent,
    url: &str,
    key: Option<&ApiKey>,
    engine: Engine,
    body: &Value,
) -> Result<impl std::io::Read, Failure> {
    let response = post_json(agent, &target(url, engine), key, "text/event-stream", body)?;
    if !response.status().is_success() {
        return Err(match read(response) {
            Err(f) => f,
            Ok(_) => Failure::Replica("the stream was refused".into()),
        });
    }
    Ok(response
        .into_body()
        .into_with_config()
        .limit(MAX_BODY)
        .reader())
}

/// The server's root (`http://host:port`) of the completions endpoint `url`.
pub(super) fn root(url: &str) -> &str {
    let url = url.trim_end_matches("/completions");
    url.strip_suffix("/v1").unwrap_or(url)
}

/// POSTs one completions request for `n` continuations to the replica whose completions
/// endpoint is `url`, in `engine`'s dialect.
pub(super) fn post(
    agent: &ureq::Agent,
    url: &str,
    key: Option<&ApiKey>,
    engine: Engine,
    body: &Value,
    n: usize,
) -> Result<CompletionAnswer, Failure> {
    let response = post_json(agent, &target(url, engine), key, "application/json", body)?;
    let text = read(response)?;
    match engine {
        Engine::OpenAi => parse(&text, n),
        Engine::LlamaCpp { .. } => llama_cpp::parse(&text, n),
    }
    .map_err(Failure::Request)
}

/// POSTs `body` to `url`: the answer, as JSON.
pub(super) fn post_value(
    agent: &ureq::Agent,
    url: &str,
    key: Option<&ApiKey>,
    body: &Value,
) -> Result<Value, Failure> {
    let text = read(post_json(agent, url, key, "application/json", body)?)?;
    serde_json::from_str(&text).map_err(|e| Failure::Request(format!("POST {url}: {e}")))
}

/// `GET url` as JSON.
pub(super) fn get_json(
    agent: &ureq::Agent,
    url: &str,
    key: Option<&ApiKey>,
) -> Result<Value, Failure> {
    let response = with_key(agent.get(url).header("accept", "application/json"), key)
        .call()
        .map_err(|e| Failure::Replica(format!("unreachable: {e}")))?;
    let text = read(response)?;
    serde_json::from_str(&text).map_err(|e| Failure::Request(format!("GET {url}: {e}")))
}

/// `GET .../v1/models` of the completions endpoint `url`: the model named `want` (or the
/// first listed) and its context.
pub(super) fn models(
    agent: &ureq::Agent,
    url: &str,
    key: Option<&ApiKey>,
    want: Option<&str>,
) -> Result<ServerInfo, Failure> {
    let v = get_json(
        agent,
        &format!("{}/models", url.trim_end_matches("/completions")),
        key,
    )?;
    let models = v["data"].as_array().cloned().unwrap_or_default();
    let pick = match want {
        Some(name) => models.iter().find(|m| m["id"].as_str() == Some(name)),
        None => models.first(),
    };
    let Some(m) = pick else {
        let listed: Vec<&str> = models.iter().filter_map(|m| m["id"].as_str()).collect();
        return Err(Failure::Request(match want {
            Some(name) => format!("the server does not serve `{name}`; it lists {listed:?}"),
            None => "the server lists no model".into(),
        }));
    };
    let (engine, max_model_len) = if m["owned_by"].as_str() == Some("llamacpp") {
        // llama-server: its slots bound `n`, and each slot has `meta.n_ctx` of context.
        let props = get_json(agent, &format!("{}/props", root(url)), key)?;
        (
            Engine::LlamaCpp {
                slots: llama_cpp::slots(&props),
            },
            m["meta"]["n_ctx"].as_u64(),
        )
    } else {
        (Engine::OpenAi, m["max_model_len"].as_u64())
    };
    Ok(ServerInfo {
        model: m["id"].as_str().unwrap_or_default().to_string(),
        max_model_len: max_model_len.map(|x| x as usize),
        engine,
    })
}

/// Reads a completions answer with `n` choices.
pub(super) fn parse(text: &str, n: usize) -> Result<CompletionAnswer, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let list = v["choices"]
        .as_array()
        .ok_or("the answer has no `choices` list")?;
    let mut choices: Vec<(usize, RemoteChoice)> = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        let ids = c["token_ids"].as_array().ok_or(
            "the answer has no `token_ids`: the server must support vLLM's return_token_ids \
             (vLLM 0.10.2 or later, or thresh)",
        )?;
        let token_ids =
            token_ids(ids).ok_or("`token_ids` holds something that is not a token id")?;
        let token_logprobs = logprobs(
            c["logprobs"]["token_logprobs"].as_array(),
            token_ids.len(),
            Value::as_f64,
        );
        let index = c["index"].as_u64().map_or(i, |x| x as usize);
        choices.push((
            index,
            RemoteChoice {
                token_ids,
                token_logprobs,
                finish_reason: c["finish_reason"].as_str().unwrap_or("length").to_string(),
            },
        ));
    }
    choices.sort_by_key(|c| c.0);
    if choices.len() != n {
        return Err(format!(
            "asked for {n} continuations, got {}",
            choices.len()
        ));
    }
    let usage = &v["usage"];
    Ok(CompletionAnswer {
        choices: choices.into_iter().map(|c| c.1).collect(),
        prompt_tokens: usage["prompt_tokens"].as_u64().unwrap_or(0) as usize,
        cached_tokens: usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0) as usize,
    })
}
