//! llama.cpp's `llama-server` dialect: its native `POST /completion`, which takes token-id
//! prompts and answers with token ids (`return_tokens`), where its OpenAI endpoint gives text
//! only.
//!
//! ```text
//! request:  {"prompt": [ids], "n": k (<= the server's slots), "n_predict", "seed": u32,
//!            "temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n",
//!            "frequency_penalty", "presence_penalty", "ignore_eos", "stop",
//!            "n_probs": 1 (0 when no log-probabilities are wanted), "return_tokens": true,
//!            "cache_prompt": true}
//! response: one object (k = 1) or a list of k, by "index":
//!           {"index", "tokens": [ids], "stop_type": "eos"|"word"|"limit"|"none",
//!            "tokens_evaluated", "timings": {"cache_n"},
//!            "completion_probabilities": [{"id", "logprob"}]}
//! ```
//!
//! Every sampling setting is sent, since llama-server's defaults are not OpenAI's (top-k 40,
//! min-p 0.05). Its seed is 32-bit and completion `i` of a request samples with `seed + i`, as
//! thresh's rows do; thresh's 64-bit seed is folded to 32 bits. Its penalties look back over
//! the whole row (`repeat_last_n`: the prompt and the new tokens), where OpenAI's frequency
//! and presence penalties count only generated tokens. It has no `min_tokens`.

use serde_json::{Value, json};

use super::fields::{logprobs, token_ids};
use super::{CompletionAnswer, CompletionRequest, RemoteChoice};
use crate::error::DecodeError;

/// llama-server's "random seed" value, never sent.
const RANDOM_SEED: u32 = u32::MAX;

/// The 32-bit seed of completion 0 of a request for `n` completions whose first is sampled
/// with thresh's `seed`: the 64 bits folded, kept below the range whose `+ i` would reach
/// [`RANDOM_SEED`].
pub(super) fn seed32(seed: u64, n: usize) -> u32 {
    let folded = (seed ^ (seed >> 32)) as u32;
    let span = u32::try_from(n).unwrap_or(u32::MAX).max(1);
    folded % (RANDOM_SEED - span + 1)
}

/// The request body for `n` completions (at most the server's slots), the first sampled with
/// 32-bit seed `seed`.
pub(super) fn body(req: &CompletionRequest<'_>, n: usize, seed: u32) -> Value {
    let s = req.sampling;
    json!({
        "prompt": req.prompt,
        "n": n,
        "n_predict": req.max_tokens,
        "seed": seed,
        "temperature": s.temperature,
        "top_k": s.top_k,
        "top_p": s.top_p,
        "min_p": s.min_p,
        "typical_p": 1.0,
        "repeat_penalty": s.repetition_penalty,
        "repeat_last_n": req.prompt.len() + req.max_tokens,
        "frequency_penalty": s.frequency_penalty,
        "presence_penalty": s.presence_penalty,
        "ignore_eos": req.ignore_eos,
        "stop": req.stop,
        "n_probs": usize::from(s.token_logprobs),
        "return_tokens": true,
        "cache_prompt": true,
        "stream": false,
    })
}

/// The requests for `req` to a server with `slots` parallel slots: `(offset, n, body)`, each
/// for at most `slots` completions, the first sampled with completion `offset`'s seed.
pub(super) fn chunks(
    req: &CompletionRequest<'_>,
    slots: usize,
) -> crate::error::Result<Vec<(usize, usize, Value)>> {
    if req.min_tokens > 0 {
        return Err(DecodeError::InvalidParameter(
            "min_tokens: the policy server (llama-server) has no minimum length".into(),
        ));
    }
    let seed = seed32(req.sampling.seed, req.n);
    Ok((0..req.n)
        .step_by(slots.max(1))
        .map(|o| {
            let n = slots.max(1).min(req.n - o);
            (o, n, body(req, n, seed.wrapping_add(o as u32)))
        })
        .collect())
}

/// OpenAI's finish reason for llama-server's `stop_type`.
pub(super) fn finish_reason(stop_type: &str) -> &'static str {
    match stop_type {
        "eos" | "word" => "stop",
        _ => "length",
    }
}

/// Reads one completion of a `/completion` answer.
fn choice(c: &Value) -> Result<RemoteChoice, String> {
    let ids = c["tokens"].as_array().ok_or(
        "the answer has no `tokens`: llama-server must be recent enough to take \
         `return_tokens`",
    )?;
    let mut token_ids = token_ids(ids).ok_or("`tokens` holds something that is not a token id")?;
    let mut token_logprobs = logprobs(
        c["completion_probabilities"].as_array(),
        token_ids.len(),
        |x| x["logprob"].as_f64(),
    );
    let stop_type = c["stop_type"].as_str().unwrap_or("limit");
    if stop_type == "eos" {
        // llama-server returns the end-of-generation token; thresh's rows leave it out.
        token_ids.pop();
        token_logprobs.pop();
    }
    Ok(RemoteChoice {
        token_ids,
        token_logprobs,
        finish_reason: finish_reason(stop_type).to_string(),
    })
}

/// Reads a `/completion` answer with `n` completions.
pub(super) fn parse(text: &str, n: usize) -> Result<CompletionAnswer, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let list = match v {
        Value::Array(list) => list,
        one @ Value::Object(_) => vec![one],
        _ => return Err("the answer is neither a completion nor a list of them".into()),
    };
    if list.len() != n {
        return Err(format!("asked for {n} continuations, got {}", list.len()));
    }
    let mut choices: Vec<(usize, RemoteChoice)> = Vec::with_capacity(n);
    let (mut prompt_tokens, mut cached_tokens) = (0, 0);
    for (i, c) in list.iter().enumerate() {
        let index = c["index"].as_u64().map_or(i, |x| x as usize);
        choices.push((index, choice(c)?));
        // Every completion reads the same prompt; the first one's counts stand for the request.
        if i == 0 {
            prompt_tokens = c["tokens_evaluated"].as_u64().unwrap_or(0) as usize;
            cached_tokens = c["timings"]["cache_n"].as_u64().unwrap_or(0) as usize;
        }
    }
    choices.sort_by_key(|c| c.0);
    if choices.iter().enumerate().any(|(i, c)| c.0 != i) {
        return Err("the completions' indices are not 0..n".into());
    }
    Ok(CompletionAnswer {
        choices: choices.into_iter().map(|c| c.1).collect(),
        prompt_tokens,
        cached_tokens,
    })
}

/// `total_slots` of a `GET /props` answer: the most completions one request may ask for.
pub(super) fn slots(props: &Value) -> usize {
    props["total_slots"]
        .as_u64()
        .map_or(1, |x| x.max(1) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::SamplingParams;

    #[test]
    fn seeds_fold_to_32_bits_and_never_ask_for_a_random_one() {
        assert_eq!(seed32(7, 1), 7);
        assert_eq!(seed32(7 | (1 << 32), 1), 6, "the high half folds in");
        for n in [1, 4, 64] {
            let s = seed32(u64::MAX >> 32, n);
            assert!(s as u64 + n as u64 - 1 < RANDOM_SEED as u64, "{n}: {s}");
        }
    }

    #[test]
    fn every_sampling_setting_is_sent() {
        let sampling = SamplingParams {
            top_k: 0,
            min_p: 0.0,
            ..Default::default()
        };
        let stop = ["\n\n".to_string()];
        let b = body(
            &CompletionRequest {
                prompt: &[1, 2],
                n: 9,
                max_tokens: 8,
                sampling: &sampling,
                stop: &stop,
                ignore_eos: true,
                min_tokens: 0,
                affinity: 0,
            },
            3,
            11,
        );
        assert_eq!(b["n"], 3, "the chunk, not the request's n");
        assert_eq!(
            (b["seed"].clone(), b["n_predict"].clone()),
            (json!(11), json!(8))
        );
        assert_eq!(
            (b["top_k"].clone(), b["min_p"].clone()),
            (json!(0), json!(0.0))
        );
        assert_eq!(b["stop"], json!(["\n\n"]));
        assert_eq!(b["return_tokens"], true);
        assert_eq!(b["ignore_eos"], true);
        assert_eq!(b["n_probs"], 1, "log-probabilities by default");
        let quiet = SamplingParams {
            token_logprobs: false,
            ..sampling.clone()
        };
        let req = CompletionRequest {
            prompt: &[1, 2],
            n: 1,
            max_tokens: 8,
            sampling: &quiet,
            stop: &stop,
            ignore_eos: false,
            min_tokens: 0,
            affinity: 0,
        };
        assert_eq!(body(&req, 1, 11)["n_probs"], 0, "not asked when not wanted");
    }

    #[test]
    fn answers_drop_the_eos_token_and_keep_index_order() {
        let text = r#"[
            {"index": 1, "tokens": [5, 6], "stop_type": "limit", "tokens_evaluated": 3},
            {"index": 0, "tokens": [7, 2], "stop_type": "eos", "tokens_evaluated": 3,
             "timings": {"cache_n": 2},
             "completion_probabilities": [{"id": 7, "logprob": -0.5}, {"id": 2, "logprob": -1.0}]}]"#;
        let a = parse(text, 2).unwrap();
        assert_eq!(a.choices[0].token_ids, [7]);
        assert_eq!(a.choices[0].token_logprobs, [-0.5]);
        assert_eq!(a.choices[0].finish_reason, "stop");
        assert_eq!(a.choices[1].token_ids, [5, 6]);
        assert_eq!(a.choices[1].finish_reason, "length");
        assert_eq!(a.choices[1].token_logprobs, [0.0, 0.0]);
        assert_eq!(a.prompt_tokens, 3);
        let one = r#"{"index": 0, "tokens": [4], "stop_type": "word"}"#;
        assert_eq!(parse(one, 1).unwrap().choices[0].finish_reason, "stop");
        assert!(parse(one, 2).unwrap_err().contains("asked for 2"));
        let no_ids = r#"{"index": 0, "content": "x", "stop_type": "eos"}"#;
        assert!(parse(no_ids, 1).unwrap_err().contains("return_tokens"));
        assert_eq!(slots(&json!({"total_slots": 4})), 4);
        assert_eq!(slots(&json!({})), 1);
    }
}
