//! Workloads: a JSONL file of prompts or chat conversations, the built-in instruction set
//! (`bench/data/instructions.jsonl`), or random prompts of a given length.

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::BenchError;

/// The instruction prompts shipped with the crate (30 lines of `{"prompt": ...}`).
pub const BUILTIN_JSONL: &str = include_str!("../data/instructions.jsonl");

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// What one request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A plain prompt (sent as `prompt`, or as one user message to the chat endpoint).
    Text(String),
    /// A conversation (chat endpoint only).
    Messages(Vec<ChatMessage>),
}

/// One dataset entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    /// The prompt or conversation.
    pub input: Input,
    /// This entry's own output length, overriding `--max-tokens` (random workloads).
    pub max_tokens: Option<usize>,
    /// Ask the server to keep generating through end-of-sequence (`ignore_eos`), so the
    /// output has exactly `max_tokens` tokens (random workloads).
    pub ignore_eos: bool,
}

/// Which workload to use.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetSpec {
    /// The built-in instruction set.
    Builtin,
    /// Random prompts of about `input_len` tokens (one common English word each), asking for
    /// exactly `output_len` tokens.
    Random {
        /// Words per prompt.
        input_len: usize,
        /// Tokens asked per answer.
        output_len: usize,
    },
    /// A JSONL file.
    File(PathBuf),
}

#[derive(Deserialize)]
struct Line {
    prompt: Option<String>,
    messages: Option<Vec<ChatMessage>>,
    max_tokens: Option<usize>,
}

fn parse_line(text: &str) -> Result<Option<WorkItem>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let l: Line = serde_json::from_str(text).map_err(|e| format!("not a JSON object of the expected shape ({{\"prompt\": ...}} or {{\"messages\": [...]}}): {e}"))?;
    let input = match (l.prompt, l.messages) {
        (Some(p), None) => {
            if p.trim().is_empty() {
                return Err("the prompt is empty".into());
            }
            Input::Text(p)
        }
        (None, Some(m)) => {
            if m.is_empty() {
                return Err("messages is empty".into());
            }
            Input::Messages(m)
        }
        (Some(_), Some(_)) => return Err("give either prompt or messages, not both".into()),
        (None, None) => return Err("each line needs a \"prompt\" or \"messages\" field".into()),
    };
    if l.max_tokens == Some(0) {
        return Err("max_tokens must be at least 1".into());
    }
    Ok(Some(WorkItem {
        input,
        max_tokens: l.max_tokens,
        ignore_eos: false,
    }))
}

/// Parses JSONL text; errors name `path` and the 1-based line.
pub fn parse_jsonl(text: &str, path: &Path) -> Result<Vec<WorkItem>, BenchError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some(item)) => out.push(item),
            Ok(None) => {}
            Err(message) => {
                return Err(BenchError::Dataset {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message,
                });
            }
        }
    }
    if out.is_empty() {
        return Err(BenchError::Dataset {
            path: path.to_path_buf(),
            line: 0,
            message: "the dataset holds no prompts".into(),
        });
    }
    Ok(out)
}

const WORDS: &[&str] = &[
    "the", "time", "people", "year", "way", "day", "man", "thing", "woman", "life", "child",
    "world", "school", "state", "family", "student", "group", "country", "problem", "hand", "part",
    "place", "case", "week", "company", "system", "program", "question", "work", "number", "night",
    "point", "home", "water", "room", "mother", "area", "money", "story", "fact", "month", "lot",
    "right", "study", "book", "eye", "job", "word", "business", "issue", "side", "kind", "head",
    "house", "service", "friend", "father", "power", "hour", "game", "line", "end", "member",
    "law",
];

/// `count` random prompts of `input_len` words each, reproducible from `seed`.
pub fn random(count: usize, input_len: usize, output_len: usize, seed: u64) -> Vec<WorkItem> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let words: Vec<&str> = (0..input_len.max(1))
                .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                .collect();
            WorkItem {
                input: Input::Text(words.join(" ")),
                max_tokens: Some(output_len.max(1)),
                ignore_eos: true,
            }
        })
        .collect()
}

impl DatasetSpec {
    /// Reads `builtin`, `random` or a file path.
    pub fn parse(s: &str, input_len: usize, output_len: usize) -> Self {
        match s {
            "builtin" => DatasetSpec::Builtin,
            "random" => DatasetSpec::Random {
                input_len,
                output_len,
            },
            path => DatasetSpec::File(PathBuf::from(path)),
        }
    }

    /// Loads the entries (`count` of them for random workloads; the runner cycles through a
    /// file's entries in order).
    pub fn load(&self, count: usize, seed: u64) -> Result<Vec<WorkItem>, BenchError> {
        match self {
            DatasetSpec::Builtin => parse_jsonl(BUILTIN_JSONL, Path::new("<builtin>")),
            DatasetSpec::Random {
                input_len,
                output_len,
            } => Ok(random(count.max(1), *input_len, *output_len, seed)),
            DatasetSpec::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|cause| BenchError::Io {
                    path: path.clone(),
                    cause,
                })?;
                parse_jsonl(&text, path)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_set_parses() {
        let items = DatasetSpec::Builtin.load(0, 0).unwrap();
        assert_eq!(items.len(), 30);
        assert!(matches!(&items[0].input, Input::Text(t) if t.starts_with("Give three tips")));
    }

    #[test]
    fn prompts_and_conversations_and_blank_lines() {
        let text = "{\"prompt\": \"hi\"}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"yo\"}], \"max_tokens\": 5}\n";
        let items = parse_jsonl(text, Path::new("x.jsonl")).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].input, Input::Text("hi".into()));
        assert_eq!(items[1].max_tokens, Some(5));
        assert!(matches!(&items[1].input, Input::Messages(m) if m[0].content == "yo"));
    }

    #[test]
    fn bad_lines_are_named_by_file_and_line() {
        let cases = [
            ("{\"prompt\": \"a\"}\nnot json\n", 2, "JSON"),
            (
                "{\"prompt\": \"a\"}\n{\"text\": \"a\"}\n",
                2,
                "\"prompt\" or \"messages\"",
            ),
            ("{\"prompt\": \"  \"}\n", 1, "empty"),
            ("{\"prompt\": \"a\", \"messages\": []}\n", 1, "not both"),
            ("{\"prompt\": \"a\", \"max_tokens\": 0}\n", 1, "at least 1"),
        ];
        for (text, line, what) in cases {
            let e = parse_jsonl(text, Path::new("d.jsonl"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("d.jsonl:{line}: ")), "{e}");
            assert!(e.contains(what), "{e}");
        }
        let e = parse_jsonl("\n\n", Path::new("e.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no prompts"), "{e}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = DatasetSpec::parse("/nonexistent/p.jsonl", 1, 1)
            .load(1, 0)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/nonexistent/p.jsonl: "), "{e}");
    }

    #[test]
    fn random_prompts_have_the_asked_lengths_and_follow_the_seed() {
        let a = random(5, 12, 7, 1);
        assert_eq!(a.len(), 5);
        for item in &a {
            let Input::Text(t) = &item.input else {
                panic!("text")
            };
            assert_eq!(t.split(' ').count(), 12);
            assert_eq!(item.max_tokens, Some(7));
            assert!(item.ignore_eos);
        }
        assert_eq!(a, random(5, 12, 7, 1));
        assert_ne!(a, random(5, 12, 7, 2));
    }
}
