//! The prompt file of `collect`: JSONL, one `{"prompt": "..."}` or `{"messages": [...]}` per
//! line; other fields are ignored, so the bench's prompts and the trainer's data files can
//! be read as they are. Every line is checked before any request is sent.

use std::path::Path;

use serde_json::Value;
use thresh_models::ChatMessage;

use crate::data::Prompt;
use crate::error::{Result, TrainError};

/// One prompt of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptLine {
    /// Its index among the file's prompts (the seed offset).
    pub index: usize,
    /// Its one-based line number.
    pub line: usize,
    /// The record id written with it: the index and a hash of the prompt, so a rerun over
    /// the same file recognises what is done.
    pub id: String,
    /// The prompt.
    pub prompt: Prompt,
}

/// FNV-1a, 64 bits: a stable hash of the prompt's text (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn parse(value: Value) -> std::result::Result<Prompt, String> {
    let prompt = match (value.get("prompt"), value.get("messages")) {
        (Some(_), Some(_)) => return Err("has both `prompt` and `messages`; give one".into()),
        (Some(Value::String(p)), None) => Prompt::Text(p.clone()),
        (Some(_), None) => return Err("`prompt` must be a string".into()),
        (None, Some(m)) => {
            let m: Vec<ChatMessage> =
                serde_json::from_value(m.clone()).map_err(|e| format!("`messages`: {e}"))?;
            if m.is_empty() {
                return Err("`messages` is empty".into());
            }
            Prompt::Messages(m)
        }
        (None, None) => return Err("has neither `prompt` nor `messages`".into()),
    };
    let text: String = prompt
        .messages()
        .iter()
        .map(|m| m.content.as_str())
        .collect();
    if text.trim().is_empty() {
        return Err("the prompt has no text".into());
    }
    Ok(prompt)
}

/// Reads every prompt of `path`; a bad line fails the whole read with `FILE:LINE`.
pub fn read(path: &Path) -> Result<Vec<PromptLine>> {
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let data = |message: String| TrainError::Data {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let value: Value = serde_json::from_str(raw).map_err(|e| data(format!("not JSON: {e}")))?;
        let prompt = parse(value).map_err(data)?;
        let key = serde_json::to_string(&prompt.messages()).unwrap_or_default();
        let index = out.len();
        out.push(PromptLine {
            index,
            line: i + 1,
            id: format!("{index}:{:016x}", fnv1a(key.as_bytes())),
            prompt,
        });
    }
    if out.is_empty() {
        return Err(TrainError::NoExamples(format!(
            "{} holds no prompt",
            path.display()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_and_messages_with_stable_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        std::fs::write(
            &path,
            "{\"prompt\": \"Hi\", \"responses\": []}\n\n\
             {\"messages\": [{\"role\": \"user\", \"content\": \"Yo\"}]}\n",
        )
        .unwrap();
        let p = read(&path).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].index, p[0].line), (0, 1));
        assert_eq!((p[1].index, p[1].line), (1, 3));
        assert_eq!(p[0].prompt, Prompt::Text("Hi".into()));
        assert_eq!(read(&path).unwrap()[1].id, p[1].id, "ids are stable");
        assert_ne!(p[0].id, p[1].id);
    }

    #[test]
    fn bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        for (body, want) in [
            (
                "{\"prompt\": \"ok\"}\n{\"text\": \"x\"}\n",
                ":2: has neither",
            ),
            ("{\"prompt\": 3}\n", ":1: `prompt` must be a string"),
            ("{\"messages\": []}\n", ":1: `messages` is empty"),
            ("{\"prompt\": \"  \"}\n", ":1: the prompt has no text"),
            ("nope\n", ":1: not JSON"),
        ] {
            std::fs::write(&path, body).unwrap();
            let e = read(&path).unwrap_err().to_string();
            assert!(e.contains(want), "{body:?}: {e}");
        }
        std::fs::write(&path, "\n").unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("no prompt"));
    }
}
