//! A gateway over two `thresh serve` replicas, one killed (SIGKILL) while eight clients keep it
//! busy: no request hangs, each is answered (a whole answer in flight on the dead replica is
//! redone on the other) or refused with a 502/503 in OpenAI's error shape; the dead replica
//! is left out while it is down, and taken back by the health checks once it is up again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use thresh_e2e::{
    Daemon, Http, Value, closed_port, json, serve_command, serve_command_on, tiny_policy,
    tiny_reward,
};

/// `thresh_policy_replica_requests_total{replica=R/completions, outcome}` on a `/metrics` page.
fn requests(page: &str, replica: &str, outcome: &str) -> f64 {
    let replica = format!("replica=\"{replica}/completions\"");
    let outcome = format!("outcome=\"{outcome}\"");
    page.lines()
        .filter(|l| l.starts_with("thresh_policy_replica_requests_total{"))
        .filter(|l| l.contains(&replica) && l.contains(&outcome))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `thresh_policy_replica_up{replica=R/completions}` on a `/metrics` page.
fn up(page: &str, replica: &str) -> Option<f64> {
    let replica = format!("replica=\"{replica}/completions\"");
    page.lines()
        .find(|l| l.starts_with("thresh_policy_replica_up{") && l.contains(&replica))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
}

fn metrics(http: &Http, gateway: &Daemon) -> String {
    match http.get(&gateway.url("/metrics")) {
        (200, Value::String(page)) => page,
        (status, v) => panic!("GET /metrics: {status} {v}"),
    }
}

/// Request `i` of a client: Best-of-4 and Speculative Rejection in turn, long enough
/// (160 tokens each) that some are on their way when the replica dies.
fn ask(i: usize) -> Value {
    let alignment = if i.is_multiple_of(2) {
        json!({"strategy": "best_of_n", "candidates": 4})
    } else {
        json!({"strategy": "speculative_rejection", "candidates": 8, "alpha": 0.5,
               "decision_tokens": [40, 80]})
    };
    json!({"prompt": format!("request {i}"), "max_tokens": 160, "ignore_eos": true,
           "seed": i, "alignment": alignment})
}

#[test]
fn a_replica_killed_under_load_costs_no_hung_request_and_is_taken_back_when_up() {
    let dir = tempfile::tempdir().unwrap();
    let policy = tiny_policy(dir.path(), "policy");
    let reward = tiny_reward(dir.path(), "reward");
    let http = Http::new();
    let a_port = closed_port();
    let mut a = Daemon::start(
        serve_command_on(&policy, &reward, a_port),
        &dir.path().join("a.log"),
    );
    let mut b = Daemon::start(serve_command(&policy, &reward), &dir.path().join("b.log"));
    a.wait_healthy(&http);
    b.wait_healthy(&http);
    let (ra, rb) = (
        format!("{}/v1", a.base_url()),
        format!("{}/v1", b.base_url()),
    );
    let fleet = std::path::PathBuf::from(format!("{ra},{rb}"));
    let mut gateway = serve_command(&fleet, &reward);
    gateway.args(["--policy-tokenizer"]).arg(&policy);
    gateway.args(["--policy-health-interval", "1"]);
    let mut gateway = Daemon::start(gateway, &dir.path().join("gateway.log"));
    gateway.wait_healthy(&http);
    let at = gateway.url("/v1/completions");

    // Eight clients, six requests each; replica a is killed once eight have been answered.
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let (at, answered) = (at.clone(), answered.clone());
            std::thread::spawn(move || {
                let http = Http::new();
                (0..6)
                    .map(|k| {
                        let t = Instant::now();
                        let (status, v) = http.post(&at, &ask(client * 6 + k));
                        answered.fetch_add(1, Ordering::SeqCst);
                        (status, v, t.elapsed())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let t = Instant::now();
    while answered.load(Ordering::SeqCst) < 8 {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "no answers under load"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let before = metrics(&http, &gateway);
    let log_a = a.kill();
    let at_kill = answered.load(Ordering::SeqCst);
    assert!(at_kill < 48, "the load was over before the kill");
    let results: Vec<_> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("a client thread"))
        .collect();
    assert_eq!(results.len(), 48);
    let mut ok = 0;
    for (status, v, took) in &results {
        assert!(
            *took < Duration::from_secs(60),
            "a request hung for {took:?}: {status} {v}"
        );
        match status {
            200 => {
                ok += 1;
                assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
                assert!(v["choices"][0]["text"].is_string(), "{v}");
            }
            502 | 503 => {
                let e = &v["error"];
                assert!(
                    e["message"].is_string() && e["type"].is_string() && e["code"].is_string(),
                    "OpenAI's error shape: {v}"
                );
            }
            other => panic!("neither an answer nor a 502/503: {other} {v}"),
        }
    }
    let page = metrics(&http, &gateway);
    assert!(
        requests(&page, &ra, "failed") >= 1.0,
        "the kill was seen as replica a's failure:\n{page}\nlog of a:\n{log_a}"
    );
    // Every request after the kill found replica b; the ones in flight on a were redone there.
    assert_eq!(
        ok,
        48,
        "whole answers in flight on a are redone on b: {:?}",
        results
            .iter()
            .filter(|r| r.0 != 200)
            .map(|r| &r.1)
            .collect::<Vec<_>>()
    );
    assert!(
        requests(&before, &ra, "ok") >= 1.0,
        "replica a served before the kill"
    );
    assert_eq!(up(&page, &ra), Some(0.0), "replica a is left out:\n{page}");
    assert_eq!(up(&page, &rb), Some(1.0), "{page}");
    // While a is down, answers come from b only, and are not slowed by tries on a.
    let served_by_a = requests(&page, &ra, "ok");
    for i in 0..4 {
        let (status, v) = http.post(&at, &ask(100 + i));
        assert_eq!(status, 200, "{v}");
    }
    let page = metrics(&http, &gateway);
    assert_eq!(requests(&page, &ra, "ok"), served_by_a, "{page}");

    // Replica a comes back on its port: the health checks take it back, and it serves again.
    let mut a = Daemon::start(
        serve_command_on(&policy, &reward, a_port),
        &dir.path().join("a2.log"),
    );
    a.wait_healthy(&http);
    let t = Instant::now();
    while up(&metrics(&http, &gateway), &ra) != Some(1.0) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "replica a never taken back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 0..8 {
        let (status, v) = http.post(&at, &ask(200 + i));
        assert_eq!(status, 200, "{v}");
    }
    let page = metrics(&http, &gateway);
    assert!(
        requests(&page, &ra, "ok") > served_by_a,
        "replica a serves again:\n{page}"
    );
}
