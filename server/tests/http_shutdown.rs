//! Graceful shutdown over real HTTP, on connections a client keeps alive: once shutdown
//! starts, a new request gets 503 `shutting_down` with `Connection: close` (on a kept-alive
//! connection as on a new one) while a streamed request already in flight runs to its end
//! with 200; then the server stops accepting. With nothing in flight it stops at once, and a
//! kept-alive connection is closed, never left hanging.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LONG: usize = 1500;

/// A streamed request long enough to still run while the test sends its next request;
/// returns once its first bytes (the `started` comment) arrived.
async fn start_stream(c: &reqwest::Client, u: &str) -> reqwest::Response {
    let body = json!({"prompt": "Ice", "max_tokens": LONG, "ignore_eos": true, "stream": true,
        "stream_options": {"include_usage": true}});
    let mut r = c.post(u).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&first).contains("started"),
        "{first:?}"
    );
    r
}

/// Reads the rest of an in-flight stream: it must end with the usage chunk and `[DONE]`.
async fn finish_stream(mut r: reqwest::Response) {
    let mut text = String::new();
    while let Some(c) = r.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&c));
    }
    let datas: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(datas.last(), Some(&"[DONE]"), "{text}");
    let usage: Value = serde_json::from_str(datas[datas.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], LONG, "{usage}");
}

fn assert_shutting_down(status: u16, body: &Value) {
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "shutting_down", "{body}");
    assert_eq!(body["error"]["type"], "service_unavailable", "{body}");
}

/// One HTTP/1.1 exchange on a raw socket: status, lower-cased headers, body.
async fn exchange(sock: &mut TcpStream, request: &str) -> (u16, String, String) {
    sock.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = sock.read(&mut byte).await.unwrap();
        assert_eq!(n, 1, "the connection closed before a response");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap().to_ascii_lowercase();
    let status: u16 = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a content-length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    sock.read_exact(&mut body).await.unwrap();
    (status, head, String::from_utf8(body).unwrap())
}

#[tokio::test]
async fn a_kept_alive_connection_gets_503_while_a_stream_finishes() {
    let m = tiny_models(2048);
    let server = start_ready(tiny_config(&m)).await;
    let addr = server.addr();
    // One connection, kept alive: a first request on it succeeds.
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let get = "GET /health HTTP/1.1\r\nhost: x\r\n\r\n";
    let (status, head, _) = exchange(&mut sock, get).await;
    assert_eq!(status, 200);
    assert!(!head.contains("connection: close"), "{head}");
    let stream = start_stream(&client(), &url(&server, "/v1/completions")).await;
    server.shutdown();
    // The same connection, after shutdown began: 503 naming the reason, then closed.
    let body = r#"{"prompt": "a", "max_tokens": 2}"#;
    let post = format!(
        "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, head, text) =
        tokio::time::timeout(Duration::from_secs(30), exchange(&mut sock, &post))
            .await
            .expect("an answer, not a hang");
    assert_shutting_down(status, &serde_json::from_str(&text).unwrap());
    assert!(head.contains("connection: close"), "{head}");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(30), sock.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing after the 503");
    // A new connection during the drain gets the same answer.
    let mut sock2 = TcpStream::connect(addr).await.unwrap();
    let (status, _, text) = exchange(&mut sock2, &post).await;
    assert_shutting_down(status, &serde_json::from_str(&text).unwrap());
    finish_stream(stream).await;
    server.wait().await.expect("the server stops cleanly");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connections once drained"
    );
}

#[tokio::test]
async fn a_reqwest_client_that_kept_its_connection_gets_503_during_the_drain() {
    let m = tiny_models(2048);
    let small = json!({"prompt": "a", "max_tokens": 2});
    // `keep` made a request and keeps its connection in its pool; the stream in flight runs
    // on another client, or on `keep` itself (which then opens a second connection).
    for same_client in [false, true] {
        let server = start_ready(tiny_config(&m)).await;
        let u = url(&server, "/v1/completions");
        let keep = client();
        let (status, _, v) = post(&keep, &u, &small).await;
        assert_eq!(status, 200, "{v}");
        let stream = if same_client {
            start_stream(&keep, &u).await
        } else {
            start_stream(&client(), &u).await
        };
        server.shutdown();
        let (status, headers, v) =
            tokio::time::timeout(Duration::from_secs(30), post(&keep, &u, &small))
                .await
                .expect("an answer, not a hang");
        assert_shutting_down(status, &v);
        assert_eq!(headers["connection"], "close");
        finish_stream(stream).await;
        server.wait().await.expect("the server stops cleanly");
    }
}

#[tokio::test]
async fn with_nothing_in_flight_the_kept_alive_connection_is_closed_not_left_hanging() {
    let m = tiny_models(256);
    let server = start_ready(tiny_config(&m)).await;
    let addr = server.addr();
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let (status, _, _) = exchange(&mut sock, "GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(status, 200);
    server.shutdown();
    // Nothing to drain: hyper's graceful shutdown closes the idle kept-alive connection and
    // the server stops; the client reads the close.
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(30), sock.read_to_end(&mut rest))
        .await
        .expect("the idle connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    tokio::time::timeout(Duration::from_secs(30), server.wait())
        .await
        .expect("the server stops")
        .unwrap();
    // The listener is gone: a client gets a connection error, not a hang.
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        client().get(format!("http://{addr}/health")).send(),
    )
    .await
    .expect("no hang");
    assert!(r.is_err_and(|e| e.is_connect()));
}
