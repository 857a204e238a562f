//! SIGTERM while a streamed Best-of-N answer is on its way: the stream runs to its end
//! (`data: [DONE]`), and only then does the process exit, with status 0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use thresh_e2e::{Daemon, Http, json, serve_command, tiny_policy, tiny_reward};

#[test]
fn sigterm_lets_a_streamed_best_of_n_finish_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let policy = tiny_policy(dir.path(), "policy");
    let reward = tiny_reward(dir.path(), "reward");
    let mut cmd = serve_command(&policy, &reward);
    cmd.args(["--shutdown-timeout", "600"]);
    let mut daemon = Daemon::start(cmd, &dir.path().join("serve.log"));
    daemon.wait_healthy(&Http::new());
    // 32 candidates of 480 tokens: long enough that SIGTERM lands while they decode.
    let body = json!({"prompt": "Once upon a time", "max_tokens": 480, "ignore_eos": true,
                      "stream": true, "seed": 3,
                      "alignment": {"strategy": "best_of_n", "candidates": 32}})
    .to_string();
    let mut stream = TcpStream::connect(daemon.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    write!(
        stream,
        "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read the whole response on a thread; say when the first bytes (the headers and the
    // stream's opening comment: the job is running) have come.
    let (first, got_first) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut done_at = None;
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        let mut told = false;
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    if done_at.is_none() && String::from_utf8_lossy(&all).contains("[DONE]") {
                        done_at = Some(Instant::now());
                    }
                    if !told {
                        told = true;
                        let _ = first.send(());
                    }
                }
            }
        }
        (String::from_utf8_lossy(&all).into_owned(), done_at)
    });
    got_first
        .recv_timeout(Duration::from_secs(120))
        .expect("the stream started");
    let terminated_at = Instant::now();
    let (status, log) = daemon.terminate();
    let (text, done_at) = reader.join().unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("data: [DONE]"),
        "the stream ran to its end after SIGTERM:\n{text}\nlog:\n{log}"
    );
    assert!(text.contains("\"finish_reason\""), "{text}");
    assert!(
        done_at.is_some_and(|d| d > terminated_at),
        "the answer was still being generated when SIGTERM came"
    );
    assert!(
        status.success(),
        "exit status after the drain: {status}; log:\n{log}"
    );
}
