//! Slow and greedy clients: a body sent too slowly gets 408, headers sent too slowly (or an
//! idle keep-alive connection) are closed, the number of open connections is capped, and a
//! client that writes an oversized body before reading (Python's urllib) reads its 413.

mod common;

use std::time::{Duration, Instant};

use common::{client, start_ready, tiny_config, tiny_models, url};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `limit` passes), returning what came.
async fn read_to_close(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let t = Instant::now();
    loop {
        let left = limit.saturating_sub(t.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_slow_body_gets_408_and_slow_headers_are_closed() {
    let m = tiny_models(256);
    let mut cfg = tiny_config(&m);
    cfg.body_timeout = Duration::from_secs(1);
    cfg.header_timeout = Duration::from_secs(1);
    let server = start_ready(cfg).await;
    let addr = server.addr();

    // Headers, then half the body, then nothing.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"prompt\": ",
    )
    .await
    .unwrap();
    let t = Instant::now();
    let (text, closed) = read_to_close(&mut s, Duration::from_secs(20)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");
    assert!(closed, "the connection is closed after the 408");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );

    // Half the headers, then nothing: closed without an answer.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let (_, closed) = read_to_close(&mut s, Duration::from_secs(20)).await;
    assert!(closed, "slow headers are timed out");

    // An idle keep-alive connection is closed too.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (text, closed) = read_to_close(&mut s, Duration::from_secs(20)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(closed, "an idle keep-alive connection is closed");

    // A body sent in time is served as usual.
    let c = client();
    let r = c
        .post(url(&server, "/v1/completions"))
        .json(&json!({"prompt": "hi", "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn open_connections_are_capped() {
    let m = tiny_models(256);
    let mut cfg = tiny_config(&m);
    cfg.max_connections = 2;
    let server = start_ready(cfg).await;
    let addr = server.addr();
    let mut a = TcpStream::connect(addr).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    // Both are served (keep-alive: they stay open).
    for s in [&mut a, &mut b] {
        s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }
    // A third waits in the backlog: no answer while two are open.
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (text, _) = read_to_close(&mut c, Duration::from_secs(2)).await;
    assert!(text.is_empty(), "a third connection is not served: {text}");
    // One closes; the waiting one is served.
    drop(a);
    let (text, closed) = read_to_close(&mut c, Duration::from_secs(10)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(closed);
    drop(b);
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn urllib_reads_the_413_of_an_oversized_body() {
    let m = tiny_models(256);
    let server = start_ready(tiny_config(&m)).await;
    // An 8 MiB body against the 1 MiB default; urllib writes all of it before reading.
    let script = r#"
import json, sys, urllib.request, urllib.error
body = json.dumps({"messages": [{"role": "user", "content": "x" * (8 << 20)}]}).encode()
req = urllib.request.Request(sys.argv[1], data=body, headers={"content-type": "application/json"})
try:
    urllib.request.urlopen(req, timeout=60)
    print("no error")
except urllib.error.HTTPError as e:
    print(e.code, json.loads(e.read())["error"]["code"])
"#;
    let target = url(&server, "/v1/chat/completions");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", script, &target])
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout.trim(), "413 body_too_large", "{stdout} {stderr}");
    // The server still answers, on a new connection and on a kept one.
    let c = client();
    let r = c.get(url(&server, "/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    server.shutdown();
    server.wait().await.unwrap();
}
