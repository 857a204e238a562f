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
