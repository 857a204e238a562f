//! `POST /v1/completions` and `POST /v1/chat/completions`: parse, validate, tokenise (on a
//! blocking worker), hand the request to the engine, then answer with one JSON body or a
//! server-sent event stream.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::request::{
    Arrived, RequestId, check_model, ms, parse_body, ready, set_timing, with_label,
};
use super::responses::{RespCtx, completion_json, unix_now};
use super::sse::stream_response;
use crate::serve::api::errors::ApiError;
use crate::serve::api::openai::GenerationBody;
use crate::serve::metrics as m;
use crate::serve::validation::tokenize::tokenize;
use crate::serve::validation::{CorrectMode, Limits, Route, validate_generation};

type S = State<Arc<AppState>>;

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

async fn generation(
    s: Arc<AppState>,
    rid: RequestId,
    arrived: Arrived,
    body: Result<Bytes, BytesRejection>,
    route: Route,
) -> Result<Response, ApiError> {
    let info = ready(&s)?;
    let body: GenerationBody = parse_body(body, s.cfg.max_body_bytes)?;
    check_model(&info, body.model.as_deref(), false)?;
    if let Some(user) = &body.user {
        tracing::debug!(request_id = %rid.0, user = %user, "request");
    }
    let limits = Limits {
        max_n: s.cfg.max_n,
        kv_budget_tokens: s.cfg.kv_budget_tokens,
        score_plain: s.cfg.score_plain,
        tokens: s.cfg.tokens,
    };
    let req = validate_generation(body, route, limits)?;
    if req.correct != CorrectMode::Off && info.aligner_id.is_none() {
        // The server's set-up, not a passing state: a 400 naming the field, as the OpenAPI
        // document of a server without an aligner allows only `false` there.
        return Err(ApiError::param(
            "alignment.correct",
            "alignment.correct needs an aligner, and this server has none: start it with `thresh serve --aligner PATH`",
        ));
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
        prompt_token_ids: tokenized
            .req
            .return_token_ids
            .then(|| tokenized.prompt_ids.clone()),
        tool_calls: tokenized.req.tool_calls,
    };
    let stream = tokenized.req.stream;
    let generation = s.infer.generate(tokenized)?;
    if stream {
        let tokenize_ms = ms(ctx.tokenize_time);
        let mut resp = stream_response(ctx, generation, s.cfg.request_timeout);
        // Only the phases before the first byte are known when the headers leave.
        set_timing(&mut resp, &format!("tokenize;dur={tokenize_ms:.2}"));
        return Ok(with_label(resp, strategy));
    }
    let out = generation.finish(s.cfg.request_timeout).await?;
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
