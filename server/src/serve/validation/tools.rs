//! Tool calling on chat: `tools`, `tool_choice` and `parallel_tool_calls` to a system message
//! that shows the model the functions, and a grammar that holds every answer to the generic
//! tool-call form (llama.cpp's, for templates without their own):
//! `{"tool_calls": [{"name": ..., "arguments": {...}}]}` or, where the model may answer in
//! text (`auto`), `{"response": "..."}`. The arguments follow each function's `parameters`
//! schema by construction; [`answer`] turns a generated answer back into OpenAI's
//! `message.tool_calls`.

use serde_json::{Value, json};
use thresh_decoding::Grammar;
use thresh_models::ChatMessage;

use super::params::bad;
use crate::serve::api::errors::ApiError;
use crate::serve::api::openai::{GenerationBody, ToolChoiceInput};

/// A checked tool request.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolsRequest {
    /// The grammar of every answer.
    pub grammar: Grammar,
    /// The system text that shows the model its functions and the form of a call.
    pub system: String,
}

/// How the model may use its tools.
#[derive(Debug, Clone, PartialEq)]
enum Choice {
    Auto,
    Required,
    Named(String),
}

/// The request's tools, when it offers some and `tool_choice` is not `none`.
pub fn tools(body: &GenerationBody, chat: bool) -> Result<Option<ToolsRequest>, ApiError> {
    let Some(tools) = &body.tools else {
        if body.tool_choice.is_some() {
            return Err(bad("tool_choice", "tool_choice needs tools"));
        }
        if body.parallel_tool_calls.is_some() {
            return Err(bad(
                "parallel_tool_calls",
                "parallel_tool_calls needs tools",
            ));
        }
        return Ok(None);
    };
    if !chat {
        return Err(bad(
            "tools",
            "tools belong to /v1/chat/completions; /v1/completions does not call tools",
        ));
    }
    if tools.is_empty() {
        return Err(bad("tools", "tools must list at least one function"));
    }
    let mut names: Vec<&str> = Vec::new();
    let mut calls = Vec::new();
    let mut shown = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let f = &t.function;
        let valid = !f.name.is_empty()
            && f.name.len() <= 64
            && f.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(bad(
                &format!("tools[{i}].function.name"),
                "a function name holds 1 to 64 letters, digits, '_' or '-'",
            ));
        }
        if names.contains(&f.name.as_str()) {
            return Err(bad(
                &format!("tools[{i}].function.name"),
                format!("function {:?} is declared twice", f.name),
            ));
        }
        names.push(&f.name);
        let parameters = match &f.parameters {
            None => json!({"type": "object"}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                return Err(bad(
                    &format!("tools[{i}].function.parameters"),
                    "parameters must be a JSON schema object",
                ));
            }
        };
        calls.push(json!({"type": "object",
            "properties": {"name": {"const": f.name}, "arguments": parameters},
            "required": ["name", "arguments"], "additionalProperties": false}));
        let mut entry = json!({"name": f.name, "parameters": parameters});
        if let Some(d) = &f.description {
            entry["description"] = json!(d);
        }
        shown.push(entry);
    }
    let choice = match &body.tool_choice {
        None => Choice::Auto,
        Some(ToolChoiceInput::Mode(m)) => match m.as_str() {
            "none" => return Ok(None),
            "auto" => Choice::Auto,
            "required" => Choice::Required,
            other => {
                return Err(bad(
                    "tool_choice",
                    format!(
                        "tool_choice must be \"none\", \"auto\", \"required\" or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}, got {other:?}"
                    ),
                ));
            }
        },
        Some(ToolChoiceInput::Named(n)) => {
            let Some(pos) = names.iter().position(|&x| x == n.function.name) else {
                return Err(bad(
                    "tool_choice.function.name",
                    format!(
                        "tool_choice names {:?}, which tools do not declare",
                        n.function.name
                    ),
                ));
            };
            calls = vec![calls.swap_remove(pos)];
            Choice::Named(n.function.name.clone())
        }
    };
    let parallel = body.parallel_tool_calls.unwrap_or(true) && !matches!(choice, Choice::Named(_));
    let mut list = json!({"type": "array", "items": {"anyOf": calls}, "minItems": 1});
    if !parallel {
        list["maxItems"] = json!(1);
    }
    let call_form = json!({"type": "object", "properties": {"tool_calls": list},
                           "required": ["tool_calls"], "additionalProperties": false});
    let text_form = json!({"type": "object", "properties": {"response": {"type": "string"}},
                           "required": ["response"], "additionalProperties": false});
    let (grammar, how) = match &choice {
        Choice::Auto => (
            json!({"anyOf": [call_form, text_form]}),
            "To call functions, answer with {\"tool_calls\": [{\"name\": <function name>, \"arguments\": <its arguments>}]}; otherwise answer {\"response\": <your answer>}.".to_string(),
        ),
        Choice::Required => (
            call_form,
            "Answer by calling functions: {\"tool_calls\": [{\"name\": <function name>, \"arguments\": <its arguments>}]}.".to_string(),
        ),
        Choice::Named(name) => (
            call_form,
            format!("Answer by calling {name}: {{\"tool_calls\": [{{\"name\": \"{name}\", \"arguments\": <its arguments>}}]}}."),
        ),
    };
    let system = format!(
        "You can call these functions:\n{}\n{how}",
        Value::Array(shown)
    );
    Ok(Some(ToolsRequest {
        grammar: Grammar::JsonSchema(grammar),
        system,
    }))
}

/// `messages` with the tools' system text: appended to the first system message, or put
/// before the conversation as one.
pub fn with_system(mut messages: Vec<ChatMessage>, system: &str) -> Vec<ChatMessage> {
    match messages.first_mut() {
        Some(m) if m.role == "system" => {
            m.content = format!("{}\n\n{system}", m.content);
        }
        _ => messages.insert(0, ChatMessage::new("system", system)),
    }
    messages
}

/// The generic form of an earlier assistant turn's tool calls, as the model writes them.
pub fn calls_text(calls: &[(String, String)]) -> String {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(name, arguments)| {
            let args = serde_json::from_str::<Value>(arguments)
                .unwrap_or_else(|_| Value::String(arguments.clone()));
            json!({"name": name, "arguments": args})
        })
        .collect();
    json!({"tool_calls": calls}).to_string()
}

/// A generated answer in the generic form, as OpenAI returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolAnswer {
    /// The text answer (`{"response": ...}`), or the raw text of an answer cut short.
    pub content: Option<String>,
    /// `(name, arguments as JSON text)` of each call.
    pub calls: Vec<(String, String)>,
    /// `tool_calls` when it calls functions, else the answer's own reason.
    pub finish_reason: &'static str,
}

/// Reads an answer generated under a tool grammar. One cut short by `max_tokens` is not
/// JSON yet: it is returned as text with its own finish reason.
pub fn answer(text: &str, finish_reason: &'static str) -> ToolAnswer {
    let raw = || ToolAnswer {
        content: Some(text.to_string()),
        calls: Vec::new(),
        finish_reason,
    };
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return raw();
    };
    if let Some(calls) = v["tool_calls"].as_array() {
        let calls: Vec<(String, String)> = calls
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_string(),
                    c["arguments"].to_string(),
                )
            })
            .collect();
        return ToolAnswer {
            content: None,
            calls,
            finish_reason: "tool_calls",
        };
    }
    match v["response"].as_str() {
        Some(r) => ToolAnswer {
            content: Some(r.to_string()),
            calls: Vec::new(),
            finish_reason,
        },
        None => raw(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_back_as_calls_text_or_raw_text() {
        let a = answer(
            r#"{"tool_calls": [{"name": "f", "arguments": {"x": 1}}, {"name": "g", "arguments": {}}]}"#,
            "stop",
        );
        assert_eq!(a.finish_reason, "tool_calls");
        assert_eq!(a.content, None);
        assert_eq!(
            a.calls,
            vec![("f".into(), r#"{"x":1}"#.into()), ("g".into(), "{}".into())]
        );
        let a = answer(r#"{"response": "hello"}"#, "stop");
        assert_eq!(
            (a.content.as_deref(), a.finish_reason),
            (Some("hello"), "stop")
        );
        assert!(a.calls.is_empty());
        // Cut short by max_tokens: the text as it is, with its own reason.
        let a = answer(r#"{"tool_calls": [{"name": "f", "argu"#, "length");
        assert_eq!(a.finish_reason, "length");
        assert_eq!(
            a.content.as_deref(),
            Some(r#"{"tool_calls": [{"name": "f", "argu"#)
        );
        // An earlier turn's calls are written the way the model writes them.
        assert_eq!(
            calls_text(&[("f".into(), r#"{"x": 1}"#.into())]),
            r#"{"tool_calls":[{"name":"f","arguments":{"x":1}}]}"#
        );
    }

    #[test]
    fn the_tools_system_text_joins_an_existing_system_message() {
        let m = with_system(vec![ChatMessage::new("user", "hi")], "TOOLS");
        assert_eq!(
            (m[0].role.as_str(), m[0].content.as_str()),
            ("system", "TOOLS")
        );
        let m = with_system(
            vec![
                ChatMessage::new("system", "Be brief."),
                ChatMessage::new("user", "hi"),
            ],
            "TOOLS",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].content, "Be brief.\n\nTOOLS");
    }
}
