//! Structured outputs: `response_format` (OpenAI) and `guided_json`, `guided_regex`,
//! `guided_grammar`, `guided_choice` (vLLM) to one [`Grammar`], checked for shape here and
//! compiled against the policy's vocabulary once the request is tokenised
//! ([`tokenize`](super::tokenize)). At most one of them per request.

use thresh_decoding::Grammar;

use super::params::bad;
use crate::serve::api::errors::ApiError;
use crate::serve::api::openai::{GenerationBody, ResponseFormatKind};

/// A request's grammar and the field it came from (named in its errors).
#[derive(Debug, Clone, PartialEq)]
pub struct GrammarRequest {
    /// What the output must match.
    pub grammar: Grammar,
    /// `response_format`, `guided_json`, `guided_regex`, `guided_grammar` or `guided_choice`.
    pub field: &'static str,
}

/// The request's grammar, if it asks for one; a 400 naming the field when it is malformed
/// or when two fields ask for one.
pub fn grammar(body: &GenerationBody) -> Result<Option<GrammarRequest>, ApiError> {
    let mut found: Vec<GrammarRequest> = Vec::new();
    if let Some(rf) = &body.response_format {
        let field = "response_format";
        let grammar = match rf.kind {
            ResponseFormatKind::Text => {
                if rf.json_schema.is_some() {
                    return Err(bad(
                        "response_format.json_schema",
                        "response_format.json_schema belongs to type \"json_schema\"",
                    ));
                }
                None
            }
            ResponseFormatKind::JsonObject => {
                if rf.json_schema.is_some() {
                    return Err(bad(
                        "response_format.json_schema",
                        "response_format.json_schema belongs to type \"json_schema\"; \
                         json_object takes none",
                    ));
                }
                Some(Grammar::JsonSchema(serde_json::json!({"type": "object"})))
            }
            ResponseFormatKind::JsonSchema => {
                let spec = rf.json_schema.as_ref().ok_or_else(|| {
                    bad(
                        "response_format.json_schema",
                        "response_format of type \"json_schema\" needs json_schema: \
                         {\"name\": ..., \"schema\": {...}}",
                    )
                })?;
                if spec.name.is_empty() || spec.name.chars().count() > 64 {
                    return Err(bad(
                        "response_format.json_schema.name",
                        "response_format.json_schema.name must hold 1 to 64 characters",
                    ));
                }
                let schema = spec.schema.clone().unwrap_or_else(|| serde_json::json!({}));
                Some(Grammar::JsonSchema(schema_object(
                    schema,
                    "response_format.json_schema.schema",
                )?))
            }
        };
        if let Some(grammar) = grammar {
            found.push(GrammarRequest { grammar, field });
        }
    }
    if let Some(g) = &body.guided_json {
        let schema = match g {
            serde_json::Value::String(s) => serde_json::from_str(s).map_err(|e| {
                bad(
                    "guided_json",
                    format!("guided_json is a string but not JSON: {e}"),
                )
            })?,
            other => other.clone(),
        };
        found.push(GrammarRequest {
            grammar: Grammar::JsonSchema(schema_object(schema, "guided_json")?),
            field: "guided_json",
        });
    }
    if let Some(rx) = &body.guided_regex {
        found.push(GrammarRequest {
            grammar: Grammar::Regex(non_empty(rx, "guided_regex")?),
            field: "guided_regex",
        });
    }
    if let Some(lark) = &body.guided_grammar {
        found.push(GrammarRequest {
            grammar: Grammar::Lark(non_empty(lark, "guided_grammar")?),
            field: "guided_grammar",
        });
    }
    if let Some(options) = &body.guided_choice {
        if options.is_empty() || options.iter().any(String::is_empty) {
            return Err(bad(
                "guided_choice",
                "guided_choice must list at least one non-empty string",
            ));
        }
        found.push(GrammarRequest {
            grammar: Grammar::Choice(options.clone()),
            field: "guided_choice",
        });
    }
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => Err(bad(
            found[1].field,
            format!(
                "{} and {} both constrain the output; send one",
                found[0].field, found[1].field
            ),
        )),
    }
}

/// A JSON schema is an object (or `true`, any value).
fn schema_object(schema: serde_json::Value, field: &str) -> Result<serde_json::Value, ApiError> {
    match schema {
        serde_json::Value::Object(_) => Ok(schema),
        serde_json::Value::Bool(true) => Ok(serde_json::json!({})),
        _ => Err(bad(field, format!("{field} must be a JSON schema object"))),
    }
}

fn non_empty(s: &str, field: &str) -> Result<String, ApiError> {
    if s.trim().is_empty() {
        return Err(bad(field, format!("{field} must not be empty")));
    }
    Ok(s.to_string())
}
