//! `thresh serve`: an OpenAI-compatible HTTP daemon with aligned decoding.
//!
//! Four layers, each importing only those below it (`docs/ARCHITECTURE.md` has the map):
//! [`api`] (wire types, the error body, OpenAPI); [`validation`] (raw bodies to typed,
//! checked, tokenised requests); [`infer`] (the engine thread that owns the candle models,
//! its bounded job queue (full: 429), the workers and their strategies, behind one
//! [`Infer`](infer::Infer) handle); [`http`] (the router, middleware and handlers).
//! [`config`] and [`metrics`] sit beside them and import none of them.
//!
//! A client that disconnects cancels its job at the next decode step. SIGINT/SIGTERM start
//! the [`drain`](http::drain): new requests get 503 (with `Connection: close`) while in-flight
//! requests finish within `--shutdown-timeout`; then the server stops accepting, closes idle
//! connections and returns.

pub mod api;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod infer;
pub mod metrics;
pub mod validation;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

pub use config::{LogFormat, ServeArgs, ServeConfig, TokenLimits};
pub use http::{AppState, app};
use http::{drain, listen, responses};
use infer::Infer;

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
        self.state.infer.info().is_some()
    }

    /// The load failure, if loading failed.
    pub fn load_error(&self) -> Option<String> {
        self.state.infer.load_error().map(str::to_string)
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
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.addr))?;
    start_on(listener, cfg)
}

/// [`start`] on a listener already bound (`cfg.addr` is not used): for a caller that holds
/// its port from before, as a test reserving a port for a server it starts later does.
pub fn start_on(listener: tokio::net::TcpListener, cfg: ServeConfig) -> anyhow::Result<Server> {
    let cfg = Arc::new(cfg);
    let addr = listener.local_addr()?;
    let infer = Infer::start(cfg.clone()).context("cannot start the engine thread")?;
    let state = Arc::new(AppState {
        cfg: cfg.clone(),
        infer,
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
        let limits = listen::ConnLimits {
            max_connections: cfg.max_connections,
            header_timeout: cfg.header_timeout,
        };
        let serve = listen::serve(listener, router, limits, async move {
            let _ = graceful_rx.wait_for(|v| *v).await;
            // Keep accepting (and answering 503) until the in-flight requests are done.
            in_flight.wait_idle().await;
            tracing::info!("in-flight requests done; closing connections");
        });
        let mut deadline_rx = stop_rx;
        let deadline = async move {
            let _ = deadline_rx.wait_for(|v| *v).await;
            tokio::time::sleep(drain).await;
        };
        tokio::select! {
            _ = serve => {}
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
