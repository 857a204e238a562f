//! `POST /v1/rewards`'s body to reward inputs.

use thresh_reward::{Prompt, RewardInput};

use super::{bad, messages};
use crate::serve::api::contract::MAX_REWARD_PAIRS;
use crate::serve::api::errors::ApiError;
use crate::serve::api::openai::RewardsBody;

/// Checks a `/v1/rewards` body: 1 to 1024 pairs, each with a non-empty prompt.
pub fn validate_rewards(body: RewardsBody) -> Result<Vec<RewardInput>, ApiError> {
    if body.input.is_empty() || body.input.len() > MAX_REWARD_PAIRS {
        return Err(bad(
            "input",
            format!(
                "input must hold 1 to {MAX_REWARD_PAIRS} pairs, got {}",
                body.input.len()
            ),
        ));
    }
    body.input
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let prompt = match (p.prompt, p.messages) {
                (Some(t), None) => {
                    if t.trim().is_empty() {
                        return Err(bad(
                            &format!("input[{i}].prompt"),
                            "the prompt must not be empty",
                        ));
                    }
                    Prompt::Text(t)
                }
                (None, Some(m)) => {
                    let param = format!("input[{i}].messages");
                    Prompt::Messages(messages(&m, &param)?)
                }
                _ => {
                    return Err(bad(
                        &format!("input[{i}]"),
                        "each pair needs exactly one of prompt or messages",
                    ));
                }
            };
            Ok(RewardInput {
                prompt,
                response: p.response,
            })
        })
        .collect()
}
