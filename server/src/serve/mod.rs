//! `thresh serve`: an OpenAI-compatible HTTP daemon with aligned decoding.
//!
//! Requests pass through [`validation`] (raw OpenAI bodies to typed requests), are tokenised
//! on blocking workers, and reach the [`engine`] thread, which owns the candle models,
//! through a bounded queue of [`jobs`] (full: 429). A client that disconnects cancels its job at the
//! next decode step. SIGINT/SIGTERM start the [`drain`]: new requests get 503 (with
//! `Connection: close`) while in-flight requests finish within `--shutdown-timeout`; then
//! the server stops accepting, closes idle connections and returns.

pub mod alignment;
pub mod config;
pub mod correct;
mod correction;
pub mod drain;
pub mod engine;
pub mod errors;
mod generation;
mod infer_error;
pub mod jobs;
pub mod metrics;
pub mod openai;
pub mod openapi;
mod params;
pub mod responses;
pub mod routes;
pub mod sse;
pub mod token_spans;
pub mod tokenize;
pub mod validation;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, watch};
use tower_http::catch_panic::CatchPanicLayer;

pub use config::{LogFormat, ServeArgs, ServeConfig};
use errors::ApiError;
use jobs::{Job, LoadState};
use routes::{Arrived, RequestId, StrategyLabel};

/// Shared by every handler.
pub struct AppState {
    /// The settings.
    pub cfg: Arc<ServeConfig>,
    /// The models, once loaded.
    pub load: Arc<LoadState>,
    /// The engine's queue.
    pub jobs: mpsc::Sender<Job>,
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
    metrics::request(route, status, strategy, arrived.elapsed());
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
        .route("/v1/completions", post(routes::completions))
        .route("/v1/chat/completions", post(routes::chat_completions))
        .route("/v1/rewards", post(routes::rewards))
        .route("/correct", post(correct::correct))
        .route("/v1/models", get(routes::models))
        .route("/health", get(routes::health))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(routes::openapi))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), outer))
        .with_state(state)
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    state: Arc<AppState>,
}

impl Server {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the models are loaded.
    pub fn is_ready(&self) -> bool {
        self.state.load.info.get().is_some()
    }

    /// The load failure, if loading failed.
    pub fn load_error(&self) -> Option<String> {
        self.state.load.error.get().cloned()
    }

    /// Begins a graceful shutdown: new requests get 503 while in-flight ones finish; then
    /// the server stops accepting and closes idle connections (see [`drain`]).
    pub fn shutdown(&self) {
        self.state.shutting_down.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
    }

    /// Waits until the server has stopped (after [`Server::shutdown`]).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("the server task failed")?
    }
}

/// Binds the listener, starts the engine thread (which loads the models in the background:
/// `/health` answers 503 until they are ready) and serves on the current tokio runtime.
pub async fn start(cfg: ServeConfig) -> anyhow::Result<Server> {
    let cfg = Arc::new(cfg);
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.addr))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::channel(cfg.max_queue);
    let load = Arc::new(LoadState::default());
    engine::spawn(cfg.clone(), load.clone(), rx, cfg.max_queue)
        .context("cannot start the engine thread")?;
    let state = Arc::new(AppState {
        cfg: cfg.clone(),
        load,
        jobs: tx,
        shutting_down: Arc::new(AtomicBool::new(false)),
        metrics: metrics::handle(),
        started_unix: responses::unix_now(),
        in_flight: drain::InFlight::new(),
    });
    let (stop, stop_rx) = watch::channel(false);
    let router = app(state.clone());
    let drain = cfg.shutdown_timeout;
    let in_flight = state.in_flight.clone();
    let task = tokio::spawn(async move {
        let mut graceful_rx = stop_rx.clone();
        let serve = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = graceful_rx.wait_for(|v| *v).await;
                // Keep accepting (and answering 503) until the in-flight requests are done.
                in_flight.wait_idle().await;
                tracing::info!("in-flight requests done; closing connections");
            })
            .into_future();
        let mut deadline_rx = stop_rx;
        let deadline = async move {
            let _ = deadline_rx.wait_for(|v| *v).await;
            tokio::time::sleep(drain).await;
        };
        tokio::select! {
            r = serve => r.context("the HTTP server failed")?,
            _ = deadline => {
                tracing::warn!(seconds = drain.as_secs(), "in-flight requests did not finish before the shutdown deadline; stopping anyway");
            }
        }
        Ok(())
    });
    Ok(Server {
        addr,
        stop,
        task,
        state,
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Runs `thresh serve` until SIGINT or SIGTERM, then drains and returns.
pub fn run(cfg: ServeConfig) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("thresh-http")
        .build()?;
    rt.block_on(async move {
        let server = start(cfg).await?;
        // Tests and scripts read this line to find the port.
        println!("thresh listening on http://{}", server.addr());
        tracing::info!(addr = %server.addr(), "listening; loading models");
        let signal = shutdown_signal();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                _ = &mut signal => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if let Some(e) = server.load_error() {
                        anyhow::bail!("{e}");
                    }
                }
            }
        }
        tracing::info!("shutting down: draining in-flight requests");
        server.shutdown();
        server.wait().await?;
        tracing::info!("stopped");
        Ok(())
    })
}
