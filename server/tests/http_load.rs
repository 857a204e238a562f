//! Behaviour under load and at the edges of a request's life, over real HTTP: a full queue
//! answers 429 while admitted requests complete; a client that disconnects cancels its
//! work; 32 concurrent clients all get answers; shutdown drains in-flight work, in process
//! and through SIGTERM to the built binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// A request that keeps the tiny engine busy for a while: many rows, long, no early EOS.
fn long_body(max_tokens: usize) -> Value {
    json!({"prompt": "long", "max_tokens": max_tokens, "ignore_eos": true, "n": 32, "seed": 1})
}

#[tokio::test]
async fn full_queue_answers_429_while_admitted_requests_complete() {
    let _serial = METRICS_LOCK.lock().await;
    let m = tiny_models(1024);
    let mut cfg = tiny_config(&m);
    cfg.max_queue = 2;
    let server = start_ready(cfg).await;
    let c = client();
    let u = url(&server, "/v1/completions");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (c, u) = (c.clone(), u.clone());
        tasks.push(tokio::spawn(
            async move { post(&c, &u, &long_body(900)).await },
        ));
    }
    let mut ok = 0;
    let mut busy = 0;
    for t in tasks {
        let (status, headers, v) = t.await.unwrap();
        match status {
            200 => {
                ok += 1;
                assert_eq!(v["choices"].as_array().unwrap().len(), 32);
                assert_eq!(v["usage"]["completion_tokens"], 32 * 900);
            }
            429 => {
                busy += 1;
                assert_eq!(v["error"]["type"], "rate_limit_error");
                assert!(headers.contains_key("retry-after"));
            }
            s => panic!("unexpected status {s}: {v}"),
        }
    }
    // The queue holds two (plus the one running once the engine has taken it): at least
    // two are admitted and all of those complete; the rest are turned away.
    assert!(ok >= 2, "admitted requests complete: {ok}");
    assert_eq!(ok + busy, 8);
    assert!(busy >= 1, "a full queue answers 429");
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn a_disconnected_request_is_cancelled_and_does_not_delay_the_next() {
    let _serial = METRICS_LOCK.lock().await;
    let m = tiny_models(4096);
    let mut cfg = tiny_config(&m);
    cfg.kv_budget_tokens = 1 << 20;
    let server = start_ready(cfg).await;
    let c = client();
    let u = url(&server, "/v1/completions");
    let metrics_url = url(&server, "/metrics");
    let before = get_text(&c, &metrics_url).await;
    let cancelled_before = metric(&before, "thresh_requests_cancelled_total", "");
    for (round, stream) in [false, true].into_iter().enumerate() {
        // A request that would decode 32 x 4000 tokens; the client gives up early.
        let mut body = long_body(4000);
        body["stream"] = json!(stream);
        let (c2, u2) = (c.clone(), u.clone());
        let long = tokio::spawn(async move {
            let r = c2.post(&u2).json(&body).send().await;
            if let Ok(r) = r {
                let _ = r.bytes().await;
            }
        });
        // Wait until the engine is decoding it, then drop the connection.
        let t = std::time::Instant::now();
        loop {
            let page = get_text(&c, &metrics_url).await;
            if metric(&page, "thresh_active_batch_size", "") >= 32.0 {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the long request never started"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        long.abort();
        let _ = long.await;
        // The next request is answered while (or after) the engine notices the drop: another
        // worker may serve it before the long one's cancellation is counted.
        let (status, _, v) = post(&c, &u, &json!({"prompt": "next", "max_tokens": 4})).await;
        assert_eq!(status, 200, "{v}");
        // The long one ends cancelled, not finished.
        let want = cancelled_before + round as f64 + 1.0;
        let t = std::time::Instant::now();
        let page = loop {
            let page = get_text(&c, &metrics_url).await;
            if metric(&page, "thresh_requests_cancelled_total", "") >= want {
                break page;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the dropped request (stream: {stream}) was never counted as cancelled"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let generated = metric(&page, "thresh_generated_tokens_total", "");
        assert!(
            generated < 32.0 * 4000.0,
            "the long request was not run to the end"
        );
    }
    let after = get_text(&c, &metrics_url).await;
    assert_eq!(
        metric(&after, "thresh_requests_cancelled_total", "") - cancelled_before,
        2.0,
        "both the plain and the streamed request were cancelled, once each"
    );
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn thirty_two_concurrent_clients_all_get_answers() {
    let _serial = METRICS_LOCK.lock().await;
    let m = tiny_models(256);
    let server = start_ready(tiny_config(&m)).await;
    let mut tasks = Vec::new();
    for i in 0..32u64 {
        let u = url(
            &server,
            if i % 2 == 0 {
                "/v1/completions"
            } else {
                "/v1/chat/completions"
            },
        );
        tasks.push(tokio::spawn(async move {
            // One client (connection pool) per task.
            let c = client();
            let mut body = json!({"max_tokens": 8, "seed": i, "stream": i % 4 == 1,
                                  "alignment": {"strategy": if i % 3 == 0 { "best_of_n" } else { "none" }, "candidates": 4}});
            if i % 2 == 0 {
                body["prompt"] = json!(format!("client {i}"));
            } else {
                body["messages"] = json!([{"role": "user", "content": format!("client {i}")}]);
            }
            if i % 4 == 1 {
                let (status, events) = post_stream(&c, &u, &body).await;
                assert_eq!(status, 200);
                data_events(&events);
            } else {
                let (status, _, v) = post(&c, &u, &body).await;
                assert_eq!(status, 200, "{v}");
                assert_eq!(v["choices"].as_array().unwrap().len(), 1);
            }
        }));
    }
    for t in tasks {
        t.await.expect("every client is answered");
    }
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn shutdown_drains_in_flight_work() {
    let _serial = METRICS_LOCK.lock().await;
    let m = tiny_models(1024);
    let server = start_ready(tiny_config(&m)).await;
    let c = client();
    let u = url(&server, "/v1/completions");
    let metrics_url = url(&server, "/metrics");
    let (c2, u2) = (c.clone(), u.clone());
    let inflight = tokio::spawn(async move { post(&c2, &u2, &long_body(600)).await });
    loop {
        let page = get_text(&c, &metrics_url).await;
        if metric(&page, "thresh_active_batch_size", "") >= 32.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let addr = server.addr();
    server.shutdown();
    let (status, _, v) = inflight.await.unwrap();
    assert_eq!(status, 200, "the in-flight request finishes: {v}");
    assert_eq!(v["usage"]["completion_tokens"], 32 * 600);
    server.wait().await.expect("the server stops cleanly");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );
}

#[tokio::test]
async fn the_binary_drains_and_exits_zero_on_sigterm() {
    let m = tiny_models(1024);
    let mut child = Command::new(env!("CARGO_BIN_EXE_thresh"))
        .args([
            "serve",
            "--port",
            "0",
            "--weights",
            "dense",
            "--log-format",
            "json",
            // On a loaded machine the 32 x 600 tokens take longer than the default 30 s
            // drain deadline, after which the process exits under the in-flight request.
            "--shutdown-timeout",
            "600",
        ])
        .arg("--policy")
        .arg(&m.policy)
        .arg("--reward")
        .arg(&m.reward)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn thresh serve");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");
    let c = client();
    let t = std::time::Instant::now();
    loop {
        if let Ok(r) = c.get(format!("{base}/health")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the binary never got ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (c2, u2) = (c.clone(), format!("{base}/v1/completions"));
    let inflight = tokio::spawn(async move { post(&c2, &u2, &long_body(600)).await });
    loop {
        let page = get_text(&c, &format!("{base}/metrics")).await;
        if metric(&page, "thresh_active_batch_size", "") >= 32.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (status, _, v) = inflight.await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 32 * 600);
    let exit = child.wait().unwrap();
    assert!(
        exit.success(),
        "thresh serve exits 0 after draining: {exit}"
    );
}

#[tokio::test]
async fn a_request_past_the_timeout_is_answered_504_and_cancelled() {
    let _serial = METRICS_LOCK.lock().await;
    let m = tiny_models(8192);
    let mut cfg = tiny_config(&m);
    cfg.request_timeout = Duration::from_secs(1);
    cfg.kv_budget_tokens = 1 << 22;
    let server = start_ready(cfg).await;
    let c = client();
    let metrics_url = url(&server, "/metrics");
    let before = get_text(&c, &metrics_url).await;
    // 64 rows of 8000 tokens take far longer than a second on any CPU.
    let mut body = long_body(8000);
    body["n"] = json!(64);
    let (status, _, v) = post(&c, &url(&server, "/v1/completions"), &body).await;
    assert_eq!(status, 504, "{v}");
    assert_eq!(v["error"]["code"], "timeout");
    // The engine stops the work: the next request is served.
    let (status, _, _) = post(
        &c,
        &url(&server, "/v1/completions"),
        &json!({"prompt": "x", "max_tokens": 2}),
    )
    .await;
    assert_eq!(status, 200);
    // The next request no longer waits for the cancelled one (requests decode together),
    // so the cancellation is counted when the engine reaches the cancelled job's next step.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let cancelled = loop {
        let after = get_text(&c, &metrics_url).await;
        let n = metric(&after, "thresh_requests_cancelled_total", "")
            - metric(&before, "thresh_requests_cancelled_total", "");
        if n >= 1.0 || std::time::Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(cancelled, 1.0);
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn answers_503_until_the_models_are_loaded() {
    let _serial = METRICS_LOCK.lock().await;
    let m = tiny_models(128);
    // A policy that cannot load: the server stays up and says so.
    std::fs::write(m.policy.join("config.json"), "{\"model_type\": \"llama\"}").unwrap();
    let server = thresh_server::serve::start(tiny_config(&m)).await.unwrap();
    let t = std::time::Instant::now();
    while server.load_error().is_none() {
        assert!(t.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let c = client();
    let r = c.get(url(&server, "/health")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let (status, _, v) = post(
        &c,
        &url(&server, "/v1/completions"),
        &json!({"prompt": "x"}),
    )
    .await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "loading");
    assert_eq!(
        c.get(url(&server, "/v1/models"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    server.shutdown();
    server.wait().await.unwrap();
}
