//! `thresh-bench load` against a real thresh server on loopback with a tiny random model:
//! every request is accounted for, alignment statistics are read back, a full queue's 429s
//! and other errors are counted by status, a down server fails with a clear message, and the
//! JSON result and charts are written as documented.

mod common;

use std::time::{Duration, Instant};

use common::*;
use thresh_bench::BenchError;
use thresh_bench::client::{AlignmentParams, Endpoint};
use thresh_bench::dataset::DatasetSpec;
use thresh_bench::load::run_load;
use thresh_bench::output::write_json;
use thresh_bench::plot::write_load_chart;
use thresh_bench::report::LOAD_SCHEMA;

#[tokio::test]
async fn a_streamed_aligned_run_accounts_for_every_request() {
    let m = tiny_models(1024);
    let server = start_ready(tiny_config(&m)).await;
    let mut cfg = small_run(format!("http://{}", server.addr()), 12);
    cfg.max_concurrency = Some(3);
    cfg.warmup_requests = 2;
    cfg.params.alignment = AlignmentParams {
        strategy: Some("best_of_n".into()),
        candidates: Some(3),
        alpha: None,
        return_candidates: false,
    };
    let run = run_load(cfg).await.unwrap();
    let r = &run.report;
    assert_eq!(
        (r.requests.sent, r.requests.completed, r.requests.failed),
        (12, 12, 0)
    );
    assert!(r.failures.is_empty() && r.failed_by_status.is_empty());
    // The model id was read from /v1/models and sent.
    assert_eq!(r.settings.model.as_deref(), Some("tiny-policy"));
    // Token counts come from the server's usage chunk.
    assert_eq!(r.tokens.requests_with_usage, 12);
    let sum: usize = run.outcomes.iter().map(|o| o.output_tokens).sum();
    assert_eq!(r.tokens.output, sum);
    assert!(
        run.outcomes
            .iter()
            .all(|o| (1..=8).contains(&o.output_tokens))
    );
    assert!(r.tokens.prompt > 0);
    assert_eq!(r.latency_ms.e2e.count, 12);
    assert_eq!(r.latency_ms.ttft.count, 12);
    let e2e = r.latency_ms.e2e;
    assert!(e2e.min.unwrap() <= e2e.median.unwrap() && e2e.median.unwrap() <= e2e.max.unwrap());
    assert!(r.latency_ms.ttft.max.unwrap() <= e2e.max.unwrap());
    assert!(r.duration_s > 0.0);
    assert!((r.throughput.requests_per_s - 12.0 / r.duration_s).abs() < 1e-9);
    assert!((r.throughput.output_tokens_per_s - sum as f64 / r.duration_s).abs() < 1e-9);
    // thresh's alignment extension: the reward of each answer and the strategy statistics.
    let a = r.alignment.as_ref().expect("alignment statistics");
    assert_eq!(a.responses, 12);
    assert_eq!(a.strategies.get("best_of_n"), Some(&12));
    assert_eq!(a.reward.count, 12);
    assert_eq!(a.stats["candidates"].mean, Some(3.0));
    assert_eq!(a.stats["reward_calls"].count, 12);
    assert!(a.stats["policy_tokens"].min.unwrap() >= 3.0);
    assert_eq!(r.timeline.completed.iter().sum::<usize>(), 12);
    let timeline_tokens: f64 = r
        .timeline
        .output_tokens_per_s
        .iter()
        .map(|t| t * r.timeline.bin_s)
        .sum();
    assert!((timeline_tokens - sum as f64).abs() < 1e-6);

    // The written JSON follows bench/SCHEMA.md, and reads back to the same numbers.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    write_json(&path, r).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let seen = schema::check(&v, LOAD_SCHEMA);
    assert!(seen.iter().any(|p| p == "alignment.stats.*"));
    assert_eq!(v["requests"]["completed"], 12);

    // Charts: a real PNG and a real SVG.
    let lat: Vec<f64> = run.outcomes.iter().map(|o| o.latency * 1e3).collect();
    let png = dir.path().join("load.png");
    let svg = dir.path().join("load.svg");
    write_load_chart(&png, r, &lat, None).unwrap();
    write_load_chart(&svg, r, &lat, None).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(bytes.len() > 5_000);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("<svg") && text.contains("End-to-end latency"));
    let e = write_load_chart(&dir.path().join("load.gif"), r, &lat, None).unwrap_err();
    assert!(e.to_string().contains(".png or .svg"), "{e}");
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn plain_requests_with_random_prompts_return_the_asked_lengths() {
    let m = tiny_models(1024);
    let server = start_ready(tiny_config(&m)).await;
    let mut cfg = small_run(format!("http://{}/v1/", server.addr()), 6);
    cfg.target.base_url = thresh_bench::client::normalize_base_url(&cfg.target.base_url).unwrap();
    cfg.target.endpoint = Endpoint::Chat;
    cfg.params.stream = false;
    cfg.items = DatasetSpec::parse("random", 20, 5).load(6, 3).unwrap();
    cfg.dataset_name = "random".into();
    let run = run_load(cfg).await.unwrap();
    let r = &run.report;
    assert_eq!(r.requests.completed, 6, "{:?}", r.failures);
    // ignore_eos: every answer has exactly the asked 5 tokens.
    assert_eq!(r.tokens.output, 30);
    assert!(run.outcomes.iter().all(|o| o.output_tokens == 5));
    // No stream: no time to first token. Plain answers (strategy "none") carry thresh's
    // statistics but no reward: they are scored only when asked.
    assert_eq!(r.latency_ms.ttft.count, 0);
    assert_eq!(r.latency_ms.e2e.count, 6);
    let a = r.alignment.as_ref().unwrap();
    assert_eq!(a.strategies.get("none"), Some(&6));
    assert_eq!(a.reward.count, 0);
    assert_eq!(a.stats["candidates"].mean, Some(1.0));
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn a_full_queue_answers_429_and_every_request_is_counted() {
    let m = tiny_models(1024);
    let mut sc = tiny_config(&m);
    sc.max_queue = 1;
    let server = start_ready(sc).await;
    let mut cfg = small_run(format!("http://{}", server.addr()), 16);
    // Long requests (32 candidates x 300 tokens) all sent at once: the engine runs one, the
    // queue holds one, the rest are turned away.
    cfg.items = DatasetSpec::parse("random", 8, 300).load(16, 0).unwrap();
    cfg.max_concurrency = None;
    cfg.params.alignment = AlignmentParams {
        strategy: Some("best_of_n".into()),
        candidates: Some(32),
        alpha: None,
        return_candidates: false,
    };
    let r = run_load(cfg).await.unwrap().report;
    assert_eq!(r.requests.sent, 16);
    let busy = r.failed_by_status.get("429").copied().unwrap_or(0);
    assert!(
        busy >= 1,
        "a full queue answers 429: {:?}",
        r.failed_by_status
    );
    assert!(r.requests.completed >= 1);
    assert_eq!(r.requests.completed + busy, 16, "{:?}", r.failures);
    assert_eq!(r.requests.failed, busy);
    assert_eq!(r.failures.len(), 1);
    assert_eq!(r.failures[0].status, Some(429));
    assert_eq!(r.failures[0].count, busy);
    assert!(
        r.failures[0].error.contains("busy"),
        "{}",
        r.failures[0].error
    );
    // Throughput counts completed requests only.
    assert!(
        (r.throughput.requests_per_s - r.requests.completed as f64 / r.duration_s).abs() < 1e-9
    );
    assert!(r.table().contains("status 429"));
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn other_errors_are_counted_by_status_and_message() {
    let m = tiny_models(1024);
    let server = start_ready(tiny_config(&m)).await;
    let base = format!("http://{}", server.addr());
    // An unknown model: 404 on every request.
    let mut cfg = small_run(base.clone(), 5);
    cfg.target.model = Some("no-such-model".into());
    let r = run_load(cfg).await.unwrap().report;
    assert_eq!((r.requests.completed, r.requests.failed), (0, 5));
    assert_eq!(r.failed_by_status.get("404"), Some(&5));
    assert!(
        r.failures[0].error.contains("no-such-model"),
        "{}",
        r.failures[0].error
    );
    assert!(r.alignment.is_none());
    assert_eq!(r.latency_ms.e2e.count, 0);
    // Out-of-range alignment parameters: 400, with the server's message.
    let mut cfg = small_run(base, 3);
    cfg.params.alignment.strategy = Some("speculative_rejection".into());
    cfg.params.alignment.alpha = Some(1.5);
    let r = run_load(cfg).await.unwrap().report;
    assert_eq!(r.failed_by_status.get("400"), Some(&3));
    assert!(
        r.failures[0].error.contains("alignment.alpha"),
        "{}",
        r.failures[0].error
    );
    // A failing run's JSON also follows the schema (failures listed, alignment null).
    let v = serde_json::to_value(&r).unwrap();
    let seen = schema::check(&v, LOAD_SCHEMA);
    assert!(seen.iter().any(|p| p == "failures[].error"));
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn a_duration_bounds_a_run_at_a_poisson_rate() {
    let m = tiny_models(1024);
    let server = start_ready(tiny_config(&m)).await;
    let mut cfg = small_run(format!("http://{}", server.addr()), 1);
    cfg.num_requests = None;
    cfg.duration = Some(Duration::from_millis(1500));
    cfg.request_rate = 10.0;
    cfg.params.max_tokens = 2;
    cfg.max_concurrency = Some(2);
    let t = Instant::now();
    let r = run_load(cfg).await.unwrap().report;
    assert!(t.elapsed() < Duration::from_secs(60));
    // Poisson at 10/s over 1.5 s: 15 expected; far outside [2, 40] is all but impossible.
    assert!(
        (2..=40).contains(&r.requests.sent),
        "sent {}",
        r.requests.sent
    );
    assert_eq!(r.requests.completed + r.requests.failed, r.requests.sent);
    assert_eq!(r.settings.num_requests, None);
    assert_eq!(r.settings.request_rate, Some(10.0));
    server.shutdown();
    server.wait().await.unwrap();
}

fn free_port_then_closed() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

#[tokio::test]
async fn a_server_that_is_down_fails_with_a_clear_message() {
    let port = free_port_then_closed();
    let base = format!("http://127.0.0.1:{port}");
    let e = run_load(small_run(base.clone(), 3)).await.unwrap_err();
    assert!(matches!(e, BenchError::Unreachable { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("cannot connect to {base}")), "{msg}");
    assert!(msg.contains("is the server running"), "{msg}");

    // The binary says the same and exits non-zero, writing no result.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_thresh-bench"))
        .args([
            "load",
            "--base-url",
            &base,
            "--num-requests",
            "2",
            "--no-progress",
            "--output",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("cannot connect to {base}")),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn bad_settings_are_refused_before_anything_is_sent() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = format!("http://127.0.0.1:{}", free_port_then_closed());
    let mut cfg = small_run(base.clone(), 3);
    cfg.num_requests = None;
    let e = rt.block_on(run_load(cfg)).unwrap_err().to_string();
    assert!(e.contains("--num-requests or --duration"), "{e}");
    let mut cfg = small_run(base.clone(), 3);
    cfg.request_rate = -2.0;
    let e = rt.block_on(run_load(cfg)).unwrap_err().to_string();
    assert!(e.contains("--request-rate"), "{e}");
    let mut cfg = small_run(base, 3);
    cfg.items = thresh_bench::dataset::parse_jsonl(
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}",
        std::path::Path::new("c.jsonl"),
    )
    .unwrap();
    let e = rt.block_on(run_load(cfg)).unwrap_err().to_string();
    assert!(e.contains("--endpoint chat"), "{e}");
}

#[tokio::test]
async fn the_binary_prints_the_table_and_writes_json_and_chart() {
    let m = tiny_models(1024);
    let server = start_ready(tiny_config(&m)).await;
    let base = format!("http://{}", server.addr());
    let dir = tempfile::tempdir().unwrap();
    let (json, svg) = (dir.path().join("r.json"), dir.path().join("r.svg"));
    let (j2, s2) = (json.clone(), svg.clone());
    let o = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_thresh-bench"))
            .args([
                "load",
                "--base-url",
                &base,
                "--num-requests",
                "5",
                "--max-tokens",
                "4",
            ])
            .args([
                "--max-concurrency",
                "2",
                "--request-rate",
                "50",
                "--no-progress",
            ])
            .args(["--strategy", "best_of_n", "--candidates", "2", "--output"])
            .arg(&j2)
            .arg("--plot")
            .arg(&s2)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("Successful requests"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    schema::check(&v, LOAD_SCHEMA);
    assert_eq!(v["requests"]["completed"], 5);
    assert_eq!(v["settings"]["request_rate"], 50.0);
    assert_eq!(v["alignment"]["strategies"]["best_of_n"], 5);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn the_api_key_is_sent_and_a_missing_one_is_counted_as_401() {
    let m = tiny_models(1024);
    let mut sc = tiny_config(&m);
    sc.api_keys = vec!["sesame".into()];
    let server = start_ready(sc).await;
    let base = format!("http://{}", server.addr());
    let r = run_load(small_run(base.clone(), 3)).await.unwrap().report;
    assert_eq!(r.failed_by_status.get("401"), Some(&3), "{:?}", r.failures);
    let mut cfg = small_run(base, 3);
    cfg.target.api_key = Some("sesame".into());
    let r = run_load(cfg).await.unwrap().report;
    assert_eq!(r.requests.completed, 3, "{:?}", r.failures);
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn a_mixed_run_sends_every_kind_and_counts_cancellations_apart_from_failures() {
    use thresh_bench::mix::{Mix, MixConfig};
    let m = tiny_models(1024);
    let server = start_ready(tiny_config(&m)).await;
    let mut cfg = small_run(format!("http://{}", server.addr()), 40);
    cfg.max_concurrency = Some(4);
    cfg.mix = Some(MixConfig {
        mix: Mix::parse("plain=2,best-of-n=2,speculative-rejection=2,stream=2,cancel=2").unwrap(),
        candidates: 3,
        alpha: 0.5,
        cancel_within: Duration::from_millis(500),
    });
    let run = run_load(cfg.clone()).await.unwrap();
    let r = &run.report;
    assert_eq!(r.requests.failed, 0, "{:?}", r.failures);
    assert_eq!(
        r.settings.mix.as_deref(),
        Some("plain=2,best-of-n=2,speculative-rejection=2,stream=2,cancel=2")
    );
    // Every kind was drawn (40 draws of 5 equally likely kinds), and the per-kind counts add
    // up to the totals.
    assert_eq!(r.by_kind.len(), 5, "{:?}", r.by_kind.keys());
    let sent: usize = r.by_kind.values().map(|c| c.sent).sum();
    let ok: usize = r.by_kind.values().map(|c| c.ok).sum();
    assert_eq!((sent, ok), (40, r.requests.completed));
    let c = &r.by_kind["cancel"];
    assert_eq!((c.ok, c.cancelled, c.failed), (0, c.sent, 0));
    assert_eq!(r.requests.cancelled, c.sent);
    assert_eq!(r.requests.completed + r.requests.cancelled, 40);
    for k in ["plain", "best-of-n", "speculative-rejection", "stream"] {
        let c = &r.by_kind[k];
        assert_eq!((c.ok, c.cancelled), (c.sent, 0), "{k}");
    }
    // Each kind had its own shape: the aligned kinds came back with their strategy, the
    // streamed ones with a time to first token.
    let a = r.alignment.as_ref().expect("alignment statistics");
    assert_eq!(
        a.strategies.get("best_of_n"),
        Some(&r.by_kind["best-of-n"].ok)
    );
    assert_eq!(
        a.strategies.get("speculative_rejection"),
        Some(&r.by_kind["speculative-rejection"].ok)
    );
    use thresh_bench::mix::RequestKind;
    for o in &run.outcomes {
        let k = o.kind.expect("every outcome of a mixed run has its kind");
        match k {
            // A stream has a time to first token unless the policy ended at once.
            RequestKind::Stream => assert!(o.ttft.is_some() || o.output_tokens == 0, "{o:?}"),
            RequestKind::Plain | RequestKind::BestOfN | RequestKind::SpeculativeRejection => {
                // A whole response (the tiny random policy may end at once, so its text
                // can be empty) with its usage.
                assert!(o.ttft.is_none() && o.has_usage, "{k:?} {o:?}")
            }
            RequestKind::Cancel => assert!(o.cancelled && o.latency < 5.0),
        }
    }
    // The same seed draws the same kinds.
    let again = run_load(cfg).await.unwrap();
    let kinds =
        |r: &thresh_bench::load::LoadRun| r.outcomes.iter().map(|o| o.kind).collect::<Vec<_>>();
    assert_eq!(kinds(&run), kinds(&again));
    // The JSON result with its per-kind counts follows bench/SCHEMA.md.
    let v = serde_json::to_value(r).unwrap();
    let seen = schema::check(&v, LOAD_SCHEMA);
    assert!(seen.iter().any(|p| p == "by_kind.*.cancelled"));
    assert!(r.table().contains("Cancelled by design"));
    // After the dropped streams the server still answers.
    let after = run_load(small_run(format!("http://{}", server.addr()), 4))
        .await
        .unwrap();
    assert_eq!(after.report.requests.completed, 4);
    server.shutdown();
    server.wait().await.unwrap();
}
