//! Streamed completions (`stream: true`): each continuation's tokens as the server samples
//! them, so that a plain request through thresh reaches its client token by token.
//!
//! ```text
//! OpenAI (vLLM, thresh), server-sent events:
//!   data: {"choices": [{"index", "token_ids": [new ids], "finish_reason": null | reason,
//!                       "logprobs": {"token_logprobs": [f32]}?}]}      one per new tokens
//!   data: {"choices": [], "usage": {"prompt_tokens", "prompt_tokens_details"?}}
//!   data: [DONE]
//! llama-server (native `/completion`):
//!   data: {"index", "tokens": [new ids], "stop": false, "completion_probabilities"?}
//!   data: {"index", "tokens": [], "stop": true, "stop_type", "tokens_evaluated",
//!          "timings": {"cache_n"}}                                      one per completion
//! ```
//!
//! llama-server streams the ending EOS token like any other (its non-streamed answer lists it
//! too), so each of its completions' newest token is held back until the next one arrives and
//! dropped when the completion ends in EOS: the deltas add up to exactly the non-streamed
//! answer's tokens.
//!
//! A replica that fails before the first delta is left out and the request goes to the next
//! one, as for a whole answer; once deltas have been handed on, the request cannot be retried
//! elsewhere without repeating them, so it fails (and the replica is left out).

use std::io::{BufRead, BufReader};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use super::fields::{logprobs, token_ids};
use super::wire::{self, Failure};
use super::{CompletionAnswer, CompletionRequest, Engine, RemoteChoice, RemotePolicy, llama_cpp};
use crate::error::{DecodeError, Result};

/// New tokens of one continuation of a streamed completion.
#[derive(Debug, Clone, Copy)]
pub struct StreamDelta<'a> {
    /// The continuation (the request's index).
    pub index: usize,
    /// Its new tokens.
    pub token_ids: &'a [u32],
    /// Their log-probabilities (zeros where the server sends none).
    pub token_logprobs: &'a [f32],
    /// OpenAI's finish reason, once the continuation has ended.
    pub finish_reason: Option<&'a str>,
    /// The server's own text for these tokens, where it sends text that goes with them
    /// (vLLM and thresh; llama-server's `content` runs a token ahead of the ids handed on,
    /// so it is left out). The text of a continuation's deltas, joined, is its text, less a
    /// stop string the server cut.
    pub text: Option<&'a str>,
}

/// Receives the deltas; `false` stops the stream (the request is cancelled).
pub type DeltaSink<'s> = dyn FnMut(StreamDelta<'_>) -> bool + Send + 's;

/// One continuation, as its deltas come in.
#[derive(Debug, Default)]
struct Growing {
    token_ids: Vec<u32>,
    token_logprobs: Vec<f32>,
    /// llama-server: the newest token and its log-probability, not handed on yet.
    held: Option<(u32, f32)>,
    finish_reason: Option<String>,
}

/// The answer of one streamed request for `n` continuations, put together from its events.
struct Assembler {
    engine: Engine,
    rows: Vec<Growing>,
    prompt_tokens: Option<usize>,
    cached_tokens: usize,
}

/// What one event adds to one continuation.
#[derive(Debug)]
struct Piece {
    index: usize,
    token_ids: Vec<u32>,
    token_logprobs: Vec<f32>,
    finish_reason: Option<String>,
    text: Option<String>,
}

impl Assembler {
    fn new(engine: Engine, n: usize) -> Self {
        Self {
            engine,
            rows: (0..n).map(|_| Growing::default()).collect(),
            prompt_tokens: None,
            cached_tokens: 0,
        }
    }

    fn row(&mut self, index: usize) -> std::result::Result<&mut Growing, String> {
        let n = self.rows.len();
        self.rows
            .get_mut(index)
            .ok_or_else(|| format!("the stream names continuation {index} of {n}"))
    }

    /// Every continuation has ended.
    fn ended(&self) -> bool {
        self.rows.iter().all(|r| r.finish_reason.is_some())
    }

    /// Reads one event: the pieces it adds, in order.
    fn read(&mut self, v: &Value) -> std::result::Result<Vec<Piece>, String> {
        match self.engine {
            Engine::OpenAi => self.read_openai(v),
            Engine::LlamaCpp { .. } => self.read_llama_cpp(v).map(|p| p.into_iter().collect()),
        }
    }

    fn read_openai(&mut self, v: &Value) -> std::result::Result<Vec<Piece>, String> {
        if let Some(usage) = v.get("usage").filter(|u| u.is_object()) {
            self.prompt_tokens = usage["prompt_tokens"].as_u64().map(|x| x as usize);
            self.cached_tokens = usage["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0) as usize;
        }
        let mut pieces = Vec::new();
        for (i, c) in v["choices"].as_array().into_iter().flatten().enumerate() {
            let index = c["index"].as_u64().map_or(i, |x| x as usize);
            let ids = match c["token_ids"].as_array() {
                Some(ids) => token_ids(ids).ok_or("`token_ids` holds a non-token-id")?,
                None if c["text"].as_str().is_some_and(|t| !t.is_empty()) => {
                    return Err("the stream's chunks carry no `token_ids`: the server must \
                                stream vLLM's return_token_ids (vLLM 0.10.2 or later, or thresh)"
                        .into());
                }
                None => Vec::new(),
            };
            let lps = logprobs(
                c["logprobs"]["token_logprobs"].as_array(),
                ids.len(),
                Value::as_f64,
            );
            let finish_reason = c["finish_reason"].as_str().map(str::to_string);
            let row = self.row(index)?;
            row.token_ids.extend_from_slice(&ids);
            row.token_logprobs.extend_from_slice(&lps);
            if finish_reason.is_some() {
                row.finish_reason.clone_from(&finish_reason);
            }
            pieces.push(Piece {
                index,
                token_ids: ids,
                token_logprobs: lps,
                finish_reason,
                text: Some(c["text"].as_str().unwrap_or_default().to_string()),
            });
        }
        Ok(pieces)
    }

    fn read_llama_cpp(&mut self, v: &Value) -> std::result::Result<Option<Piece>, String> {
        let index = v["index"].as_u64().unwrap_or(0) as usize;
        let ids = match v["tokens"].as_array() {
            Some(ids) => token_ids(ids).ok_or("`tokens` holds a non-token-id")?,
            None => {
                return Err(
                    "the stream's events carry no `tokens`: llama-server must be \
                            recent enough to take `return_tokens`"
                        .into(),
                );
            }
        };
        let lps = logprobs(v["completion_probabilities"].as_array(), ids.len(), |x| {
            x["logprob"].as_f64()
        });
        let stop = v["stop"].as_bool().unwrap_or(false);
        if stop && self.prompt_tokens.is_none() {
            // Every completion reads the same prompt; the first to end speaks for the request.
            self.prompt_tokens = v["tokens_evaluated"].as_u64().map(|x| x as usize);
            self.cached_tokens = v["timings"]["cache_n"].as_u64().unwrap_or(0) as usize;
        }
        let row = self.row(index)?;
        let mut out: Vec<(u32, f32)> = row.held.take().into_iter().collect();
        out.extend(ids.into_iter().zip(lps));
        let finish_reason = if stop {
            let stop_type = v["stop_type"].as_str().unwrap_or("limit");
            if stop_type == "eos" {
                // The end-of-generation token: thresh's rows leave it out.
                out.pop();
            }
            Some(llama_cpp::finish_reason(stop_type).to_string())
        } else {
            row.held = out.pop();
            None
        };
        row.token_ids.extend(out.iter().map(|t| t.0));
        row.token_logprobs.extend(out.iter().map(|t| t.1));
        if finish_reason.is_some() {
            row.finish_reason.clone_from(&finish_reason);
        }
        Ok((!out.is_empty() || finish_reason.is_some()).then(|| Piece {
            index,
            token_ids: out.iter().map(|t| t.0).collect(),
            token_logprobs: out.iter().map(|t| t.1).collect(),
            finish_reason,
            text: None,
        }))
    }

    fn finish(self) -> std::result::Result<CompletionAnswer, String> {
        if !self.ended() {
            return Err("the stream ended before every continuation finished".into());
        }
        Ok(CompletionAnswer {
            choices: self
                .rows
                .into_iter()
                .map(|r| RemoteChoice {
                    token_ids: r.token_ids,
                    token_logprobs: r.token_logprobs,
                    finish_reason: r.finish_reason.unwrap_or_default(),
                })
                .collect(),
            prompt_tokens: self.prompt_tokens.unwrap_or(0),
            cached_tokens: self.cached_tokens,
        })
    }
}

impl RemotePolicy {
    /// [`RemotePolicy::complete`], streamed: `sink` gets each continuation's new tokens as the
    /// server sends them, then the whole answer comes back as `complete` would give it.
    /// `sink` returning `false` cancels the request ([`DecodeError::Cancelled`]).
    pub fn complete_streamed(
        &self,
        req: &CompletionRequest<'_>,
        sink: &mut DeltaSink<'_>,
    ) -> Result<CompletionAnswer> {
        let engine = self.engine()?;
        let sink = Mutex::new(sink);
        let stopped = AtomicBool::new(false);
        let stream = |offset: usize, n: usize, mut body: Value| {
            body["stream"] = json!(true);
            if engine == Engine::OpenAi {
                body["stream_options"] = json!({"include_usage": true});
            }
            self.generating(req.affinity, |url| {
                self.stream_one(url, engine, &body, n, offset, &sink, &stopped)
            })
        };
        let result = match engine {
            Engine::OpenAi => stream(0, req.n, wire::body(req, self.model.as_deref())),
            Engine::LlamaCpp { slots } => {
                let chunks = llama_cpp::chunks(req, slots)?;
                let answers = if let [(offset, n, body)] = chunks.as_slice() {
                    vec![stream(*offset, *n, body.clone())]
                } else {
                    super::in_parallel(&chunks, |(offset, n, body)| {
                        stream(*offset, *n, body.clone())
                    })
                };
                super::merge(answers, req.n)
            }
        };
        if stopped.load(Ordering::Relaxed) {
            return Err(DecodeError::Cancelled);
        }
        result
    }

    /// One streamed request to the replica at `url`, its continuations numbered from `offset`
    /// for `sink`.
    #[allow(clippy::too_many_arguments)]
    fn stream_one(
        &self,
        url: &str,
        engine: Engine,
        body: &Value,
        n: usize,
        offset: usize,
        sink: &Mutex<&mut DeltaSink<'_>>,
        stopped: &AtomicBool,
    ) -> std::result::Result<CompletionAnswer, Failure> {
        let reader = wire::open_stream(&self.agent, url, self.api_key.as_ref(), engine, body)?;
        let mut answer = Assembler::new(engine, n);
        let mut begun = false;
        // Before the first delta another replica may still answer; after it, not.
        let failed = |begun: bool, message: String| {
            if begun {
                Failure::Broken(message)
            } else {
                Failure::Replica(message)
            }
        };
        for line in BufReader::new(reader).lines() {
            let line = line.map_err(|e| failed(begun, format!("reading the stream: {e}")))?;
            let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                continue;
            };
            if data == "[DONE]" {
                break;
            }
            let v: Value = serde_json::from_str(data)
                .map_err(|e| Failure::Request(format!("a stream event is not JSON: {e}")))?;
            if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
                let message = e["message"].as_str().map_or(e.to_string(), str::to_string);
                return Err(failed(
                    begun,
                    format!("the stream reports an error: {message}"),
                ));
            }
            for piece in answer.read(&v).map_err(Failure::Request)? {
                begun = true;
                let delta = StreamDelta {
                    index: offset + piece.index,
                    token_ids: &piece.token_ids,
                    token_logprobs: &piece.token_logprobs,
                    finish_reason: piece.finish_reason.as_deref(),
                    text: piece.text.as_deref(),
                };
                let keep = match sink.lock() {
                    Ok(mut sink) => sink(delta),
                    Err(_) => false,
                };
                if !keep || stopped.load(Ordering::Relaxed) {
                    stopped.store(true, Ordering::Relaxed);
                    return Err(Failure::Request("cancelled".into()));
                }
            }
            if matches!(engine, Engine::LlamaCpp { .. }) && answer.ended() {
                break;
            }
        }
        answer.finish().map_err(|m| failed(begun, m))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn openai_chunks_add_up_to_the_answer() {
        let mut a = Assembler::new(Engine::OpenAi, 2);
        let events = [
            json!({"choices": [{"index": 1, "text": "a", "token_ids": [5],
                                "logprobs": {"token_logprobs": [-0.5]}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "text": "b", "token_ids": [6, 7],
                                "finish_reason": null}]}),
            json!({"choices": [{"index": 1, "text": "", "token_ids": [],
                                "finish_reason": "stop"}]}),
        ];
        let mut seen = Vec::new();
        for e in &events {
            for p in a.read(e).unwrap() {
                seen.push((p.index, p.token_ids, p.finish_reason));
            }
        }
        assert_eq!(seen[1], (0, vec![6, 7], None));
        assert_eq!(seen[2], (1, vec![], Some("stop".into())));
        assert!(!a.ended(), "continuation 0 has not ended");
        a.read(&json!({"choices": [{"index": 0, "token_ids": [8], "finish_reason": "length"}]}))
            .unwrap();
        a.read(&json!({"choices": [], "usage": {"prompt_tokens": 4,
                       "prompt_tokens_details": {"cached_tokens": 3}}}))
            .unwrap();
        let answer = a.finish().unwrap();
        assert_eq!(answer.choices[0].token_ids, [6, 7, 8]);
        assert_eq!(answer.choices[0].finish_reason, "length");
        assert_eq!(answer.choices[1].token_logprobs, [-0.5]);
        assert_eq!((answer.prompt_tokens, answer.cached_tokens), (4, 3));
        let mut text_only = Assembler::new(Engine::OpenAi, 1);
        let e = json!({"choices": [{"index": 0, "text": "x", "finish_reason": null}]});
        assert!(text_only.read(&e).unwrap_err().contains("return_token_ids"));
        let mut short = Assembler::new(Engine::OpenAi, 1);
        short
            .read(&json!({"choices": [{"index": 0, "token_ids": [1]}]}))
            .unwrap();
        assert!(short.finish().unwrap_err().contains("before every"));
        assert!(
            Assembler::new(Engine::OpenAi, 1)
                .read(&json!({"choices": [{"index": 3, "token_ids": [1]}]}))
                .is_err()
        );
    }

    #[test]
    fn llama_cpp_streams_hold_back_the_newest_token_and_drop_eos() {
        let mut a = Assembler::new(Engine::LlamaCpp { slots: 2 }, 1);
        let token = |id: u32| {
            json!({"index": 0, "tokens": [id], "stop": false,
                   "completion_probabilities": [{"id": id, "logprob": -(id as f64)}]})
        };
        assert!(a.read(&token(4)).unwrap().is_empty(), "held back");
        let p = a.read(&token(5)).unwrap();
        assert_eq!(
            (p[0].token_ids.clone(), p[0].token_logprobs.clone()),
            (vec![4], vec![-4.0])
        );
        // 2 is the EOS token; the final event names it.
        assert!(a.read(&token(2)).unwrap()[0].token_ids == [5]);
        let end = json!({"index": 0, "tokens": [], "stop": true, "stop_type": "eos",
                         "tokens_evaluated": 9, "timings": {"cache_n": 6}});
        let p = a.read(&end).unwrap();
        assert!(p[0].token_ids.is_empty(), "EOS dropped");
        assert_eq!(p[0].finish_reason.as_deref(), Some("stop"));
        let answer = a.finish().unwrap();
        assert_eq!(answer.choices[0].token_ids, [4, 5]);
        assert_eq!(answer.choices[0].token_logprobs, [-4.0, -5.0]);
        assert_eq!((answer.prompt_tokens, answer.cached_tokens), (9, 6));
        // At the cap, the held token is the answer's last.
        let mut b = Assembler::new(Engine::LlamaCpp { slots: 1 }, 1);
        b.read(&token(7)).unwrap();
        let end = json!({"index": 0, "tokens": [], "stop": true, "stop_type": "limit"});
        let p = b.read(&end).unwrap();
        assert_eq!(p[0].token_ids, [7]);
        assert_eq!(p[0].finish_reason.as_deref(), Some("length"));
        let no_ids = json!({"index": 0, "content": "x", "stop": false});
        assert!(
            Assembler::new(Engine::LlamaCpp { slots: 1 }, 1)
                .read(&no_ids)
                .unwrap_err()
                .contains("return_tokens")
        );
    }
}
