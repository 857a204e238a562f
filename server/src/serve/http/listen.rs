//! The accept loop: HTTP/1.1 connections served by hyper with the limits a public endpoint
//! needs, and the graceful close at shutdown.
//!
//! - At most `--max-connections` connections are open at once; past that the server stops
//!   accepting, and new connections wait in the kernel's backlog until one closes.
//! - A connection must send a request's headers within `--header-timeout` of starting to wait
//!   for them, which also bounds an idle keep-alive connection (hyper starts the clock as soon
//!   as it waits for the next request). Slow bodies are bounded by `--body-timeout`
//!   ([`intake`](super::intake)).
//! - Once `stop` resolves, no connection is accepted; each open one finishes the request it
//!   is serving and closes, and [`serve`] returns when all have.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest wait for a request's headers (and so for the next request on an idle
    /// keep-alive connection).
    pub header_timeout: Duration,
}

/// Serves `router` on `listener` until `stop` resolves, then waits for the open connections
/// to finish their requests and close.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    stop: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut stop => break,
        };
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait, go on.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = tcp.set_nodelay(true);
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true);
        let conn =
            builder.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(router.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
