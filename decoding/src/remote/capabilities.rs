//! The start-up check of a fleet: each replica is probed (`GET /v1/models`: it serves the
//! model, which engine it runs, its context) and asked for one small completion that needs
//! every capability thresh relies on, so that a replica that cannot serve fails the start with
//! its own URL in the message, rather than one request in N later.

use std::sync::atomic::Ordering;

use super::admission::Admission;
use super::{CompletionRequest, Engine, RemotePolicy, ServerInfo};
use crate::error::{DecodeError, Result};
use crate::sampling::SamplingParams;

impl RemotePolicy {
    /// A client of replica `i` alone, with this one's model, key and timeout.
    fn single(&self, i: usize) -> RemotePolicy {
        let mut one = RemotePolicy::alone(
            self.replicas[i].url.clone(),
            self.model.clone(),
            self.api_key.clone(),
            self.agent.clone(),
            None,
        );
        one.timeout = self.timeout;
        one
    }

    /// The start-up check of every replica: its probe (it must list the model named, and run
    /// the same engine as the others) and [`RemotePolicy::check_capabilities`]. A replica that
    /// is down now is left out, and gets no request until a health check finds it up and has
    /// run this check on it (the fleet's engine, at least its context; `admission.rs`); one
    /// that refuses, or lacks a capability, fails the check, the error naming it. What the fleet offers: the model, the smallest context any replica has, and
    /// the engine (of llama-servers, the fewest slots any has).
    pub fn check_fleet(&self, prompt: &[u32]) -> Result<ServerInfo> {
        let mut fleet: Option<(String, ServerInfo)> = None;
        for i in 0..self.replicas.len() {
            let one = self.single(i);
            let url = one.url().to_string();
            let info = match one.try_replicas(0, |u| one.models(u)) {
                Ok(info) => info,
                Err(f) if f.replicas_down => {
                    tracing::warn!(
                        url,
                        message = f.message,
                        "policy replica down at start-up; left out until it answers"
                    );
                    self.mark(i, true);
                    self.replicas[i].admitted.store(false, Ordering::Release);
                    continue;
                }
                Err(f) => return Err(f.into_error()),
            };
            one.learn(&info);
            one.check_capabilities(prompt)?;
            self.replicas[i].admitted.store(true, Ordering::Release);
            fleet = Some(match fleet {
                None => (url, info),
                Some((first, mut all)) => {
                    all.engine = match (all.engine, info.engine) {
                        (Engine::OpenAi, Engine::OpenAi) => Engine::OpenAi,
                        (Engine::LlamaCpp { slots: a }, Engine::LlamaCpp { slots: b }) => {
                            Engine::LlamaCpp { slots: a.min(b) }
                        }
                        (theirs, ours) => {
                            return Err(DecodeError::Remote {
                                url,
                                message: format!(
                                    "this replica speaks {} while {first} speaks {}: the \
                                     replicas of one policy must run one engine",
                                    ours.dialect(),
                                    theirs.dialect()
                                ),
                            });
                        }
                    };
                    all.max_model_len = match (all.max_model_len, info.max_model_len) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    (first, all)
                }
            });
        }
        let Some((_, info)) = fleet else {
            for r in self.replicas.iter() {
                r.admitted.store(true, Ordering::Release);
            }
            return Err(DecodeError::Remote {
                url: self.urls().join(","),
                message: "no replica answered the start-up check".into(),
            });
        };
        self.learn(&info);
        if let Ok(mut a) = self.admission.lock() {
            *a = Some(Admission {
                prompt: prompt.to_vec(),
                fleet: info.clone(),
            });
        }
        Ok(info)
    }

    /// The capability check: one completion of two continuations, one new token each, from
    /// `prompt` sent as token ids, whose answer must carry two continuations with their token
    /// ids. A server without token-id prompts, token ids in its answers or `n` fails here,
    /// with the message naming what it lacks, rather than at the first request.
    /// [`RemotePolicy::check_fleet`] runs it on each replica.
    pub fn check_capabilities(&self, prompt: &[u32]) -> Result<()> {
        // Log-probabilities are not among the capabilities needed: not asked for.
        let sampling = SamplingParams {
            token_logprobs: false,
            ..SamplingParams::default()
        };
        let answer = self
            .complete(&CompletionRequest {
                prompt,
                n: 2,
                max_tokens: 1,
                sampling: &sampling,
                stop: &[],
                ignore_eos: false,
                min_tokens: 0,
                affinity: 0,
            })
            .map_err(|e| {
                let what = "the capability check (a completion with a token-id prompt, n = 2, \
                            token ids in the answer) failed";
                match e {
                    DecodeError::Remote { url, message } => DecodeError::Remote {
                        url,
                        message: format!("{what}: {message}"),
                    },
                    other => other,
                }
            })?;
        match answer.choices.iter().find(|c| c.token_ids.len() > 1) {
            Some(c) => Err(DecodeError::Remote {
                url: self.url().to_string(),
                message: format!(
                    "the capability check asked for 1 new token and got {}: the server \
                     ignores max_tokens",
                    c.token_ids.len()
                ),
            }),
            None => Ok(()),
        }
    }
}
