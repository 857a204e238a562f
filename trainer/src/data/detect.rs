//! Recognising a data file's layout from one of its rows.

use super::Format;

/// The format of a JSON row, from the fields it has:
///
/// | fields | format |
/// |---|---|
/// | `responses`, `pairs` or an object `correction` | [`Format::Thresh`] |
/// | `acc_responses` or `rej_responses` | [`Format::Kldo`] |
/// | `response_0` and `response_1` | [`Format::PkuSafeRlhf`] |
/// | `question` and `correction` | [`Format::Aligner`] |
/// | `completion` and `label` | [`Format::TrlUnpaired`] |
/// | `chosen` and `rejected`, strings | [`Format::HhRlhf`] |
/// | `chosen` and `rejected`, message lists | [`Format::UltraFeedback`] |
pub fn detect(value: &serde_json::Value) -> Result<Format, String> {
    let Some(obj) = value.as_object() else {
        return Err("a row must be a JSON object".into());
    };
    let has = |k: &str| obj.contains_key(k);
    if has("responses") || has("pairs") || obj.get("correction").is_some_and(|c| c.is_object()) {
        return Ok(Format::Thresh);
    }
    if has("acc_responses") || has("rej_responses") {
        return Ok(Format::Kldo);
    }
    if has("response_0") && has("response_1") {
        return Ok(Format::PkuSafeRlhf);
    }
    if has("question") && has("correction") {
        return Ok(Format::Aligner);
    }
    if has("completion") && has("label") {
        return Ok(Format::TrlUnpaired);
    }
    if has("chosen") && has("rejected") {
        return match (&obj["chosen"], &obj["rejected"]) {
            (serde_json::Value::String(_), serde_json::Value::String(_)) => Ok(Format::HhRlhf),
            (serde_json::Value::Array(_), serde_json::Value::Array(_)) => {
                Ok(Format::UltraFeedback)
            }
            _ => Err("`chosen` and `rejected` must both be strings (HH-RLHF) or both message lists (UltraFeedback)".into()),
        };
    }
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    Err(format!(
        "cannot tell the data format from the fields {keys:?}; see data/README.md for the formats read"
    ))
}
