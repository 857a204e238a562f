//! `thresh-bench quality` against a real thresh server on loopback with a tiny random model:
//! the sweep's improvement scores and compute ratios, its JSON schema and its chart.

mod common;

use std::time::Duration;

use common::*;
use thresh_bench::client::Endpoint;
use thresh_bench::dataset::DatasetSpec;
use thresh_bench::output::write_json;
use thresh_bench::plot::write_quality_chart;
use thresh_bench::quality::{QUALITY_SCHEMA, QualityConfig, QualitySettings, run_quality};

fn settings(base_url: &str) -> QualitySettings {
    QualitySettings {
        base_url: base_url.to_string(),
        endpoint: "chat".into(),
        dataset: "builtin".into(),
        prompts: 2,
        n0: 2,
        multiples: vec![1, 2, 4],
        alphas: vec![0.5],
        sr_candidates: 4,
        max_tokens: 12,
        temperature: 1.0,
        top_k: 50,
        seed: 5,
    }
}

#[tokio::test]
async fn the_sweep_scores_every_method_against_bo_n0() {
    let m = tiny_models(1024);
    let server = start_ready(tiny_config(&m)).await;
    let base = format!("http://{}", server.addr());
    let cfg = QualityConfig {
        target: target(base.clone(), Endpoint::Chat),
        items: DatasetSpec::Builtin.load(2, 0).unwrap(),
        settings: settings(&base),
        timeout: Duration::from_secs(300),
        progress: false,
    };
    let r = run_quality(cfg).await.unwrap();
    assert_eq!(r.prompts.len(), 2);
    let labels: Vec<&str> = r.methods.iter().map(|m| m.label.as_str()).collect();
    assert_eq!(
        labels,
        ["BoN N=2", "BoN N=4", "BoN N=8", "SpecRej alpha=0.5"]
    );
    for p in &r.prompts {
        assert!(p.bo_n0_min_reward <= p.bo_n0_max_reward);
        assert!(p.bo_n0_compute.wall_s > 0.0);
        assert!(p.bo_n0_compute.policy_tokens >= 2.0);
        assert!(p.bo_n0_compute.reward_tokens > 0.0);
        // Best-of-n0 run again with the same seed returns the best of the same candidates.
        let bo = &p.methods[0];
        assert!(
            (bo.improvement - 100.0).abs() < 1e-3,
            "Bo_n0 scores 100: {}",
            bo.improvement
        );
        assert!((bo.reward - p.bo_n0_max_reward).abs() < 1e-5);
        // More candidates: more policy tokens, and (rows seeded seed + r) never a worse pick.
        for w in p.methods[..3].windows(2) {
            assert!(w[1].compute.policy_tokens > w[0].compute.policy_tokens);
            assert!(
                w[1].reward >= w[0].reward - 1e-5,
                "{} < {}",
                w[1].reward,
                w[0].reward
            );
        }
        for mr in &p.methods {
            assert!(mr.time_ratio > 0.0 && mr.token_ratio > 0.0, "{mr:?}");
            let expect = 100.0
                * (1.0
                    + (mr.reward - p.bo_n0_max_reward)
                        / (p.bo_n0_max_reward - p.bo_n0_min_reward).max(1e-6));
            assert!((mr.improvement - expect).abs() < 1e-9);
        }
    }
    // The summaries are the means over prompts.
    for (k, ms) in r.methods.iter().enumerate() {
        let mean = r
            .prompts
            .iter()
            .map(|p| p.methods[k].improvement)
            .sum::<f64>()
            / 2.0;
        assert!((ms.improvement - mean).abs() < 1e-9);
    }
    assert_eq!(r.methods[1].n, Some(4));
    assert_eq!(r.methods[3].alpha, Some(0.5));
    assert!(r.table().contains("| SpecRej alpha=0.5 |"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quality.json");
    write_json(&path, &r).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    schema::check(&v, QUALITY_SCHEMA);
    for name in ["quality.png", "quality.svg"] {
        let p = dir.path().join(name);
        write_quality_chart(&p, &r, None).unwrap();
        assert!(std::fs::metadata(&p).unwrap().len() > 2_000);
    }
    let svg = std::fs::read_to_string(dir.path().join("quality.svg")).unwrap();
    assert!(
        svg.contains("N=8") && svg.contains("α=0.5"),
        "points are labelled"
    );
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn a_server_without_the_alignment_extension_is_refused_clearly() {
    // thresh with an unknown model name stands in for a server that rejects the request.
    let m = tiny_models(1024);
    let server = start_ready(tiny_config(&m)).await;
    let base = format!("http://{}", server.addr());
    let mut t = target(base.clone(), Endpoint::Chat);
    t.model = Some("elsewhere".into());
    let cfg = QualityConfig {
        target: t,
        items: DatasetSpec::Builtin.load(1, 0).unwrap(),
        settings: settings(&base),
        timeout: Duration::from_secs(60),
        progress: false,
    };
    let e = run_quality(cfg).await.unwrap_err().to_string();
    assert!(e.contains("status 404") && e.contains("elsewhere"), "{e}");
    let mut s = settings(&base);
    s.prompts = 99;
    let cfg = QualityConfig {
        target: target(base.clone(), Endpoint::Chat),
        items: DatasetSpec::Builtin.load(1, 0).unwrap(),
        settings: s,
        timeout: Duration::from_secs(60),
        progress: false,
    };
    let e = run_quality(cfg).await.unwrap_err().to_string();
    assert!(e.contains("--prompts must be in [1, 30]"), "{e}");
    server.shutdown();
    server.wait().await.unwrap();
}
