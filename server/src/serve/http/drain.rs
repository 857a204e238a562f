//! The drain of a graceful shutdown.
//!
//! Once shutdown begins, every request that arrives gets 503 `shutting_down` with
//! `Connection: close`, on new connections and on connections a client kept alive alike,
//! while the requests already in flight (streams included) run to their end. Only when none
//! is left (or `--shutdown-timeout` passes) does the server stop accepting and close its idle
//! connections. So a client that sends during the drain gets a clear answer it can act on
//! (retry elsewhere) instead of a connection closed under a request it already wrote.
//!
//! A request admitted before shutdown is in flight from the moment the router sees it until
//! its response body has been written (or dropped, when the client goes away): [`InFlight`]
//! counts them, and [`guard_response`] ties a count to the response body. Requests that
//! arrive during the drain are not counted, so a client retrying in a loop cannot hold the
//! server open; hyper still finishes writing their 503 before it closes their connection.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::response::Response;
use tokio::sync::watch;

/// Counts the requests whose responses are not finished.
#[derive(Debug)]
pub struct InFlight {
    count: watch::Sender<usize>,
}

impl Default for InFlight {
    fn default() -> Self {
        Self {
            count: watch::channel(0).0,
        }
    }
}

impl InFlight {
    /// A counter at zero.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts one more request until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.send_modify(|c| *c += 1);
        InFlightGuard(self.clone())
    }

    /// Requests in flight now.
    pub fn count(&self) -> usize {
        *self.count.borrow()
    }

    /// Returns once no request is in flight.
    pub async fn wait_idle(&self) {
        let mut rx = self.count.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = rx.wait_for(|c| *c == 0).await;
    }
}

/// One request in flight; dropping it ends the count.
#[derive(Debug)]
pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.count.send_modify(|c| *c = c.saturating_sub(1));
    }
}

/// A response body that holds its request's [`InFlightGuard`] until it is written or
/// dropped.
struct GuardedBody {
    inner: Body,
    _guard: InFlightGuard,
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Keeps `guard` (the request in flight) alive until `resp`'s body is finished.
pub fn guard_response(resp: Response, guard: InFlightGuard) -> Response {
    resp.map(|inner| {
        Body::new(GuardedBody {
            inner,
            _guard: guard,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_until_the_body_is_dropped() {
        let f = InFlight::new();
        let resp = guard_response(Response::new(Body::from("x")), f.enter());
        assert_eq!(f.count(), 1);
        assert_eq!(
            resp.body().size_hint().exact(),
            Some(1),
            "the length is kept"
        );
        let waiter = tokio::spawn({
            let f = f.clone();
            async move { f.wait_idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(resp);
        waiter.await.unwrap();
        assert_eq!(f.count(), 0);
    }
}
