//! Deterministic reward models whose selections the tests recompute.

use thresh_reward::{RewardInput, RewardModel, Scored};

/// Reward = number of occurrences of a letter in the response so far.
pub struct LetterCount(pub char);

impl RewardModel for LetterCount {
    fn name(&self) -> &str {
        "letter-count"
    }
    fn score(&self, inputs: &[RewardInput]) -> thresh_reward::Result<Vec<Scored>> {
        Ok(inputs
            .iter()
            .map(|i| Scored {
                score: i.response.matches(self.0).count() as f32,
                tokens: i.response.len(),
                truncated: false,
            })
            .collect())
    }
}

/// Reward = a fixed pseudo-random function of the response text (an arbitrary oracle).
pub struct HashScore;

pub fn hash_score(text: &str) -> f32 {
    let mut h: u64 = 1469598103934665603;
    for b in text.bytes() {
        h = (h ^ b as u64).wrapping_mul(1099511628211);
    }
    (h % 1000) as f32
}

impl RewardModel for HashScore {
    fn name(&self) -> &str {
        "hash"
    }
    fn score(&self, inputs: &[RewardInput]) -> thresh_reward::Result<Vec<Scored>> {
        Ok(inputs
            .iter()
            .map(|i| Scored {
                score: hash_score(&i.response),
                tokens: 1,
                truncated: false,
            })
            .collect())
    }
}

/// Reward = a pseudo-random function of the response's first four characters: constant
/// once a row has written them, so partial scores never move after that.
pub struct PrefixScore;

/// The score [`PrefixScore`] gives `text`.
pub fn prefix_score(text: &str) -> f32 {
    let head: String = text.chars().take(4).collect();
    hash_score(&head) / 10.0
}

impl RewardModel for PrefixScore {
    fn name(&self) -> &str {
        "prefix"
    }
    fn score(&self, inputs: &[RewardInput]) -> thresh_reward::Result<Vec<Scored>> {
        Ok(inputs
            .iter()
            .map(|i| Scored {
                score: prefix_score(&i.response),
                tokens: 1,
                truncated: false,
            })
            .collect())
    }
}
