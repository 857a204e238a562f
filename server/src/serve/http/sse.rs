//! Server-sent events for `stream: true`. Plain requests stream each answer's text as it is
//! decoded; aligned requests send comment lines with progress while the candidates race,
//! then the chosen answers as deltas. With `logprobs`, each chunk carries the
//! log-probabilities of the tokens its text completes (the rule is in
//! [`token_spans`](crate::serve::infer::token_spans)). With `return_token_ids` (vLLM's
//! shape), each chunk carries `token_ids`, the ids new since the answer's last chunk (a plain
//! answer's as they are sampled, an aligned answer's all in its last chunk), and the first
//! carries `prompt_token_ids`. Every stream ends with `data: [DONE]`. Dropping the
//! stream (the client went away) cancels the job at its next decode step.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};

use serde_json::{Value, json};

use super::responses::{
    RespCtx, alignment_json, chat_message, chunk, chunk_choice, logprobs_value, usage_chunk,
};
use crate::serve::api::errors::ApiError;
use crate::serve::infer::Generation;
use crate::serve::infer::jobs::{Event, GenOutput};
use crate::serve::infer::token_spans::word_pieces;
use crate::serve::metrics as m;
use crate::serve::validation::Route;

struct StreamState {
    ctx: RespCtx,
    generation: Generation,
    pending: VecDeque<SseEvent>,
    done: bool,
    first_token: bool,
    deadline: tokio::time::Instant,
    timeout_secs: u64,
    started: Option<Instant>,
    /// Per answer: the summed token texts already streamed (completions' `text_offset`).
    offsets: Vec<usize>,
    /// Per answer, with `return_token_ids`: the token ids already streamed.
    ids_sent: Vec<usize>,
}

fn data(v: &serde_json::Value) -> SseEvent {
    SseEvent::default().data(v.to_string())
}

impl StreamState {
    fn first_token(&mut self) {
        if !self.first_token {
            self.first_token = true;
            m::time_to_first_token(self.ctx.arrived.elapsed());
        }
    }

    /// Adds the token ids of one answer's chunk `c` (vLLM's shape): `token_ids` (those new
    /// since its last chunk), and `prompt_token_ids` in its first chunk that carries any.
    fn with_ids(&mut self, c: &mut Value, index: usize, ids: &[u32]) {
        let Some(prompt) = &self.ctx.prompt_token_ids else {
            return;
        };
        if self.ids_sent.len() <= index {
            self.ids_sent.resize(index + 1, usize::MAX);
        }
        if self.ids_sent[index] == usize::MAX {
            c["prompt_token_ids"] = json!(prompt);
            self.ids_sent[index] = 0;
        }
        c["token_ids"] = json!(ids);
        self.ids_sent[index] += ids.len();
    }

    /// A chunk with one answer's new text and, with `logprobs`, the tokens it completes.
    fn text_chunk(
        &mut self,
        index: usize,
        text: &str,
        logprobs: Option<&[(String, f32)]>,
        token_ids: Option<&[u32]>,
    ) {
        let mut c = chunk_choice(&self.ctx, index, Some(text), false, None);
        self.with_ids(&mut c, index, token_ids.unwrap_or(&[]));
        if let Some(lps) = logprobs {
            if self.offsets.len() <= index {
                self.offsets.resize(index + 1, 0);
            }
            c["logprobs"] = logprobs_value(self.ctx.route, lps, self.offsets[index]);
            self.offsets[index] += lps.iter().map(|(t, _)| t.len()).sum::<usize>();
        }
        self.pending.push_back(data(&chunk(&self.ctx, vec![c])));
    }

    fn fail(&mut self, e: ApiError) {
        self.pending.push_back(data(&e.body()));
        self.pending.push_back(SseEvent::default().data("[DONE]"));
        self.done = true;
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Started(queue) => {
                self.started = Some(Instant::now());
                self.pending.push_back(SseEvent::default().comment(format!(
                    "started strategy={} queue_ms={:.1}",
                    self.ctx.strategy,
                    queue.as_secs_f64() * 1e3
                )));
                if self.ctx.route == Route::Chat {
                    let choices = (0..self.ctx.n)
                        .map(|i| chunk_choice(&self.ctx, i, Some(""), true, None))
                        .collect();
                    self.pending.push_back(data(&chunk(&self.ctx, choices)));
                }
            }
            Event::Delta {
                index,
                text,
                logprobs,
                token_ids,
            } => {
                self.first_token();
                // Tool calls are known once an answer is whole: sent in `finish`.
                if !self.ctx.tool_calls {
                    self.text_chunk(index, &text, logprobs.as_deref(), token_ids.as_deref());
                }
            }
            Event::Done(result) => match *result {
                Ok(out) => self.finish(out),
                Err(e) => self.fail(e),
            },
        }
    }

    fn finish(&mut self, out: GenOutput) {
        let aligned = self.ctx.strategy != "none";
        if aligned && !self.ctx.tool_calls {
            self.first_token();
            for (i, c) in out.choices.iter().enumerate() {
                // The chosen answer as deltas, one word (with its leading space) at a time,
                // each with the log-probabilities of the tokens it completes.
                let ends = c.token_ends.as_deref().unwrap_or(&[]);
                for (piece, tokens) in word_pieces(&c.text, ends) {
                    let lps = c.logprobs.as_ref().map(|l| &l[tokens]);
                    self.text_chunk(i, piece, lps, None);
                }
            }
        }
        let mut reasons: Vec<&'static str> = out.choices.iter().map(|c| c.finish_reason).collect();
        if self.ctx.tool_calls {
            self.first_token();
            for (i, c) in out.choices.iter().enumerate() {
                // OpenAI's shape: the calls (with their whole arguments) in one delta.
                let (mut delta, finish) = chat_message(&self.ctx, i, &c.text, c.finish_reason);
                if let Some(d) = delta.as_object_mut() {
                    d.remove("role");
                    if d.get("content").is_some_and(Value::is_null) {
                        d.remove("content");
                    }
                }
                reasons[i] = finish;
                let ch =
                    json!({"index": i, "delta": delta, "logprobs": null, "finish_reason": null});
                self.pending.push_back(data(&chunk(&self.ctx, vec![ch])));
            }
        }
        let last = out.choices.len().saturating_sub(1);
        for (i, c) in out.choices.iter().enumerate() {
            let mut ch = chunk_choice(&self.ctx, i, None, false, Some((reasons[i], c.score)));
            if let Some(ids) = &c.token_ids {
                // The ids no chunk carried yet (all of an aligned answer's).
                let sent = self.ids_sent.get(i).copied().filter(|&s| s != usize::MAX);
                let rest = ids.get(sent.unwrap_or(0)..).unwrap_or(&[]);
                self.with_ids(&mut ch, i, rest);
            }
            let mut body = chunk(&self.ctx, vec![ch]);
            if i == last {
                body["alignment"] = alignment_json(&self.ctx, &out);
            }
            self.pending.push_back(data(&body));
        }
        if self.ctx.include_usage {
            self.pending.push_back(data(&usage_chunk(&self.ctx, &out)));
        }
        self.pending.push_back(SseEvent::default().data("[DONE]"));
        self.done = true;
    }
}

/// The SSE response of a streamed job; `guard` cancels the job when the stream is dropped.
pub fn stream_response(ctx: RespCtx, generation: Generation, timeout: Duration) -> Response {
    let st = StreamState {
        ctx,
        generation,
        pending: VecDeque::new(),
        done: false,
        first_token: false,
        deadline: tokio::time::Instant::now() + timeout,
        timeout_secs: timeout.as_secs(),
        started: None,
        offsets: Vec::new(),
        ids_sent: Vec::new(),
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                return Some((Ok::<_, Infallible>(ev), st));
            }
            if st.done {
                return None;
            }
            let tick = tokio::time::timeout(Duration::from_millis(500), st.generation.next());
            match tokio::time::timeout_at(st.deadline, tick).await {
                Err(_) => {
                    let secs = st.timeout_secs;
                    st.fail(ApiError::Timeout(secs));
                }
                Ok(Err(_)) => {
                    // Progress while the engine works (also keeps proxies from timing out).
                    let what = match st.started {
                        Some(t) => format!(
                            "progress strategy={} elapsed_ms={:.0}",
                            st.ctx.strategy,
                            t.elapsed().as_secs_f64() * 1e3
                        ),
                        None => "queued".to_string(),
                    };
                    st.pending.push_back(SseEvent::default().comment(what));
                }
                Ok(Ok(None)) => st.fail(ApiError::Internal("the engine stopped".into())),
                Ok(Ok(Some(ev))) => st.on_event(ev),
            }
        }
    });
    let mut resp = Sse::new(stream).into_response();
    resp.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    resp
}
