//! Chat messages as sent (roles, text or text parts) to the policy's [`ChatMessage`]s.

use thresh_models::ChatMessage;

use super::bad;
use crate::serve::api::errors::ApiError;
use crate::serve::api::openai::{MessageContent, RawMessage};

/// Converts raw chat messages, joining text parts. Some message must hold text (a character
/// other than white space): a conversation of empty turns gives the reward model no prompt.
pub fn messages(raw: &[RawMessage], param: &str) -> Result<Vec<ChatMessage>, ApiError> {
    let converted = convert(raw, param)?;
    if converted.iter().all(|m| m.content.trim().is_empty()) {
        return Err(bad(
            param,
            format!("{param} must not all be empty: some message needs text"),
        ));
    }
    Ok(converted)
}

fn convert(raw: &[RawMessage], param: &str) -> Result<Vec<ChatMessage>, ApiError> {
    if raw.is_empty() {
        return Err(bad(
            param,
            format!("{param} must hold at least one message"),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, m)| {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant" | "tool" | "developer") {
                return Err(bad(
                    &format!("{param}[{i}].role"),
                    format!(
                        "{param}[{i}].role must be system, user, assistant, tool or developer, got {:?}",
                        m.role
                    ),
                ));
            }
            let content = match &m.content {
                None => String::new(),
                Some(MessageContent::Text(t)) => t.clone(),
                Some(MessageContent::Parts(parts)) => {
                    let mut s = String::new();
                    for (j, p) in parts.iter().enumerate() {
                        match (p.kind.as_str(), &p.text) {
                            ("text", Some(t)) => s.push_str(t),
                            _ => {
                                return Err(bad(
                                    &format!("{param}[{i}].content[{j}]"),
                                    format!(
                                        "only text content parts are supported, got type {:?}",
                                        p.kind
                                    ),
                                ));
                            }
                        }
                    }
                    s
                }
            };
            let mut content = content;
            if let Some(calls) = m.tool_calls.as_deref().filter(|c| !c.is_empty()) {
                // The turn as the model writes a call, so that it reads its own earlier calls.
                let calls: Vec<(String, String)> = calls
                    .iter()
                    .map(|c| (c.function.name.clone(), c.function.arguments.clone()))
                    .collect();
                if !content.is_empty() {
                    content.push('\n');
                }
                content.push_str(&super::tools::calls_text(&calls));
            }
            let role = if m.role == "developer" { "system" } else { m.role.as_str() };
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}
