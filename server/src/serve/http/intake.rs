//! Reading a request's body before any handler sees it, within `--body-timeout` and
//! `--max-body-bytes`.
//!
//! A body over the limit is still read (and dropped) up to [`DRAIN_BYTES`] more, so that a
//! client that writes its whole body before it reads (Python's `urllib` and `requests`) gets
//! the 413 instead of a broken pipe; the connection then stays usable. A body that declares a
//! length past that bound is answered at once and its connection closed. A client too slow to
//! send its body gets 408 and its connection closed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::AppState;
use crate::serve::api::errors::ApiError;

/// Bytes past `--max-body-bytes` read and dropped so the client sees the 413.
pub const DRAIN_BYTES: usize = 64 << 20;

/// How reading the body ended.
enum Read {
    /// The whole body, within the limit.
    Body(Bytes),
    /// Over the limit; `drained` when all of it was read.
    TooLarge { drained: bool },
    /// The client stopped sending.
    TimedOut,
    /// The connection failed.
    Failed(String),
}

async fn read(body: Body, limit: usize, timeout: Duration) -> Read {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    loop {
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) if seen > limit => return Read::TooLarge { drained: false },
            Err(_) => return Read::TimedOut,
            Ok(None) => break,
            Ok(Some(Err(e))) => return Read::Failed(e.to_string()),
            Ok(Some(Ok(c))) => c,
        };
        seen = seen.saturating_add(chunk.len());
        if seen <= limit {
            buf.extend_from_slice(&chunk);
        } else {
            buf = Vec::new();
            if seen > limit.saturating_add(DRAIN_BYTES) {
                return Read::TooLarge { drained: false };
            }
        }
    }
    if seen > limit {
        Read::TooLarge { drained: true }
    } else {
        Read::Body(Bytes::from(buf))
    }
}

fn closing(e: ApiError) -> Response {
    let mut resp = e.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Buffers the body of a request that has one, or answers 413 / 408 / 400 without calling
/// the handler.
pub async fn intake(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        return next.run(req).await;
    }
    let limit = s.cfg.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > (limit.saturating_add(DRAIN_BYTES)) as u64) {
        return closing(ApiError::BodyTooLarge(limit));
    }
    let (parts, body) = req.into_parts();
    match read(body, limit, s.cfg.body_timeout).await {
        Read::Body(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Read::TooLarge { drained: true } => ApiError::BodyTooLarge(limit).into_response(),
        Read::TooLarge { drained: false } => closing(ApiError::BodyTooLarge(limit)),
        Read::TimedOut => closing(ApiError::BodyTimeout(s.cfg.body_timeout.as_secs())),
        Read::Failed(e) => closing(ApiError::InvalidJson(format!("cannot read the body: {e}"))),
    }
}
