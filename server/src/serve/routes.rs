//! The HTTP handlers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use super::AppState;
use super::errors::ApiError;
use super::jobs::{CancelOnDrop, Event, GenJob, GenOutput, Job, ModelInfo, ScoreJob};
use super::metrics as m;
use super::responses::{RespCtx, completion_json, unix_now};
use super::sse::stream_response;
use super::tokenize::tokenize;
use super::validation::{CorrectMode, Limits, Route, validate_generation, validate_rewards};

/// The request's id (from `x-request-id` or generated), set by the outer middleware.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// When the request arrived.
#[derive(Debug, Clone, Copy)]
pub struct Arrived(pub Instant);

/// The strategy a response served, for the request metrics.
#[derive(Debug, Clone, Copy)]
pub struct StrategyLabel(pub &'static str);

type S = State<Arc<AppState>>;

pub(super) fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge(limit)
        } else {
            ApiError::InvalidJson(format!("cannot read the body: {}", r.body_text()))
        }
    })?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let syntax = matches!(
            inner.classify(),
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof
        );
        if syntax || path.is_empty() || path == "." {
            ApiError::InvalidJson(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::param(path.clone(), format!("{path}: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::InvalidJson(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

pub(super) fn ready(s: &AppState) -> Result<Arc<ModelInfo>, ApiError> {
    if s.shutting_down.load(Ordering::Relaxed) {
        return Err(ApiError::ShuttingDown);
    }
    s.load.info.get().cloned().ok_or(ApiError::Loading)
}

fn check_model(info: &ModelInfo, model: Option<&str>, reward: bool) -> Result<(), ApiError> {
    let expected = if reward { &info.reward_id } else { &info.id };
    match model {
        None | Some("") => Ok(()),
        Some(m) if m == expected => Ok(()),
        Some(m) => Err(ApiError::UnknownModel(m.to_string())),
    }
}

pub(super) fn enqueue(s: &AppState, job: Job) -> Result<(), ApiError> {
    match s.jobs.try_send(job) {
        Ok(()) => {
            m::queue_depth(s.cfg.max_queue.saturating_sub(s.jobs.capacity()));
            Ok(())
        }
        Err(TrySendError::Full(_)) => Err(ApiError::QueueFull(s.cfg.max_queue)),
        Err(TrySendError::Closed(_)) => Err(ApiError::ShuttingDown),
    }
}

/// Waits for the engine's reply to a one-shot job, within `--request-timeout`.
pub(super) async fn await_reply<T>(
    s: &AppState,
    rx: oneshot::Receiver<Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(s.cfg.request_timeout, rx)
        .await
        .map_err(|_| ApiError::Timeout(s.cfg.request_timeout.as_secs()))?
        .map_err(|_| ApiError::Internal("the engine stopped".into()))?
}

/// Sets the `server-timing` header (per-phase durations).
pub(super) fn set_timing(resp: &mut Response, timing: &str) {
    if let Ok(v) = HeaderValue::from_str(timing) {
        resp.headers_mut().insert("server-timing", v);
    }
}

fn with_label(mut resp: Response, strategy: &'static str) -> Response {
    resp.extensions_mut().insert(StrategyLabel(strategy));
    resp
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `POST /v1/completions`.
pub async fn completions(
    State(s): S,
    Extension(rid): Extension<RequestId>,
    Extension(arrived): Extension<Arrived>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    generation(s, rid, arrived, body, Route::Completions)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(s): S,
    Extension(rid): Extension<RequestId>,
    Extension(arrived): Extension<Arrived>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    generation(s, rid, arrived, body, Route::Chat)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn wait_done(rx: &mut mpsc::UnboundedReceiver<Event>) -> Result<GenOutput, ApiError> {
    while let Some(ev) = rx.recv().await {
        if let Event::Done(r) = ev {
            return *r;
        }
    }
    Err(ApiError::Internal("the engine stopped".into()))
}

async fn generation(
    s: Arc<AppState>,
    rid: RequestId,
    arrived: Arrived,
    body: Result<Bytes, BytesRejection>,
    route: Route,
) -> Result<Response, ApiError> {
    let info = ready(&s)?;
    let body: super::openai::GenerationBody = parse_body(body, s.cfg.max_body_bytes)?;
    check_model(&info, body.model.as_deref(), false)?;
    if let Some(user) = &body.user {
        tracing::debug!(request_id = %rid.0, user = %user, "request");
    }
    let limits = Limits {
        max_n: s.cfg.max_n,
        kv_budget_tokens: s.cfg.kv_budget_tokens,
        score_plain: s.cfg.score_plain,
    };
    let req = validate_generation(body, route, limits)?;
    if req.correct != CorrectMode::Off && info.aligner_id.is_none() {
        return Err(ApiError::NoAligner);
    }
    let t_tok = Instant::now();
    let info2 = info.clone();
    let tokenized = tokio::task::spawn_blocking(move || tokenize(req, &info2, limits))
        .await
        .map_err(|_| ApiError::Internal("the tokenizer failed".into()))??;
    let tokenize_time = t_tok.elapsed();
    let strategy = tokenized.req.strategy_name();
    let ctx = RespCtx {
        id: match route {
            Route::Completions => format!("cmpl-{}", rid.0),
            Route::Chat => format!("chatcmpl-{}", rid.0),
        },
        created: unix_now(),
        model: info.id.clone(),
        reward_model: info.reward_id.clone(),
        route,
        strategy,
        return_candidates: tokenized.req.return_candidates,
        include_usage: tokenized.req.include_usage,
        prompt_tokens: tokenized.prompt_ids.len(),
        n: tokenized.req.n,
        arrived: arrived.0,
        tokenize_time,
    };
    let stream = tokenized.req.stream;
    let cancel = Arc::new(AtomicBool::new(false));
    let guard = CancelOnDrop(cancel.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    enqueue(
        &s,
        Job::Generate(Box::new(GenJob {
            req: tokenized,
            cancel,
            enqueued: Instant::now(),
            events: tx,
        })),
    )?;
    if stream {
        let tokenize_ms = ms(ctx.tokenize_time);
        let mut resp = stream_response(ctx, rx, guard, s.cfg.request_timeout);
        // Only the phases before the first byte are known when the headers leave.
        set_timing(&mut resp, &format!("tokenize;dur={tokenize_ms:.2}"));
        return Ok(with_label(resp, strategy));
    }
    let out = tokio::time::timeout(s.cfg.request_timeout, wait_done(&mut rx))
        .await
        .map_err(|_| ApiError::Timeout(s.cfg.request_timeout.as_secs()))??;
    drop(guard);
    m::time_to_first_token(arrived.0.elapsed());
    let mut resp = Json(completion_json(&ctx, &out)).into_response();
    let timing = format!(
        "tokenize;dur={:.2}, queue;dur={:.2}, policy;dur={:.2}, reward;dur={:.2}, total;dur={:.2}",
        ms(ctx.tokenize_time),
        ms(out.queue_time),
        ms(out.stats.policy_time),
        ms(out.stats.reward_time),
        ms(arrived.0.elapsed())
    );
    set_timing(&mut resp, &timing);
    Ok(with_label(resp, strategy))
}

/// `POST /v1/rewards`: scores (prompt or messages, response) pairs.
pub async fn rewards(
    State(s): S,
    Extension(arrived): Extension<Arrived>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let info = match ready(&s) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    score(s, info, arrived, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn score(
    s: Arc<AppState>,
    info: Arc<ModelInfo>,
    arrived: Arrived,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: super::openai::RewardsBody = parse_body(body, s.cfg.max_body_bytes)?;
    check_model(&info, body.model.as_deref(), true)?;
    let inputs = validate_rewards(body)?;
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    let (tx, rx) = oneshot::channel();
    enqueue(
        &s,
        Job::Score(ScoreJob {
            inputs,
            cancel,
            enqueued: Instant::now(),
            reply: tx,
        }),
    )?;
    let (scores, took) = await_reply(&s, rx).await?;
    let data: Vec<_> = scores
        .iter()
        .enumerate()
        .map(|(i, sc)| {
            json!({
                "index": i,
                "object": "reward",
                "score": if sc.score.is_finite() { json!(sc.score) } else { json!(null) },
                "tokens": sc.tokens,
                "truncated": sc.truncated,
            })
        })
        .collect();
    let total: usize = scores.iter().map(|s| s.tokens).sum();
    let mut resp = Json(json!({
        "object": "list",
        "model": info.reward_id,
        "data": data,
        "usage": {"prompt_tokens": total, "total_tokens": total},
    }))
    .into_response();
    let timing = format!(
        "reward;dur={:.2}, total;dur={:.2}",
        ms(took),
        ms(arrived.0.elapsed())
    );
    set_timing(&mut resp, &timing);
    Ok(resp)
}

/// `GET /v1/models`.
pub async fn models(State(s): S) -> Response {
    let info = match ready(&s) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let created = s.started_unix;
    let mut data = vec![
        json!({"id": info.id, "object": "model", "created": created, "owned_by": "thresh",
               "max_model_len": info.context, "thresh_role": "policy"}),
        json!({"id": info.reward_id, "object": "model", "created": created, "owned_by": "thresh",
               "thresh_role": "reward"}),
    ];
    if let Some(a) = &info.aligner_id {
        data.push(
            json!({"id": a, "object": "model", "created": created, "owned_by": "thresh",
                         "thresh_role": "aligner"}),
        );
    }
    Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /health`: 200 once the models are loaded, 503 before and while shutting down.
pub async fn health(State(s): S) -> Response {
    if let Some(e) = s.load.error.get() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "failed", "error": e})),
        )
            .into_response();
    }
    match ready(&s) {
        Ok(_) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": e.code()})),
        )
            .into_response(),
    }
}

/// `GET /metrics` in Prometheus' text format.
pub async fn metrics(State(s): S) -> Response {
    let mut resp = s.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// Unknown routes: 404 in OpenAI's error format.
pub async fn not_found(method: Method, uri: Uri) -> Response {
    ApiError::UnknownRoute {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
    .into_response()
}

/// Known route, wrong method: 405.
pub async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_response()
}

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    Json(super::openapi::document()).into_response()
}
