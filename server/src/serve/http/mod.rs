//! The HTTP layer: the router, the outer middleware (request id, API keys, request metrics,
//! the access log, the drain), one file per route family, server-sent events and the response
//! bodies. The top layer: it calls the engine through [`Infer`] and nothing calls it.

pub mod completions;
pub mod correct;
pub mod drain;
pub mod info;
pub mod intake;
pub mod listen;
pub mod request;
pub mod responses;
pub mod rewards;
pub mod sse;
pub mod tokenize;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use subtle::ConstantTimeEq;
use tower_http::catch_panic::CatchPanicLayer;

use super::api::errors::ApiError;
use super::config::ServeConfig;
use super::infer::Infer;
use super::metrics as m;
use request::{Arrived, RequestId, StrategyLabel};

/// Shared by every handler.
pub struct AppState {
    /// The settings.
    pub cfg: Arc<ServeConfig>,
    /// The engine.
    pub infer: Infer,
    /// Set once shutdown began: new requests get 503.
    pub shutting_down: Arc<AtomicBool>,
    /// The metrics recorder.
    pub metrics: PrometheusHandle,
    /// Unix time the server started.
    pub started_unix: u64,
    /// Requests whose responses are not finished (the shutdown drains them).
    pub in_flight: Arc<drain::InFlight>,
}

fn route_label(path: &str) -> &'static str {
    match path {
        "/v1/completions" => "/v1/completions",
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/rewards" => "/v1/rewards",
        "/v1/models" => "/v1/models",
        "/health" => "/health",
        "/metrics" => "/metrics",
        "/openapi.json" => "/openapi.json",
        "/tokenize" => "/tokenize",
        "/detokenize" => "/detokenize",
        "/tokenizer_info" => "/tokenizer_info",
        _ => "other",
    }
}

fn authorized(keys: &[String], headers: &axum::http::HeaderMap) -> bool {
    if keys.is_empty() {
        return true;
    }
    let Some(got) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Compare against every key without stopping early.
    let mut ok = subtle::Choice::from(0);
    for k in keys {
        ok |= k.as_bytes().ct_eq(got.trim().as_bytes());
    }
    ok.into()
}

fn request_id(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()))
}

/// Request id, API key check, request metrics and the access log.
async fn outer(State(s): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let arrived = Instant::now();
    // Only requests admitted before shutdown hold the drain open: later ones are quick
    // answers (503), which hyper finishes writing before it closes their connection.
    let in_flight = (!s.shutting_down.load(Ordering::Relaxed)).then(|| s.in_flight.enter());
    let rid = request_id(req.headers());
    let route = route_label(req.uri().path());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    req.extensions_mut().insert(RequestId(rid.clone()));
    req.extensions_mut().insert(Arrived(arrived));
    let mut resp = if path.starts_with("/v1/") && !authorized(&s.cfg.api_keys, req.headers()) {
        ApiError::Unauthorized.into_response()
    } else {
        next.run(req).await
    };
    let strategy = resp.extensions().get::<StrategyLabel>().map_or("", |l| l.0);
    let status = resp.status().as_u16();
    m::request(route, status, strategy, arrived.elapsed());
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert("x-request-id", v);
    }
    if s.shutting_down.load(Ordering::Relaxed) {
        // Draining: this connection is not kept for another request.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    tracing::info!(
        request_id = %rid,
        %method,
        path = %path,
        status,
        strategy,
        ms = arrived.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    match in_flight {
        Some(guard) => drain::guard_response(resp, guard),
        None => resp,
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a handler panicked");
    ApiError::Internal("the server failed on this request".into()).into_response()
}

/// The router with every route and layer.
pub fn app(state: Arc<AppState>) -> Router {
    let limit = state.cfg.max_body_bytes;
    Router::new()
        .route("/v1/completions", post(completions::completions))
        .route("/v1/chat/completions", post(completions::chat_completions))
        .route("/v1/rewards", post(rewards::rewards))
        .route("/correct", post(correct::correct))
        .route("/v1/models", get(info::models))
        .route("/health", get(info::health))
        .route("/metrics", get(info::metrics))
        .route("/openapi.json", get(info::openapi))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .route("/tokenizer_info", get(tokenize::tokenizer_info))
        .fallback(info::not_found)
        .method_not_allowed_fallback(info::method_not_allowed)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            intake::intake,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), outer))
        .with_state(state)
}
