//! The limits of the request fields, written once: validation enforces them and the OpenAPI
//! document states them, so the two cannot drift apart.

/// A number field's range: `[min, max]`, or `(min, max]` when `exclusive_min`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    /// The field.
    pub name: &'static str,
    /// Its lower end.
    pub min: f64,
    /// Its upper end (included).
    pub max: f64,
    /// Whether `min` itself is refused.
    pub exclusive_min: bool,
}

const fn range(name: &'static str, min: f64, max: f64, exclusive_min: bool) -> Range {
    Range {
        name,
        min,
        max,
        exclusive_min,
    }
}

/// The sampling parameters' ranges on the completion routes.
pub const SAMPLING: [Range; 6] = [
    range("temperature", 0.0, 2.0, false),
    range("top_p", 0.0, 1.0, true),
    range("min_p", 0.0, 1.0, false),
    range("frequency_penalty", -2.0, 2.0, false),
    range("presence_penalty", -2.0, 2.0, false),
    range("repetition_penalty", 0.0, 10.0, true),
];

/// The range of the sampling parameter `name`.
pub fn sampling(name: &str) -> Range {
    SAMPLING
        .iter()
        .copied()
        .find(|r| r.name == name)
        .unwrap_or(range("", f64::MIN, f64::MAX, false))
}

/// Most stop strings per request.
pub const MAX_STOP: usize = 16;
/// Most characters in one stop string (characters, as JSON Schema's `maxLength` counts).
pub const MAX_STOP_CHARS: usize = 256;
/// Most pairs in one `/v1/rewards` request.
pub const MAX_REWARD_PAIRS: usize = 1024;
/// Most pairs in one `/correct` request.
pub const MAX_CORRECT_PAIRS: usize = 64;
/// The strategy names `alignment.strategy` takes.
pub const STRATEGIES: [&str; 5] = [
    "none",
    "best_of_n",
    "speculative_rejection",
    "soft_best_of_n",
    "rejection_sampling",
];
/// Largest `alignment.lambda` (its lower end, 0, is refused).
pub const MAX_LAMBDA: f64 = 1e6;
/// `alignment.max_tries` bounds, both included.
pub const MAX_TRIES: (u64, u64) = (1, 16);
/// Most decisions a request may list in `alignment.decision_tokens`.
pub const MAX_DECISIONS: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sampling_range_is_found_by_name() {
        for r in SAMPLING {
            assert_eq!(sampling(r.name), r);
            assert!(r.min < r.max);
        }
        assert_eq!(sampling("nope").name, "");
    }
}
