//! thresh's strategies over a remote policy (`thresh_decoding::remote`), against a real
//! `thresh serve` on loopback: Best-of-N, Soft Best-of-N and rejection sampling choose exactly
//! what the backend's own strategy chooses, and Speculative Rejection prunes, round by round, exactly the rows a reference
//! computation picks from the candidates' partial scores, with exact token accounting.

mod common;
mod gateway;

use common::{client, post, start_ready, tiny_config, tiny_models, url};
use gateway::{gateway_config, limited_backend, limited_backend_on, load_error};
use serde_json::json;
use thresh_decoding::remote::RemotePolicy;
use thresh_decoding::strategy::remote::RemoteInput;
use thresh_decoding::strategy::{
    Fate, Rejection, Schedule, SpeculativeParams, Strategy, keep_count,
};
use thresh_decoding::{SamplingParams, StopConditions};
use thresh_models::LoadOptions;
use thresh_reward::{Prompt, RewardInput};

#[tokio::test]
async fn best_of_n_soft_and_rejection_over_a_remote_thresh_choose_what_the_backend_chooses() {
    let m = tiny_models(256);
    let server = start_ready(tiny_config(&m)).await;
    let c = client();
    let policy = thresh_models::load(&m.policy.to_string_lossy(), &LoadOptions::default()).unwrap();
    let prompt = policy.tokenizer.encode("hello there", true).unwrap();
    // A threshold no answer of the tiny reward reaches: every batch of rejection sampling is
    // drawn, so the seeds of its later batches (seed + 4, seed + 8) are checked too.
    let cases = [
        (
            json!({"strategy": "best_of_n", "candidates": 4}),
            Strategy::BestOfN { candidates: 4 },
            4,
        ),
        (
            json!({"strategy": "soft_best_of_n", "candidates": 4, "lambda": 0.05}),
            Strategy::SoftBestOfN {
                candidates: 4,
                lambda: 0.05,
            },
            4,
        ),
        (
            json!({"strategy": "rejection_sampling", "candidates": 4, "threshold": 1000.0,
                   "max_tries": 3}),
            Strategy::Rejection {
                candidates: 4,
                threshold: 1000.0,
                max_tries: 3,
            },
            12,
        ),
    ];
    for (alignment, strategy, drawn) in cases {
        let mut alignment = alignment;
        alignment["return_candidates"] = json!(true);
        let (status, _, own) = post(
            &c,
            &url(&server, "/v1/completions"),
            &json!({"prompt": prompt, "max_tokens": 8, "seed": 7, "return_token_ids": true,
                    "alignment": alignment}),
        )
        .await;
        assert_eq!(status, 200, "{own}");
        let base = url(&server, "/v1");
        let (policy_dir, reward_dir, ids) = (m.policy.clone(), m.reward.clone(), prompt.clone());
        let name = strategy.name();
        let remote = tokio::task::spawn_blocking(move || {
            let policy =
                thresh_models::load(&policy_dir.to_string_lossy(), &LoadOptions::default())
                    .unwrap();
            let reward = thresh_reward::load(&reward_dir, None, &Default::default()).unwrap();
            let backend = RemotePolicy::new(&base).unwrap();
            let input = RemoteInput {
                policy: &backend,
                tokenizer: &policy.tokenizer,
                prompt_ids: &ids,
                // A token-id prompt is scored as its decoded text, as the backend does.
                reward_prompt: Prompt::Text(policy.tokenizer.decode(&ids, true).unwrap()),
                sampling: SamplingParams {
                    seed: 7,
                    ..Default::default()
                },
                stop: StopConditions {
                    max_tokens: 8,
                    ..Default::default()
                },
                top_k: 1,
                return_candidates: true,
                cancel: None,
            };
            strategy.run_remote(&input, reward.as_ref()).unwrap()
        })
        .await
        .unwrap();
        let chosen: Vec<u64> = own["choices"][0]["token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        let best = &remote.best[0];
        assert_eq!(
            best.tokens.iter().map(|&t| t as u64).collect::<Vec<_>>(),
            chosen,
            "{name}: the same answer as the backend's own"
        );
        assert_eq!(
            best.text,
            own["choices"][0]["text"].as_str().unwrap(),
            "{name}"
        );
        let theirs = own["alignment"]["candidates"].as_array().unwrap();
        let ours = remote.candidates.unwrap();
        assert_eq!(ours.len(), drawn, "{name}");
        assert_eq!(theirs.len(), drawn, "{name}: {own}");
        for (o, t) in ours.iter().zip(theirs) {
            assert_eq!(
                o.text,
                t["text"].as_str().unwrap(),
                "{name}: candidate {}",
                o.row
            );
            let reward = t["reward"].as_f64().unwrap() as f32;
            assert!(
                (o.score - reward).abs() < 1e-5,
                "{name}: {} vs {reward}",
                o.score
            );
        }
        assert_eq!(
            remote.stats.policy_tokens as u64,
            own["alignment"]["stats"]["policy_tokens"].as_u64().unwrap(),
            "{name}: the same policy tokens"
        );
    }
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn speculative_rejection_over_a_remote_thresh_prunes_the_reference_rows() {
    let m = tiny_models(256);
    let server = start_ready(tiny_config(&m)).await;
    let base = url(&server, "/v1");
    let (policy_dir, reward_dir) = (m.policy.clone(), m.reward.clone());
    tokio::task::spawn_blocking(move || {
        let policy =
            thresh_models::load(&policy_dir.to_string_lossy(), &LoadOptions::default()).unwrap();
        let tok = &policy.tokenizer;
        let reward = thresh_reward::load(&reward_dir, None, &Default::default()).unwrap();
        let backend = RemotePolicy::new(&base).unwrap();
        let prompt = tok.encode("Tell me a story.", true).unwrap();
        let reward_prompt = Prompt::Text("Tell me a story.".into());
        let input = RemoteInput {
            policy: &backend,
            tokenizer: tok,
            prompt_ids: &prompt,
            reward_prompt: reward_prompt.clone(),
            sampling: SamplingParams {
                seed: 11,
                ..Default::default()
            },
            // No row ends early, so every round's rows and lengths are known.
            stop: StopConditions {
                max_tokens: 12,
                ignore_eos: true,
                ..Default::default()
            },
            top_k: 1,
            return_candidates: true,
            cancel: None,
        };
        let params = SpeculativeParams {
            rejection: Rejection::Fixed(0.5),
            kv_budget_tokens: 1 << 20,
            max_batch: 8,
            initial_batch: Some(8),
            schedule: Some(Schedule::Tokens(vec![4, 8])),
        };
        let out = Strategy::Speculative(params)
            .run_remote(&input, reward.as_ref())
            .unwrap();
        assert_eq!(out.stats.decision_tokens, [4, 8]);
        assert_eq!(out.stats.pruned_per_round, [4, 2]);
        assert_eq!(
            out.stats.policy_tokens,
            8 * 4 + 4 * 4 + 2 * 4,
            "exact token accounting"
        );
        let cands = out.candidates.unwrap();
        // The reference: score every alive row's first `d` tokens, drop the worst half.
        let mut alive: Vec<usize> = (0..8).collect();
        for (round, d) in [(1usize, 4usize), (2, 8)] {
            let inputs: Vec<RewardInput> = alive
                .iter()
                .map(|&r| RewardInput {
                    prompt: reward_prompt.clone(),
                    response: tok.decode(&cands[r].tokens[..d], true).unwrap(),
                })
                .collect();
            let scores = reward.score(&inputs).unwrap();
            let mut ranked: Vec<(usize, f32)> = alive
                .iter()
                .copied()
                .zip(scores.iter().map(|s| s.score))
                .collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let keep = keep_count(0.5, ranked.len());
            for &(r, s) in &ranked[keep..] {
                assert_eq!(cands[r].fate, Fate::Pruned { round }, "row {r}");
                assert_eq!(cands[r].tokens.len(), d, "row {r} stopped at the decision");
                assert!((cands[r].score - s).abs() < 1e-5);
            }
            alive = ranked[..keep].iter().map(|x| x.0).collect();
        }
        for &r in &alive {
            assert_eq!(cands[r].fate, Fate::LengthCapped, "row {r} ran to the end");
            assert_eq!(cands[r].tokens.len(), 12);
        }
        assert!(alive.contains(&out.best[0].row));
    })
    .await
    .unwrap();
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn a_gateway_over_a_remote_thresh_answers_as_the_backend_does() {
    let m = tiny_models(256);
    let backend = start_ready(tiny_config(&m)).await;
    let gateway = start_ready(gateway_config(&m, &url(&backend, "/v1"))).await;
    let c = client();
    let at = |s: &thresh_server::serve::Server| url(s, "/v1/completions");

    // Plain sampling, Best-of-N, Soft Best-of-N and rejection sampling: the same answers
    // either way.
    for body in [
        json!({"prompt": "hello", "max_tokens": 8, "n": 2, "seed": 5}),
        json!({"prompt": "hello", "max_tokens": 8, "seed": 5,
               "alignment": {"strategy": "best_of_n", "candidates": 4}}),
        json!({"prompt": "hello", "max_tokens": 8, "seed": 5,
               "alignment": {"strategy": "soft_best_of_n", "candidates": 4, "lambda": 0.5}}),
        json!({"prompt": "hello", "max_tokens": 8, "seed": 5,
               "alignment": {"strategy": "rejection_sampling", "candidates": 2,
                             "threshold": 1000.0, "max_tries": 2}}),
    ] {
        let (s1, _, direct) = post(&c, &at(&backend), &body).await;
        let (s2, _, through) = post(&c, &at(&gateway), &body).await;
        assert_eq!((s1, s2), (200, 200), "{direct} {through}");
        assert_eq!(
            direct["alignment"]["stats"]["policy_tokens"],
            through["alignment"]["stats"]["policy_tokens"],
            "{body}"
        );
        for i in 0..direct["choices"].as_array().unwrap().len() {
            assert_eq!(
                direct["choices"][i]["text"], through["choices"][i]["text"],
                "{body}"
            );
        }
    }

    // Speculative Rejection decides, prunes and spends fewer policy tokens than Best-of-N.
    let sr = json!({"prompt": "hello", "max_tokens": 24, "seed": 5, "ignore_eos": true,
                    "alignment": {"strategy": "speculative_rejection", "candidates": 8,
                                  "alpha": 0.5, "decision_tokens": [6, 12]}});
    let (status, _, v) = post(&c, &at(&gateway), &sr).await;
    assert_eq!(status, 200, "{v}");
    let stats = &v["alignment"]["stats"];
    assert_eq!(stats["decision_tokens"], json!([6, 12]), "{v}");
    assert_eq!(stats["pruned_per_round"], json!([4, 2]));
    assert_eq!(stats["policy_tokens"], 8 * 6 + 4 * 6 + 2 * 12);
    let bon = json!({"prompt": "hello", "max_tokens": 24, "seed": 5, "ignore_eos": true,
                     "alignment": {"strategy": "best_of_n", "candidates": 8}});
    let (_, _, b) = post(&c, &at(&gateway), &bon).await;
    assert_eq!(b["alignment"]["stats"]["policy_tokens"], 8 * 24);

    // Chat renders with the tokenizer's template; streaming works.
    let chat = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 6,
                      "seed": 2});
    let (s1, _, direct) = post(&c, &url(&backend, "/v1/chat/completions"), &chat).await;
    let (s2, _, through) = post(&c, &url(&gateway, "/v1/chat/completions"), &chat).await;
    assert_eq!((s1, s2), (200, 200), "{through}");
    assert_eq!(
        direct["choices"][0]["message"]["content"],
        through["choices"][0]["message"]["content"]
    );
    let text = common::streamed_chat_text(&c, &url(&gateway, "/v1/chat/completions"), &chat).await;
    assert_eq!(
        text,
        through["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
    );
    for s in [gateway, backend] {
        s.shutdown();
        s.wait().await.unwrap();
    }
}

#[tokio::test]
async fn a_gateway_whose_backend_is_down_fails_to_start_naming_it() {
    let m = tiny_models(256);
    // A port nothing listens on (held for the test, so that nothing else comes to).
    let (_dead, addr) = common::reserve_port();
    let backend = format!("http://{addr}/v1");
    let mut cfg = gateway_config(&m, &backend);
    cfg.policy_startup_timeout = std::time::Duration::from_secs(2);
    let server = thresh_server::serve::start(cfg).await.unwrap();
    let e = load_error(&server).await;
    assert!(
        e.contains(&addr.to_string()) && e.contains("--policy"),
        "{e}"
    );
    server.shutdown();
    server.wait().await.unwrap();
}

/// `thresh_policy_replica_requests_total` of `replica` with `outcome` on a `/metrics` page.
fn count_in(page: &str, replica: &str, outcome: &str) -> f64 {
    let replica = format!("replica=\"{replica}/completions\"");
    let outcome = format!("outcome=\"{outcome}\"");
    metric(
        page,
        "thresh_policy_replica_requests_total{",
        &[&replica, &outcome],
    )
}

/// The sum of the samples on `page` whose line starts with `name` and holds every one of
/// `labels`.
fn metric(page: &str, name: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
}

#[tokio::test]
async fn a_fleet_of_two_outlives_a_dead_replica_and_takes_it_back() {
    let m = tiny_models(256);
    let a = start_ready(tiny_config(&m)).await;
    let b = start_ready(tiny_config(&m)).await;
    let a_addr = a.addr();
    let fleet = format!("{},{}", url(&a, "/v1"), url(&b, "/v1"));
    let mut cfg = gateway_config(&m, &fleet);
    cfg.policy_health_interval = std::time::Duration::from_secs(1);
    let gateway = start_ready(cfg).await;
    let c = client();
    let at = url(&gateway, "/v1/completions");
    let ask = |i: usize| {
        json!({"prompt": format!("prompt {i}"), "max_tokens": 4, "seed": 1,
               "alignment": {"strategy": "best_of_n", "candidates": 2}})
    };
    for i in 0..6 {
        let (status, _, v) = post(&c, &at, &ask(i)).await;
        assert_eq!(status, 200, "{v}");
    }
    // One replica goes away: every request is still answered, by the other.
    a.shutdown();
    a.wait().await.unwrap();
    for i in 0..6 {
        let (status, _, v) = post(&c, &at, &ask(i)).await;
        assert_eq!(status, 200, "replica a is down, b answers: {v}");
    }
    // Both gone: a 502 in OpenAI's shape that names them, not a hang.
    b.shutdown();
    b.wait().await.unwrap();
    let t = std::time::Instant::now();
    let (status, _, v) = post(&c, &at, &ask(0)).await;
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["error"]["code"], "upstream_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&a_addr.to_string()),
        "{v}"
    );
    assert!(t.elapsed().as_secs() < 30, "failed fast: {:?}", t.elapsed());
    // Per replica on the gateway's /metrics: every answer came from one of the two, and the
    // last request found both failing.
    let page = common::get_text(&c, &url(&gateway, "/metrics")).await;
    let count = |replica: &str, outcome: &str| count_in(&page, replica, outcome);
    let (ra, rb) = (
        format!("http://{a_addr}/v1"),
        fleet.split(',').nth(1).unwrap().to_string(),
    );
    assert!(count(&ra, "ok") + count(&rb, "ok") >= 12.0, "{page}");
    assert!(
        count(&ra, "failed") >= 1.0 && count(&rb, "failed") >= 1.0,
        "{page}"
    );
    let up = |page: &str, replica: &str| {
        let replica = format!("replica=\"{replica}/completions\"");
        page.lines()
            .find(|l| l.starts_with("thresh_policy_replica_up{") && l.contains(&replica))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert_eq!(up(&page, &ra), Some(0.0), "left out: {page}");
    // Replica a comes back on its address: the gateway's health checks (every second here)
    // take it back before any request is sent to it, and it serves again.
    let mut cfg = tiny_config(&m);
    cfg.addr = a_addr;
    let a = start_ready(cfg).await;
    let t = std::time::Instant::now();
    loop {
        let page = common::get_text(&c, &url(&gateway, "/metrics")).await;
        if up(&page, &ra) == Some(1.0) {
            assert_eq!(
                count(&ra, "ok"),
                count_in(&page, &ra, "ok"),
                "no request was sent"
            );
            break;
        }
        assert!(t.elapsed().as_secs() < 20, "never taken back: {page}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        up(&common::get_text(&c, &url(&gateway, "/metrics")).await, &rb),
        Some(0.0)
    );
    let (status, _, v) = post(&c, &at, &ask(0)).await;
    assert_eq!(status, 200, "the replica is taken back: {v}");
    for s in [gateway, a] {
        s.shutdown();
        s.wait().await.unwrap();
    }
}

#[tokio::test]
async fn a_gateway_started_before_its_backend_waits_for_it() {
    let m = tiny_models(256);
    let (port, addr) = common::reserve_port();
    // The gateway first (as a fleet starts: in any order), the backend a moment later.
    let gateway = thresh_server::serve::start(gateway_config(&m, &format!("http://{addr}/v1")))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(!gateway.is_ready(), "not ready while its backend is away");
    assert!(gateway.load_error().is_none(), "{:?}", gateway.load_error());
    let backend = common::start_ready_on(port, tiny_config(&m)).await;
    let t = std::time::Instant::now();
    while !gateway.is_ready() {
        assert!(gateway.load_error().is_none(), "{:?}", gateway.load_error());
        assert!(t.elapsed().as_secs() < 60, "the gateway never came up");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, _, v) = post(
        &client(),
        &url(&gateway, "/v1/completions"),
        &json!({"prompt": "hi", "max_tokens": 2}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    for s in [gateway, backend] {
        s.shutdown();
        s.wait().await.unwrap();
    }
}

#[tokio::test]
async fn a_backend_lacking_a_capability_fails_the_start_naming_it() {
    let m = tiny_models(256);
    for (lacks, named) in [("token_ids", "return_token_ids"), ("n", "asked for 2")] {
        let addr = limited_backend(lacks, "limited").await;
        let cfg = gateway_config(&m, &format!("http://{addr}/v1"));
        let server = thresh_server::serve::start(cfg).await.unwrap();
        let e = load_error(&server).await;
        assert!(
            e.contains("--policy") && e.contains("capability check") && e.contains(named),
            "{lacks}: {e}"
        );
        server.shutdown();
        server.wait().await.unwrap();
    }
}

#[tokio::test]
async fn a_fleet_with_one_replica_lacking_a_capability_fails_the_start_naming_that_replica() {
    let m = tiny_models(256);
    let good = start_ready(tiny_config(&m)).await;
    let models = common::get_json(&client(), &url(&good, "/v1/models")).await;
    let name: &'static str = models["data"][0]["id"].as_str().unwrap().to_string().leak();
    // The good one first: the fleet's probe finds it, the check of each replica finds the
    // other: one without `n`, then one that serves another model.
    let cases = [
        (
            limited_backend("n", name).await,
            "the capability check",
            "asked for 2".to_string(),
        ),
        (
            limited_backend("nothing", "another-model").await,
            "the server does not serve",
            format!("`{name}`"),
        ),
    ];
    for (bad, what, detail) in cases {
        let fleet = format!("{},http://{bad}/v1", url(&good, "/v1"));
        let server = thresh_server::serve::start(gateway_config(&m, &fleet))
            .await
            .unwrap();
        let e = load_error(&server).await;
        assert!(
            e.contains(&format!(
                "policy server http://{bad}/v1/completions: {what}"
            )) && e.contains(&detail),
            "{e}"
        );
        server.shutdown();
        server.wait().await.unwrap();
    }
    good.shutdown();
    good.wait().await.unwrap();
}

#[tokio::test]
async fn a_fleet_with_a_replica_down_at_start_up_serves_and_takes_it_in_once_it_is_up() {
    let m = tiny_models(256);
    let up = start_ready(tiny_config(&m)).await;
    let (port, later) = common::reserve_port();
    let fleet = format!("{},http://{later}/v1", url(&up, "/v1"));
    let mut cfg = gateway_config(&m, &fleet);
    cfg.policy_health_interval = std::time::Duration::from_millis(200);
    let gateway = start_ready(cfg).await;
    let c = client();
    let replica = format!("replica=\"http://{later}/v1/completions\"");
    let at = url(&gateway, "/metrics");
    let metrics = || common::get_text(&c, &at);
    let page = metrics().await;
    assert!(
        page.contains(&replica)
            && common::metric(&page, "thresh_policy_replica_up", &replica) == 0.0,
        "left out while down: {page}"
    );
    let (status, _, v) = post(
        &c,
        &url(&gateway, "/v1/completions"),
        &json!({"prompt": "hi", "max_tokens": 2}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let backend = common::start_ready_on(port, tiny_config(&m)).await;
    let t = std::time::Instant::now();
    while common::metric(&metrics().await, "thresh_policy_replica_up", &replica) != 1.0 {
        assert!(t.elapsed().as_secs() < 30, "never taken in");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for s in [gateway, up, backend] {
        s.shutdown();
        s.wait().await.unwrap();
    }
}

#[tokio::test]
async fn a_replica_down_at_start_up_that_lacks_a_capability_is_never_taken_in() {
    let m = tiny_models(256);
    let up = start_ready(tiny_config(&m)).await;
    let models = common::get_json(&client(), &url(&up, "/v1/models")).await;
    let name: &'static str = models["data"][0]["id"].as_str().unwrap().to_string().leak();
    let c = client();
    // With health checks, and without (then the request that finds the replica due runs the
    // check, once its 5 s out are over).
    for every in [100, 0] {
        let (port, later) = common::reserve_port();
        let fleet = format!("{},http://{later}/v1", url(&up, "/v1"));
        let mut cfg = gateway_config(&m, &fleet);
        cfg.policy_health_interval = std::time::Duration::from_millis(every);
        let gateway = start_ready(cfg).await;
        // It comes up serving the model, but answers without token ids: its health probe
        // passes, the start-up check it missed does not.
        limited_backend_on(port.listen(1024).unwrap(), "token_ids", name);
        let page_at = url(&gateway, "/metrics");
        let late = format!("http://{later}/v1");
        let replica = format!("replica=\"{late}/completions\"");
        let ask = |i: usize| {
            let (c, at) = (c.clone(), url(&gateway, "/v1/completions"));
            async move {
                let body = json!({"prompt": format!("prompt {i}"), "max_tokens": 2});
                let (status, _, v) = post(&c, &at, &body).await;
                assert_eq!(status, 200, "{every} ms, prompt {i}: {v}");
            }
        };
        let t = std::time::Instant::now();
        loop {
            ask(0).await;
            let page = common::get_text(&c, &page_at).await;
            let asked: f64 = ["ok", "refused", "failed"]
                .iter()
                .map(|o| count_in(&page, &late, o))
                .sum();
            if asked >= 1.0 {
                break;
            }
            assert!(
                t.elapsed().as_secs() < 30,
                "{every} ms: never checked: {page}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let page = common::get_text(&c, &page_at).await;
        assert_eq!(
            common::metric(&page, "thresh_policy_replica_up", &replica),
            0.0,
            "{every} ms: left out: {page}"
        );
        // Prompts that hash to either replica all go to the one that passed.
        for i in 0..8 {
            ask(i).await;
        }
        gateway.shutdown();
        gateway.wait().await.unwrap();
    }
    up.shutdown();
    up.wait().await.unwrap();
}

#[tokio::test]
async fn a_fleet_with_a_concurrency_limit_spills_to_the_next_replica_and_never_overloads_one() {
    let m = tiny_models(256);
    // Each backend runs one request at a time and queues one more: a third at once is 429.
    // (The gateway's limit is one, not two: a backend answers a request just before its
    // worker takes the next from its queue, so the gateway's next may meet a full queue.)
    let backend = || {
        let mut cfg = tiny_config(&m);
        cfg.max_batch_requests = 1;
        cfg.max_queue = 1;
        start_ready(cfg)
    };
    let (a, b) = (backend().await, backend().await);
    let fleet = format!("{},{}", url(&a, "/v1"), url(&b, "/v1"));
    let mut cfg = gateway_config(&m, &fleet);
    cfg.policy_max_in_flight = Some(1);
    let gateway = start_ready(cfg).await;
    let c = client();
    // One prompt, so every request hashes to the same replica.
    let body = json!({"prompt": "the same prompt", "max_tokens": 48, "ignore_eos": true,
                      "seed": 3, "temperature": 1.0});
    let at = url(&gateway, "/v1/completions");
    let answers = futures_util::future::join_all((0..6).map(|_| post(&c, &at, &body))).await;
    let mut texts = std::collections::HashSet::new();
    for (status, _, v) in &answers {
        assert_eq!(*status, 200, "no replica had a third request: {v}");
        texts.insert(v["choices"][0]["text"].as_str().unwrap().to_string());
    }
    assert_eq!(
        texts.len(),
        1,
        "the same answer on either replica: {texts:?}"
    );
    let page = common::get_text(&c, &url(&gateway, "/metrics")).await;
    let (ra, rb) = (url(&a, "/v1"), url(&b, "/v1"));
    let count = |replica: &str, outcome: &str| count_in(&page, replica, outcome);
    // Start-up checks count too; the six went to both, none refused by a full replica.
    assert!(count(&ra, "ok") >= 2.0 && count(&rb, "ok") >= 2.0, "{page}");
    assert!(count(&ra, "ok") + count(&rb, "ok") >= 8.0, "{page}");
    assert_eq!(count(&ra, "failed") + count(&rb, "failed"), 0.0, "{page}");
    assert!(
        metric(&page, "thresh_policy_affinity_spills_total", &[]) >= 1.0,
        "{page}"
    );
    assert_eq!(
        metric(&page, "thresh_policy_waiting_for_replica", &[]),
        0.0,
        "{page}"
    );
    let in_flight = |replica: &str| {
        let replica = format!("replica=\"{replica}/completions\"");
        metric(&page, "thresh_policy_replica_in_flight{", &[&replica])
    };
    assert_eq!(
        (in_flight(&ra), in_flight(&rb)),
        (0.0, 0.0),
        "all given back: {page}"
    );
    // Without the limit, the same load overloads the backends: the limit is what kept them
    // within what they take.
    let unlimited = start_ready(gateway_config(&m, &fleet)).await;
    let at = url(&unlimited, "/v1/completions");
    let answers = futures_util::future::join_all((0..6).map(|_| post(&c, &at, &body))).await;
    let page = common::get_text(&c, &url(&unlimited, "/metrics")).await;
    let refused = count_in(&page, &ra, "failed") + count_in(&page, &rb, "failed");
    let statuses: Vec<u16> = answers.iter().map(|(s, _, _)| *s).collect();
    assert!(refused >= 1.0, "statuses {statuses:?}; {page}");
    for s in [unlimited, gateway, a, b] {
        s.shutdown();
        s.wait().await.unwrap();
    }
}
