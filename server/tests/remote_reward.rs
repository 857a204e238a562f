//! thresh_reward's remote backend against a real `thresh serve` on loopback: the `thresh`
//! wire format is what the daemon's `/v1/rewards` speaks, and remote scores equal the
//! daemon's reward model run in process.

mod common;

use common::*;
use thresh_models::ChatMessage;
use thresh_reward::{Prompt, RemoteFormat, RemoteReward, RewardInput, RewardModel};

#[tokio::test]
async fn remote_reward_scores_through_thresh_serve() {
    let m = tiny_models(256);
    let server = start_ready(tiny_config(&m)).await;
    let endpoint = url(&server, "/v1/rewards");
    let reward_dir = m.reward.clone();
    tokio::task::spawn_blocking(move || {
        let inputs = vec![
            RewardInput::new("Is ice cold?", "Yes, it is frozen water."),
            RewardInput {
                prompt: Prompt::Messages(vec![
                    ChatMessage::new("system", "Be brief."),
                    ChatMessage::new("user", "Name a colour."),
                ]),
                response: "Blue.".into(),
            },
            RewardInput::new("Say hi.", "hi"),
        ];
        let remote = RemoteReward::new(&endpoint, RemoteFormat::Thresh).unwrap();
        let got = remote.score(&inputs).unwrap();
        let local = thresh_reward::load(&reward_dir, None, &Default::default()).unwrap();
        let want = local.score(&inputs).unwrap();
        assert_eq!(got.len(), 3);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g.score - w.score).abs() < 1e-5,
                "{} vs {}",
                g.score,
                w.score
            );
        }
        // A route the daemon does not have is its 404, reported with the URL.
        let wrong = RemoteReward::new(&format!("{endpoint}-nope"), RemoteFormat::Thresh).unwrap();
        let e = wrong.score(&inputs).unwrap_err().to_string();
        assert!(e.contains("404") && e.contains("/v1/rewards-nope"), "{e}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_remote_reward_behind_an_api_key_gets_the_bearer_token() {
    let m = tiny_models(256);
    let mut up = tiny_config(&m);
    up.api_keys = vec!["sesame".into()];
    let upstream = start_ready(up).await;
    let endpoint = url(&upstream, "/v1/rewards");
    let aligned = serde_json::json!({
        "prompt": "Is ice cold?", "max_tokens": 4,
        "alignment": {"strategy": "best_of_n", "candidates": 2},
    });
    let c = client();

    // The right key: Best-of-N scores through the upstream.
    let mut cfg = tiny_config(&m);
    cfg.reward = std::path::PathBuf::from(&endpoint);
    cfg.reward_api_key = Some("sesame".parse().unwrap());
    assert!(
        !format!("{cfg:?}").contains("sesame"),
        "the key is not in the settings' Debug"
    );
    let good = start_ready(cfg).await;
    let (status, _, v) = post(&c, &url(&good, "/v1/completions"), &aligned).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["choices"][0]["reward"].as_f64().is_some(), "{v}");

    // A wrong key: the upstream's 401 is a 502 that names the upstream and the flag.
    let mut cfg = tiny_config(&m);
    cfg.reward = std::path::PathBuf::from(&endpoint);
    cfg.reward_api_key = Some("wrong-key".parse().unwrap());
    let bad = start_ready(cfg).await;
    for (route, body) in [
        ("/v1/completions", aligned.clone()),
        (
            "/v1/rewards",
            serde_json::json!({"input": [{"prompt": "a", "response": "b"}]}),
        ),
    ] {
        let (status, _, v) = post(&c, &url(&bad, route), &body).await;
        assert_eq!(status, 502, "{route}: {v}");
        assert_eq!(v["error"]["code"], "upstream_error");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(&endpoint) && msg.contains("401") && msg.contains("--reward-api-key"),
            "{msg}"
        );
        assert!(!msg.contains("wrong-key"), "the key is not echoed: {msg}");
    }
    for s in [good, bad, upstream] {
        s.shutdown();
        s.wait().await.unwrap();
    }
}
