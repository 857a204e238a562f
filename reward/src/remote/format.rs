//! The wire formats of remote reward servers: how a batch of pairs becomes a request body and
//! how the answer becomes one score per pair. See the [`crate::remote`] module documentation
//! for the shapes.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::input::RewardInput;

/// The request/response protocol a reward server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemoteFormat {
    /// thresh's own `POST /v1/rewards` (what `thresh serve` answers): `{"model"?, "input":
    /// [{"prompt": text | "messages": [...], "response"}]}` in, `{"data": [{"index",
    /// "score"}...]}` out.
    Thresh,
    /// OpenRLHF's reward server, `POST /get_reward`: `{"query": [text...]}` in,
    /// `{"rewards": [...]}` out.
    OpenRlhf,
    /// vLLM's classification endpoint, `POST /classify`: `{"model", "input": [text...]}` in,
    /// `{"data": [{"index", "probs": [...]}...]}` out; the score is `probs[0]`.
    VllmClassify,
}

impl RemoteFormat {
    /// Every format, in the order they are documented.
    pub const ALL: [RemoteFormat; 3] = [
        RemoteFormat::Thresh,
        RemoteFormat::OpenRlhf,
        RemoteFormat::VllmClassify,
    ];

    /// The name accepted by [`FromStr`] and shown in messages.
    pub fn name(self) -> &'static str {
        match self {
            RemoteFormat::Thresh => "thresh",
            RemoteFormat::OpenRlhf => "openrlhf",
            RemoteFormat::VllmClassify => "vllm",
        }
    }

    /// The path this format is served at by convention.
    pub fn path(self) -> &'static str {
        match self {
            RemoteFormat::Thresh => "/v1/rewards",
            RemoteFormat::OpenRlhf => "/get_reward",
            RemoteFormat::VllmClassify => "/classify",
        }
    }

    /// The format a URL's path names: it ends with `/v1/rewards`, `/get_reward` or
    /// `/classify` (a trailing `/`, query or fragment is ignored).
    pub fn from_url(url: &str) -> Option<Self> {
        let path = url.split(['?', '#']).next().unwrap_or(url);
        let path = path.trim_end_matches('/');
        Self::ALL.into_iter().find(|f| path.ends_with(f.path()))
    }

    /// The JSON body of a request scoring `inputs`. The text formats send each pair rendered
    /// with [`remote_text`].
    pub(crate) fn request(self, model: Option<&str>, inputs: &[RewardInput]) -> Value {
        let texts = || -> Vec<String> { inputs.iter().map(remote_text).collect() };
        match self {
            RemoteFormat::Thresh => {
                let pairs: Vec<Value> = inputs
                    .iter()
                    .map(|i| match &i.prompt {
                        crate::Prompt::Text(t) => json!({"prompt": t, "response": i.response}),
                        crate::Prompt::Messages(m) => {
                            json!({"messages": m, "response": i.response})
                        }
                    })
                    .collect();
                let mut body = json!({ "input": pairs });
                if let Some(m) = model {
                    body["model"] = json!(m);
                }
                body
            }
            RemoteFormat::OpenRlhf => json!({ "query": texts() }),
            RemoteFormat::VllmClassify => {
                let mut body = json!({ "input": texts() });
                if let Some(m) = model {
                    body["model"] = json!(m);
                }
                body
            }
        }
    }

    /// The scores in an answer to a request of `n` pairs, in request order, or why the answer
    /// is unusable.
    pub(crate) fn parse(self, body: &str, n: usize) -> Result<Vec<f32>, String> {
        let parsed = |e: serde_json::Error| {
            format!(
                "not the JSON this format answers ({e}); the body starts with {:?}",
                snippet(body)
            )
        };
        let scores = match self {
            RemoteFormat::Thresh => {
                #[derive(Deserialize)]
                struct Item {
                    index: usize,
                    score: Option<f32>,
                }
                #[derive(Deserialize)]
                struct Answer {
                    data: Vec<Item>,
                }
                let mut data = serde_json::from_str::<Answer>(body).map_err(parsed)?.data;
                data.sort_by_key(|d| d.index);
                if data.iter().enumerate().any(|(i, d)| d.index != i) {
                    return Err(format!(
                        "the data indices are not 0..{}: {:?}",
                        data.len(),
                        data.iter().map(|d| d.index).collect::<Vec<_>>()
                    ));
                }
                data.iter()
                    .map(|d| {
                        d.score
                            .ok_or_else(|| format!("no score for pair {}", d.index))
                    })
                    .collect::<Result<_, _>>()?
            }
            RemoteFormat::OpenRlhf => {
                #[derive(Deserialize)]
                struct Answer {
                    rewards: Vec<f32>,
                }
                serde_json::from_str::<Answer>(body)
                    .map_err(parsed)?
                    .rewards
            }
            RemoteFormat::VllmClassify => {
                #[derive(Deserialize)]
                struct Item {
                    index: Option<usize>,
                    probs: Vec<f32>,
                }
                #[derive(Deserialize)]
                struct Answer {
                    data: Vec<Item>,
                }
                let mut data = serde_json::from_str::<Answer>(body).map_err(parsed)?.data;
                if data.iter().all(|d| d.index.is_some()) {
                    data.sort_by_key(|d| d.index);
                    if data.iter().enumerate().any(|(i, d)| d.index != Some(i)) {
                        return Err(format!(
                            "the data indices are not 0..{}: {:?}",
                            data.len(),
                            data.iter().map(|d| d.index).collect::<Vec<_>>()
                        ));
                    }
                }
                data.iter()
                    .enumerate()
                    .map(|(i, d)| {
                        d.probs
                            .first()
                            .copied()
                            .ok_or_else(|| format!("data[{i}].probs is empty"))
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        if scores.len() != n {
            return Err(format!("{} scores for {n} inputs", scores.len()));
        }
        Ok(scores)
    }
}

/// The first characters of a body, for error messages.
pub(crate) fn snippet(body: &str) -> String {
    const MAX: usize = 200;
    match body.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &body[..cut]),
        None => body.to_string(),
    }
}

impl fmt::Display for RemoteFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RemoteFormat {
    type Err = String;

    /// `thresh`, `openrlhf` or `vllm` (also the endpoint names `v1/rewards`, `get_reward`,
    /// `classify`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s
            .trim()
            .trim_start_matches('/')
            .to_ascii_lowercase()
            .as_str()
        {
            "thresh" | "rewards" | "v1/rewards" => Ok(RemoteFormat::Thresh),
            "openrlhf" | "get_reward" => Ok(RemoteFormat::OpenRlhf),
            "vllm" | "classify" | "vllm-classify" => Ok(RemoteFormat::VllmClassify),
            other => Err(format!(
                "unknown remote reward format {other:?}: expected thresh (/v1/rewards), openrlhf (/get_reward) or vllm (/classify)"
            )),
        }
    }
}

/// The text a text-only format sends for a pair, `prompt\n\nresponse` with the prompt's
/// text (its last user message for a conversation): the rendering of
/// [`crate::input::render`] without a chat template, since the client does not know the
/// remote model's template.
pub fn remote_text(input: &RewardInput) -> String {
    format!("{}\n\n{}", input.prompt.text(), input.response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_urls_and_names() {
        assert_eq!(
            RemoteFormat::from_url("http://h:1/v1/rewards"),
            Some(RemoteFormat::Thresh)
        );
        assert_eq!(
            RemoteFormat::from_url("https://h/x/get_reward/?a=b"),
            Some(RemoteFormat::OpenRlhf)
        );
        assert_eq!(
            RemoteFormat::from_url("http://h:8000/classify"),
            Some(RemoteFormat::VllmClassify)
        );
        assert_eq!(RemoteFormat::from_url("http://h:8000/score"), None);
        for f in RemoteFormat::ALL {
            assert_eq!(f.name().parse::<RemoteFormat>(), Ok(f));
        }
        assert!("grpc".parse::<RemoteFormat>().is_err());
    }

    #[test]
    fn answers_are_checked() {
        let f = RemoteFormat::VllmClassify;
        let body = r#"{"data":[{"index":1,"probs":[0.25,0.75]},{"index":0,"probs":[0.5]}]}"#;
        assert_eq!(f.parse(body, 2), Ok(vec![0.5, 0.25]));
        assert!(f.parse(body, 3).unwrap_err().contains("2 scores for 3"));
        assert!(f.parse(r#"{"data":[{"probs":[]}]}"#, 1).is_err());
        let err = RemoteFormat::Thresh.parse("<html>", 1).unwrap_err();
        assert!(err.contains("<html>"), "{err}");
    }
}
