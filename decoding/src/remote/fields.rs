//! Readers of the JSON fields both dialects share (token-id lists, per-token
//! log-probabilities), below `wire.rs` and `llama_cpp.rs` alike.

use serde_json::Value;

/// The token ids of a JSON list; `None` when one of them is not a token id.
pub(super) fn token_ids(list: &[Value]) -> Option<Vec<u32>> {
    list.iter()
        .map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
        .collect()
}

/// The log-probability `read` finds in each entry of `list`, where it has one entry per token
/// (`n`); zeros where the server sent none.
pub(super) fn logprobs(
    list: Option<&Vec<Value>>,
    n: usize,
    read: impl Fn(&Value) -> Option<f64>,
) -> Vec<f32> {
    match list {
        Some(l) if l.len() == n => l.iter().map(|x| read(x).unwrap_or(0.0) as f32).collect(),
        _ => vec![0.0; n],
    }
}
