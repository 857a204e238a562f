//! Unit tests of every validation rule and limit: each rule's accepted boundary values, its
//! rejected ones, and the 400 it fails with (its `param` and the gist of its message), without
//! an HTTP server. The strategy parameters themselves are tested in
//! [`alignment`](super::alignment)'s own tests.

use std::fmt::Debug;

use axum::http::StatusCode;
use serde_json::{Value, json};
use thresh_decoding::strategy::Strategy;
use thresh_decoding::{SamplingParams, StopConditions};
use thresh_models::ChatMessage;
use thresh_reward::Prompt;

use super::correct::{MAX_PAIRS, validate};
use super::generation::{
    self, MAX_STOP, MAX_STOP_CHARS, best_of, correct_mode, logprobs, max_tokens, min_tokens,
    stop_strings,
};
use super::{
    CorrectMode, GenRequest, Limits, PromptSpec, Route, TokenLimits, messages, validate_generation,
    validate_rewards,
};
use crate::serve::api::errors::ApiError;
use crate::serve::api::openai::{
    CorrectBody, CorrectInput, GenerationBody, RawMessage, RewardsBody, StopInput,
};

const LIMITS: Limits = Limits {
    max_n: 16,
    kv_budget_tokens: 65536,
    score_plain: false,
    tokens: TokenLimits {
        max_input_tokens: None,
        max_tokens_limit: None,
        default_chat_max_tokens: 512,
        default_completion_max_tokens: 16,
    },
};

/// `base` with the fields of `extra` set (replacing those it has).
fn merged(base: Value, extra: Value) -> Value {
    let mut base = base;
    let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) else {
        panic!("both must be JSON objects");
    };
    b.extend(e);
    base
}

fn body(v: Value) -> GenerationBody {
    serde_json::from_value(v).expect("the body deserialises")
}

/// A completions request: prompt `"hi"` plus `extra`.
fn completions(extra: Value) -> Result<GenRequest, ApiError> {
    completions_with(extra, LIMITS)
}

fn completions_with(extra: Value, limits: Limits) -> Result<GenRequest, ApiError> {
    let v = merged(json!({"prompt": "hi"}), extra);
    validate_generation(body(v), Route::Completions, limits)
}

/// A chat request: one user message `"hi"` plus `extra`.
fn chat(extra: Value) -> Result<GenRequest, ApiError> {
    let v = merged(
        json!({"messages": [{"role": "user", "content": "hi"}]}),
        extra,
    );
    validate_generation(body(v), Route::Chat, LIMITS)
}

fn raw_messages(v: Value) -> Vec<RawMessage> {
    serde_json::from_value(v).expect("the messages deserialise")
}

/// Asserts `r` is a 400 naming `param` whose message holds `fragment`.
#[track_caller]
fn assert_rejected<T: Debug>(r: Result<T, ApiError>, param: &str, fragment: &str) {
    let e = match r {
        Ok(v) => panic!("expected a 400 on {param}, got Ok({v:?})"),
        Err(e) => e,
    };
    assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e:?}");
    match e {
        ApiError::InvalidParameter {
            param: Some(p),
            message,
        } => {
            assert_eq!(p, param, "wrong param; message: {message}");
            assert!(
                message.contains(fragment),
                "message {message:?} does not contain {fragment:?}"
            );
        }
        other => panic!("expected InvalidParameter on {param}, got {other:?}"),
    }
}

fn text_of(p: &PromptSpec) -> &str {
    match p {
        PromptSpec::Text(t) => t,
        other => panic!("not a text prompt: {other:?}"),
    }
}

fn messages_of(p: &PromptSpec) -> &[ChatMessage] {
    match p {
        PromptSpec::Messages(m) => m,
        other => panic!("not a chat prompt: {other:?}"),
    }
}

// ---- prompt -------------------------------------------------------------------------------

#[test]
fn each_route_takes_its_own_prompt_field_and_rejects_the_others() {
    let r = completions(json!({})).unwrap();
    assert_eq!(r.route, Route::Completions);
    assert_eq!(text_of(&r.prompt), "hi");
    let r = chat(json!({})).unwrap();
    assert_eq!(r.route, Route::Chat);
    assert_eq!(messages_of(&r.prompt), [ChatMessage::new("user", "hi")]);

    assert_rejected(
        completions(json!({"messages": [{"role": "user", "content": "hi"}]})),
        "messages",
        "belongs to /v1/chat/completions",
    );
    assert_rejected(
        chat(json!({"prompt": "hi"})),
        "prompt",
        "belongs to /v1/completions",
    );
    assert_rejected(
        validate_generation(body(json!({})), Route::Completions, LIMITS),
        "prompt",
        "prompt is required",
    );
    assert_rejected(
        validate_generation(body(json!({})), Route::Chat, LIMITS),
        "messages",
        "messages is required",
    );
    // The other route's field is checked before the missing one.
    assert_rejected(
        generation::prompt(
            &body(json!({"messages": [{"role": "user", "content": "hi"}]})),
            Route::Completions,
        ),
        "messages",
        "send prompt",
    );
}

#[test]
fn a_completion_prompt_is_one_text_one_token_list_or_a_one_element_list() {
    let prompt = |v: Value| generation::prompt(&body(json!({"prompt": v})), Route::Completions);
    assert_eq!(text_of(&prompt(json!("a b")).unwrap()), "a b");
    assert_eq!(text_of(&prompt(json!(["only"])).unwrap()), "only");
    match prompt(json!([1, 2, 3])).unwrap() {
        PromptSpec::Ids(ids) => assert_eq!(ids, [1, 2, 3]),
        other => panic!("not ids: {other:?}"),
    }
    assert_rejected(
        prompt(json!(["one", "two"])),
        "prompt",
        "prompt lists 2 prompts; send one prompt per request",
    );
    assert_rejected(prompt(json!("")), "prompt", "prompt must not be empty");
    assert_rejected(prompt(json!([""])), "prompt", "prompt must not be empty");
    // An empty list reads as no token ids; tokenisation rejects it ("the prompt has no
    // tokens"), not this check.
    match prompt(json!([])).unwrap() {
        PromptSpec::Ids(ids) => assert!(ids.is_empty()),
        other => panic!("not ids: {other:?}"),
    }
}

// ---- messages -----------------------------------------------------------------------------

#[test]
fn every_chat_role_is_accepted_and_developer_becomes_system() {
    let r = chat(json!({"messages": [
        {"role": "system", "content": "s"},
        {"role": "developer", "content": "d"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "a"},
        {"role": "tool", "content": "t"},
    ]}))
    .unwrap();
    let roles: Vec<&str> = messages_of(&r.prompt)
        .iter()
        .map(|m| m.role.as_str())
        .collect();
    assert_eq!(roles, ["system", "system", "user", "assistant", "tool"]);
    assert_eq!(messages_of(&r.prompt)[1].content, "d");
}

#[test]
fn an_unknown_role_is_rejected_at_its_index() {
    assert_rejected(
        chat(json!({"messages": [{"role": "robot", "content": "hi"}]})),
        "messages[0].role",
        "got \"robot\"",
    );
    assert_rejected(
        chat(json!({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "User", "content": "hi"},
        ]})),
        "messages[1].role",
        "must be system, user, assistant, tool or developer",
    );
    assert_rejected(
        chat(json!({"messages": []})),
        "messages",
        "messages must hold at least one message",
    );
}

#[test]
fn text_parts_are_joined_and_other_parts_rejected() {
    let m = messages(
        &raw_messages(json!([
            {"role": "user", "content": [
                {"type": "text", "text": "Hello, "},
                {"type": "text", "text": "world"},
            ]},
            {"role": "assistant", "content": null},
        ])),
        "messages",
    )
    .unwrap();
    assert_eq!(
        m,
        [
            ChatMessage::new("user", "Hello, world"),
            ChatMessage::new("assistant", "")
        ]
    );
    assert_rejected(
        chat(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "look:"},
            {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
        ]}]})),
        "messages[0].content[1]",
        "only text content parts are supported, got type \"image_url\"",
    );
    // A text part without its text is not a text part.
    assert_rejected(
        chat(json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]})),
        "messages[0].content[0]",
        "only text content parts are supported",
    );
}

#[test]
fn message_errors_name_the_callers_path() {
    let raw = raw_messages(json!([{"role": "user", "content": "a"}, {"role": "x"}]));
    assert_rejected(
        messages(&raw, "input[3].messages"),
        "input[3].messages[1].role",
        "input[3].messages[1].role must be",
    );
    assert_rejected(
        messages(&[], "inputs[0].messages"),
        "inputs[0].messages",
        "inputs[0].messages must hold at least one message",
    );
}

// ---- max_tokens ---------------------------------------------------------------------------

#[test]
fn max_tokens_and_max_completion_tokens_are_at_least_one_and_name_themselves() {
    assert_eq!(max_tokens(None, None, None).unwrap(), None);
    assert_eq!(max_tokens(Some(1), None, None).unwrap(), Some(1));
    assert_eq!(max_tokens(None, Some(1), None).unwrap(), Some(1));
    assert_rejected(
        max_tokens(Some(0), None, None),
        "max_tokens",
        "max_tokens must be at least 1",
    );
    assert_rejected(
        max_tokens(None, Some(0), None),
        "max_completion_tokens",
        "max_completion_tokens must be at least 1",
    );
    assert_rejected(
        completions(json!({"max_tokens": 0})),
        "max_tokens",
        "at least 1",
    );
    assert_rejected(
        chat(json!({"max_completion_tokens": 0})),
        "max_completion_tokens",
        "at least 1",
    );
}

#[test]
fn integer_fields_take_integral_numbers() {
    // JSON Schema's `integer` includes 2.0 (schemathesis sends it); 2.5 stays a
    // deserialisation error (api::integers), a 400 naming the field.
    let r = completions(
        json!({"max_tokens": 3.0, "seed": 7.0, "n": 2.0, "top_k": 5.0,
        "alignment": {"strategy": "best_of_n", "candidates": 2.0}}),
    )
    .unwrap();
    assert_eq!((r.max_tokens, r.n, r.sampling.seed), (Some(3), 2, 7));
}

#[test]
fn max_tokens_wins_over_max_completion_tokens() {
    assert_eq!(max_tokens(Some(5), Some(9), None).unwrap(), Some(5));
    // Both are checked, as the OpenAPI document states (found by schemathesis: a
    // max_completion_tokens below its minimum was accepted beside a valid max_tokens).
    assert_rejected(
        max_tokens(Some(5), Some(0), None),
        "max_completion_tokens",
        "at least 1",
    );
    assert_rejected(
        max_tokens(Some(0), Some(5), None),
        "max_tokens",
        "at least 1",
    );
    assert_eq!(max_tokens(Some(4), Some(4), Some(4)).unwrap(), Some(4));
    assert_rejected(
        max_tokens(Some(4), Some(5), Some(4)),
        "max_completion_tokens",
        "limit of 4 tokens per answer",
    );

    let r = chat(json!({"max_tokens": 7, "max_completion_tokens": 9})).unwrap();
    assert_eq!(r.max_tokens, Some(7));
    assert_eq!(r.stop.max_tokens, 7);
    let r = chat(json!({"max_completion_tokens": 9})).unwrap();
    assert_eq!(r.max_tokens, Some(9));
    assert_eq!(r.stop.max_tokens, 9);
}

// ---- sampling -----------------------------------------------------------------------------

type Getter = fn(&SamplingParams) -> f32;

/// Each float parameter: its accepted values (ends included), rejected values, and the range
/// its message states.
const RANGES: &[(&str, &[f64], &[f64], &str)] = &[
    (
        "temperature",
        &[0.0, 1.0, 2.0],
        &[-0.1, 2.01, -1e9, 1e9],
        "temperature must be in [0, 2]",
    ),
    (
        "top_p",
        &[1e-6, 0.5, 1.0],
        &[0.0, -0.5, 1.01],
        "top_p must be in (0, 1]",
    ),
    (
        "min_p",
        &[0.0, 0.5, 1.0],
        &[-0.01, 1.01],
        "min_p must be in [0, 1]",
    ),
    (
        "frequency_penalty",
        &[-2.0, 0.0, 2.0],
        &[-2.01, 2.01],
        "frequency_penalty must be in [-2, 2]",
    ),
    (
        "presence_penalty",
        &[-2.0, 0.0, 2.0],
        &[-2.01, 2.01],
        "presence_penalty must be in [-2, 2]",
    ),
    (
        "repetition_penalty",
        &[0.01, 1.0, 10.0],
        &[0.0, -1.0, 10.01],
        "repetition_penalty must be in (0, 10]",
    ),
];

fn getter(param: &str) -> Getter {
    match param {
        "temperature" => |s| s.temperature,
        "top_p" => |s| s.top_p,
        "min_p" => |s| s.min_p,
        "frequency_penalty" => |s| s.frequency_penalty,
        "presence_penalty" => |s| s.presence_penalty,
        "repetition_penalty" => |s| s.repetition_penalty,
        other => panic!("no getter for {other}"),
    }
}

#[test]
fn every_sampling_range_is_checked_at_both_ends() {
    for &(param, accepted, rejected, range) in RANGES {
        let get = getter(param);
        for &v in accepted {
            let r = completions(json!({ param: v }))
                .unwrap_or_else(|e| panic!("{param} = {v} rejected: {e}"));
            assert_eq!(get(&r.sampling), v as f32, "{param} = {v}");
            let r = chat(json!({ param: v })).unwrap();
            assert_eq!(get(&r.sampling), v as f32, "{param} = {v} (chat)");
        }
        for &v in rejected {
            assert_rejected(completions(json!({ param: v })), param, range);
            assert_rejected(chat(json!({ param: v })), param, &format!("got {v}"));
        }
    }
}

#[test]
fn top_k_is_minus_one_zero_or_positive() {
    let top_k = |k: i64| completions(json!({"top_k": k})).map(|r| r.sampling.top_k);
    assert_eq!(top_k(-1).unwrap(), 0);
    assert_eq!(top_k(0).unwrap(), 0);
    assert_eq!(top_k(1).unwrap(), 1);
    assert_eq!(top_k(40).unwrap(), 40);
    assert_rejected(
        top_k(-2),
        "top_k",
        "top_k must be -1, 0 or positive, got -2",
    );
    assert_rejected(top_k(i64::MIN), "top_k", "top_k must be -1, 0 or positive");
}

#[test]
fn a_given_seed_is_used_and_an_absent_one_is_random() {
    for seed in [0_i64, 1, 42, i64::MAX] {
        let r = completions(json!({"seed": seed})).unwrap();
        assert_eq!(r.sampling.seed, seed as u64);
    }
    // A negative seed keeps its bits.
    assert_eq!(
        completions(json!({"seed": -1})).unwrap().sampling.seed,
        u64::MAX
    );
    let a = completions(json!({})).unwrap().sampling.seed;
    let b = completions(json!({})).unwrap().sampling.seed;
    assert_ne!(a, b, "two requests without a seed drew the same one");
}

// ---- stop ---------------------------------------------------------------------------------

#[test]
fn stop_is_one_string_or_a_list_of_at_most_sixteen() {
    assert_eq!(MAX_STOP, 16);
    assert!(stop_strings(None).unwrap().is_empty());
    assert!(
        stop_strings(Some(StopInput::Many(vec![])))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        stop_strings(Some(StopInput::One("\n".into()))).unwrap(),
        ["\n"]
    );
    let list = |k: usize| (0..k).map(|i| format!("s{i}")).collect::<Vec<_>>();
    let r = completions(json!({"stop": list(16)})).unwrap();
    assert_eq!(r.stop.stop, list(16));
    assert_rejected(
        completions(json!({"stop": list(17)})),
        "stop",
        "stop holds 17 strings; the limit is 16",
    );
    let r = chat(json!({"stop": "END"})).unwrap();
    assert_eq!(r.stop.stop, ["END"]);
}

#[test]
fn each_stop_string_holds_one_to_256_characters() {
    assert_eq!(MAX_STOP_CHARS, 256);
    let msg = "each stop string must hold 1 to 256 characters";
    let r = completions(json!({"stop": "x".repeat(256)})).unwrap();
    assert_eq!(r.stop.stop, ["x".repeat(256)]);
    assert_rejected(completions(json!({"stop": "x".repeat(257)})), "stop", msg);
    assert_rejected(completions(json!({"stop": ""})), "stop", msg);
    assert_rejected(completions(json!({"stop": ["ok", ""]})), "stop", msg);
    // Characters, as the OpenAPI document's `maxLength` counts them: 'é' is two bytes.
    assert!(completions(json!({"stop": "é".repeat(256)})).is_ok());
    assert_rejected(
        completions(json!({"stop": format!("{}a", "é".repeat(256))})),
        "stop",
        msg,
    );
}

// ---- n ------------------------------------------------------------------------------------

#[test]
fn n_is_in_one_to_max_n() {
    assert_eq!(generation::n(None, 16).unwrap(), 1);
    assert_eq!(generation::n(Some(1), 16).unwrap(), 1);
    assert_eq!(generation::n(Some(16), 16).unwrap(), 16);
    assert_rejected(
        generation::n(Some(0), 16),
        "n",
        "n must be in [1, 16], got 0",
    );
    assert_rejected(
        generation::n(Some(17), 16),
        "n",
        "n must be in [1, 16], got 17",
    );
    let r = completions(json!({"n": LIMITS.max_n})).unwrap();
    assert_eq!(r.n, LIMITS.max_n);
    assert_eq!(
        r.batch_rows(),
        LIMITS.max_n,
        "plain sampling decodes n rows"
    );
    assert_rejected(completions(json!({"n": LIMITS.max_n + 1})), "n", "got 17");
    assert_rejected(chat(json!({"n": 0})), "n", "got 0");
}

// ---- logprobs, echo -----------------------------------------------------------------------

#[test]
fn logprobs_takes_zero_or_a_flag() {
    for (v, on) in [
        (json!(0), true),
        (json!(true), true),
        (json!(false), false),
        (json!(null), false),
    ] {
        assert_eq!(logprobs(Some(&v), None).unwrap(), on, "logprobs: {v}");
        assert_eq!(
            completions(json!({"logprobs": v})).unwrap().logprobs,
            on,
            "logprobs: {v}"
        );
    }
    assert!(!logprobs(None, None).unwrap());
    assert!(!completions(json!({})).unwrap().logprobs);
    for v in [json!(1), json!(5), json!("yes"), json!(-1)] {
        assert_rejected(
            completions(json!({"logprobs": v})),
            "logprobs",
            "alternatives per token are not supported",
        );
    }
}

#[test]
fn top_logprobs_above_zero_is_rejected() {
    assert!(
        chat(json!({"logprobs": true, "top_logprobs": 0}))
            .unwrap()
            .logprobs
    );
    assert_rejected(
        chat(json!({"logprobs": true, "top_logprobs": 1})),
        "top_logprobs",
        "top_logprobs (alternatives per token) are not supported",
    );
    assert_rejected(
        logprobs(None, Some(1)),
        "top_logprobs",
        "not supported by this server",
    );
}

#[test]
fn echo_is_rejected() {
    assert!(completions(json!({"echo": false})).is_ok());
    assert_rejected(
        completions(json!({"echo": true})),
        "echo",
        "echo is not supported by this server",
    );
}

// ---- min_tokens ---------------------------------------------------------------------------

#[test]
fn min_tokens_is_at_most_max_tokens() {
    assert_eq!(min_tokens(None, None).unwrap(), 0);
    assert_eq!(min_tokens(Some(5), Some(5)).unwrap(), 5);
    // Without max_tokens the bound is checked once the default is known.
    assert_eq!(min_tokens(Some(1000), None).unwrap(), 1000);
    assert_rejected(
        min_tokens(Some(6), Some(5)),
        "min_tokens",
        "min_tokens (6) exceeds max_tokens (5)",
    );
    let r = completions(json!({"min_tokens": 4, "max_tokens": 4})).unwrap();
    assert_eq!(r.stop.min_tokens, 4);
    assert_rejected(
        completions(json!({"min_tokens": 5, "max_tokens": 4})),
        "min_tokens",
        "exceeds max_tokens (4)",
    );
    assert_rejected(
        chat(json!({"min_tokens": 5, "max_completion_tokens": 4})),
        "min_tokens",
        "min_tokens (5) exceeds max_tokens (4)",
    );
}

// ---- best_of and the strategy -------------------------------------------------------------

#[test]
fn best_of_is_at_least_one_and_one_means_plain_sampling() {
    assert_eq!(best_of(None).unwrap(), None);
    assert_eq!(best_of(Some(1)).unwrap(), None);
    assert_eq!(best_of(Some(2)).unwrap(), Some(2));
    assert_rejected(best_of(Some(0)), "best_of", "best_of must be at least 1");
    assert_rejected(completions(json!({"best_of": 0})), "best_of", "at least 1");
    let r = completions(json!({"best_of": 1})).unwrap();
    assert_eq!(r.strategy, None);
    assert_eq!(r.strategy_name(), "none");
}

#[test]
fn best_of_above_one_asks_for_best_of_n_within_n_and_max_n() {
    let r = completions(json!({"best_of": 4})).unwrap();
    assert_eq!(r.strategy, Some(Strategy::BestOfN { candidates: 4 }));
    assert_eq!(r.strategy_name(), "best_of_n");
    assert_eq!(r.batch_rows(), 4);
    assert_eq!(r.n, 1);
    let r = chat(json!({"best_of": 16, "n": 16})).unwrap();
    assert_eq!(r.strategy, Some(Strategy::BestOfN { candidates: 16 }));
    assert_rejected(
        completions(json!({"best_of": 17})),
        "best_of",
        "best_of must be in [n = 1, 16], got 17",
    );
    assert_rejected(
        completions(json!({"best_of": 2, "n": 3})),
        "best_of",
        "best_of must be in [n = 3, 16], got 2",
    );
}

#[test]
fn an_aligned_strategy_without_candidates_draws_eight_within_max_n() {
    let a = json!({"alignment": {"strategy": "best_of_n"}});
    let r = completions(a.clone()).unwrap();
    assert_eq!(r.strategy, Some(Strategy::BestOfN { candidates: 8 }));
    let small = Limits { max_n: 4, ..LIMITS };
    let r = completions_with(a, small).unwrap();
    assert_eq!(r.strategy, Some(Strategy::BestOfN { candidates: 4 }));
    let r = completions(json!({"n": 12, "alignment": {"strategy": "soft_best_of_n"}})).unwrap();
    assert_eq!(r.batch_rows(), 12, "at least n candidates");
    assert_eq!(r.strategy_name(), "soft_best_of_n");
}

#[test]
fn alignment_flags_pass_through_and_score_defaults_to_the_server() {
    let r = completions(json!({"alignment": {"return_candidates": true, "score": true}})).unwrap();
    assert!(r.return_candidates);
    assert!(r.score);
    let plain = Limits {
        score_plain: true,
        ..LIMITS
    };
    assert!(completions_with(json!({}), plain).unwrap().score);
    assert!(
        !completions_with(json!({"alignment": {"score": false}}), plain)
            .unwrap()
            .score
    );
}

// ---- alignment.correct --------------------------------------------------------------------

#[test]
fn correct_takes_a_flag_or_a_mode_name() {
    let mode = |v: Value| correct_mode(Some(&serde_json::from_value(v).unwrap()), false);
    assert_eq!(correct_mode(None, false).unwrap(), CorrectMode::Off);
    assert_eq!(mode(json!(false)).unwrap(), CorrectMode::Off);
    assert_eq!(mode(json!(true)).unwrap(), CorrectMode::On);
    assert_eq!(mode(json!("off")).unwrap(), CorrectMode::Off);
    assert_eq!(mode(json!("on")).unwrap(), CorrectMode::On);
    assert_eq!(mode(json!("guarded")).unwrap(), CorrectMode::Guarded);
    assert_rejected(
        mode(json!("bogus")),
        "alignment.correct",
        "alignment.correct must be true, false or \"guarded\", got \"bogus\"",
    );
    assert_rejected(
        mode(json!("Guarded")),
        "alignment.correct",
        "got \"Guarded\"",
    );

    let r = chat(json!({"alignment": {"correct": "guarded"}})).unwrap();
    assert_eq!(r.correct, CorrectMode::Guarded);
    let r = completions(json!({"alignment": {"correct": true}})).unwrap();
    assert_eq!(r.correct, CorrectMode::On);
    assert_rejected(
        chat(json!({"alignment": {"correct": "bogus"}})),
        "alignment.correct",
        "got \"bogus\"",
    );
}

#[test]
fn a_correction_is_not_streamed() {
    let msg = "alignment.correct cannot be streamed";
    for c in [json!(true), json!("on"), json!("guarded")] {
        assert_rejected(
            chat(json!({"stream": true, "alignment": {"correct": c}})),
            "alignment.correct",
            msg,
        );
    }
    assert_rejected(
        correct_mode(Some(&CorrectInput::Flag(true)), true),
        "alignment.correct",
        msg,
    );
    for c in [json!(false), json!("off")] {
        let r = chat(json!({"stream": true, "alignment": {"correct": c}})).unwrap();
        assert_eq!(r.correct, CorrectMode::Off);
        assert!(r.stream);
    }
}

// ---- streaming ----------------------------------------------------------------------------

#[test]
fn include_usage_only_when_streaming() {
    let usage = |v: Value| chat(v).map(|r| (r.stream, r.include_usage)).unwrap();
    let on = json!({"include_usage": true});
    assert_eq!(
        usage(json!({"stream": true, "stream_options": on})),
        (true, true)
    );
    assert_eq!(
        usage(json!({"stream": false, "stream_options": on})),
        (false, false)
    );
    assert_eq!(usage(json!({"stream_options": on})), (false, false));
    assert_eq!(usage(json!({"stream": true})), (true, false));
    assert_eq!(
        usage(json!({"stream": true, "stream_options": {"include_usage": false}})),
        (true, false)
    );
    assert_eq!(
        usage(json!({"stream": true, "stream_options": {}})),
        (true, false)
    );
}

// ---- defaults -----------------------------------------------------------------------------

#[test]
fn a_body_with_only_a_prompt_gets_every_default() {
    let r = completions(json!({})).unwrap();
    let GenRequest {
        correct,
        logprobs,
        route,
        prompt,
        max_tokens,
        sampling,
        stop,
        n,
        strategy,
        return_candidates,
        score,
        stream,
        include_usage,
        return_token_ids,
        grammar,
        tool_calls,
    } = r.clone();
    assert!(!return_token_ids);
    assert_eq!(grammar, None);
    assert!(!tool_calls);
    assert_eq!(correct, CorrectMode::Off);
    assert!(!logprobs);
    assert_eq!(route, Route::Completions);
    assert_eq!(text_of(&prompt), "hi");
    assert_eq!(max_tokens, None);
    assert_eq!(
        sampling,
        SamplingParams {
            seed: sampling.seed,
            // No `logprobs` in the body: a remote policy is not asked for them.
            token_logprobs: false,
            ..SamplingParams::default()
        }
    );
    assert_eq!(
        (
            sampling.temperature,
            sampling.top_k,
            sampling.top_p,
            sampling.min_p
        ),
        (1.0, 0, 1.0, 0.0)
    );
    assert_eq!(
        (
            sampling.repetition_penalty,
            sampling.frequency_penalty,
            sampling.presence_penalty
        ),
        (1.0, 0.0, 0.0)
    );
    // `max_tokens` is a placeholder until tokenisation resolves the default.
    assert_eq!(
        stop,
        StopConditions {
            max_tokens: 1,
            min_tokens: 0,
            ignore_eos: false,
            stop: vec![],
        }
    );
    assert_eq!(n, 1);
    assert_eq!(strategy, None);
    assert!(!return_candidates);
    assert!(!score);
    assert!(!stream);
    assert!(!include_usage);
    assert_eq!(r.strategy_name(), "none");
    assert_eq!(r.batch_rows(), 1);

    let r = chat(json!({})).unwrap();
    assert_eq!(r.route, Route::Chat);
    assert_eq!(r.max_tokens, None);
    assert_eq!(r.n, 1);
    assert_eq!(r.strategy, None);
}

#[test]
fn ignore_eos_and_the_ignored_fields_pass() {
    let r = completions(json!({"ignore_eos": true, "model": "any", "user": "u1"})).unwrap();
    assert!(r.stop.ignore_eos);
}

// ---- /v1/rewards --------------------------------------------------------------------------

fn rewards(v: Value) -> Result<Vec<thresh_reward::RewardInput>, ApiError> {
    validate_rewards(serde_json::from_value::<RewardsBody>(v).expect("the body deserialises"))
}

fn pairs(k: usize) -> Value {
    json!({"input": (0..k)
        .map(|i| json!({"prompt": format!("q{i}"), "response": format!("a{i}")}))
        .collect::<Vec<_>>()})
}

#[test]
fn rewards_take_one_to_1024_pairs() {
    let r = rewards(pairs(1)).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].prompt, Prompt::Text("q0".into()));
    assert_eq!(r[0].response, "a0");
    let r = rewards(pairs(1024)).unwrap();
    assert_eq!(r.len(), 1024);
    assert_eq!(r[1023].prompt, Prompt::Text("q1023".into()));
    assert_rejected(
        rewards(pairs(0)),
        "input",
        "input must hold 1 to 1024 pairs, got 0",
    );
    assert_rejected(
        rewards(pairs(1025)),
        "input",
        "input must hold 1 to 1024 pairs, got 1025",
    );
}

#[test]
fn each_reward_pair_has_exactly_one_non_empty_prompt() {
    let one = |pair: Value| rewards(json!({"input": [{"prompt": "ok", "response": "r"}, pair]}));
    assert_rejected(
        one(json!({"prompt": "", "response": "r"})),
        "input[1].prompt",
        "the prompt must not be empty",
    );
    assert_rejected(
        one(json!({"prompt": " \n\t", "response": "r"})),
        "input[1].prompt",
        "must not be empty",
    );
    assert_rejected(
        one(
            json!({"prompt": "q", "messages": [{"role": "user", "content": "q"}], "response": "r"}),
        ),
        "input[1]",
        "each pair needs exactly one of prompt or messages",
    );
    assert_rejected(
        one(json!({"response": "r"})),
        "input[1]",
        "exactly one of prompt or messages",
    );
    // The response may be empty: it is scored as it is.
    assert_eq!(
        one(json!({"prompt": "q", "response": ""})).unwrap()[1].response,
        ""
    );
}

#[test]
fn reward_messages_are_checked_like_chat_messages() {
    let r = rewards(json!({"input": [{"messages": [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ], "response": "hello"}]}))
    .unwrap();
    assert_eq!(
        r[0].prompt,
        Prompt::Messages(vec![
            ChatMessage::new("system", "be brief"),
            ChatMessage::new("user", "hi"),
        ])
    );
    assert_rejected(
        rewards(
            json!({"input": [{"messages": [{"role": "robot", "content": "hi"}], "response": "r"}]}),
        ),
        "input[0].messages[0].role",
        "got \"robot\"",
    );
    assert_rejected(
        rewards(json!({"input": [{"messages": [], "response": "r"}]})),
        "input[0].messages",
        "input[0].messages must hold at least one message",
    );
    assert_rejected(
        rewards(json!({"input": [{"messages": [
            {"role": "system", "content": " "},
            {"role": "user", "content": null},
        ], "response": "r"}]})),
        "input[0].messages",
        "input[0].messages must not all be empty",
    );
}

// ---- /correct -----------------------------------------------------------------------------

const CONTEXT: usize = 1024;

fn correct(v: Value) -> Result<CorrectResult, ApiError> {
    validate(
        serde_json::from_value::<CorrectBody>(v).expect("the body deserialises"),
        CONTEXT,
    )
}

type CorrectResult = (
    Vec<thresh_aligner::CorrectionInput>,
    SamplingParams,
    StopConditions,
);

/// One pair `{"question": "q", "answer": "a"}` plus `extra`.
fn correct_one(extra: Value) -> Result<CorrectResult, ApiError> {
    correct(merged(json!({"question": "q", "answer": "a"}), extra))
}

fn correct_pairs(k: usize) -> Value {
    json!({"inputs": (0..k)
        .map(|i| json!({"question": format!("q{i}"), "answer": format!("a{i}")}))
        .collect::<Vec<_>>()})
}

#[test]
fn correct_takes_one_pair_with_greedy_defaults() {
    let (inputs, sampling, stop) = correct_one(json!({})).unwrap();
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0].question, Prompt::Text("q".into()));
    assert_eq!(inputs[0].answer, "a");
    assert_eq!(
        sampling,
        SamplingParams {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            ..SamplingParams::default()
        }
    );
    assert_eq!(
        stop,
        StopConditions {
            max_tokens: 256,
            ..StopConditions::default()
        }
    );
    let (_, sampling, stop) = correct_one(json!({
        "max_tokens": 9, "temperature": 0.7, "top_p": 0.9, "top_k": 5, "seed": 3,
    }))
    .unwrap();
    assert_eq!(stop.max_tokens, 9);
    assert_eq!(
        (
            sampling.temperature,
            sampling.top_p,
            sampling.top_k,
            sampling.seed
        ),
        (0.7, 0.9, 5, 3)
    );
}

#[test]
fn correct_takes_a_pair_or_a_batch_not_both_nor_neither() {
    let mut both = correct_pairs(1);
    both["question"] = json!("q");
    both["answer"] = json!("a");
    assert_rejected(
        correct(both),
        "inputs",
        "send either one pair (question, answer) or `inputs`, not both",
    );
    let mut answer_only = correct_pairs(1);
    answer_only["answer"] = json!("a");
    assert_rejected(correct(answer_only), "inputs", "not both");
    assert_rejected(correct(json!({})), "question", "send a pair");
    assert_rejected(
        correct(json!({"question": "q"})),
        "answer",
        "answer is required",
    );
    assert_rejected(
        correct(json!({"answer": "a"})),
        "question",
        "question is required",
    );
    assert_rejected(
        correct(
            json!({"question": "q", "messages": [{"role": "user", "content": "q"}], "answer": "a"}),
        ),
        "question",
        "not both",
    );
}

#[test]
fn correct_questions_and_answers_must_not_be_empty() {
    assert_rejected(
        correct(json!({"question": " ", "answer": "a"})),
        "question",
        "the question must not be empty",
    );
    assert_rejected(
        correct(json!({"question": "q", "answer": "\n"})),
        "answer",
        "the answer must not be empty",
    );
    assert_rejected(
        correct(json!({"messages": [{"role": "user", "content": ""}], "answer": "a"})),
        "messages",
        "messages must not all be empty",
    );
    let (inputs, ..) = correct(json!({
        "messages": [{"role": "developer", "content": "ctx"}, {"role": "user", "content": "q"}],
        "answer": "a",
    }))
    .unwrap();
    assert_eq!(
        inputs[0].question,
        Prompt::Messages(vec![
            ChatMessage::new("system", "ctx"),
            ChatMessage::new("user", "q"),
        ])
    );
}

#[test]
fn correct_batches_hold_one_to_max_pairs() {
    assert_eq!(MAX_PAIRS, 64);
    let (inputs, ..) = correct(correct_pairs(1)).unwrap();
    assert_eq!(inputs.len(), 1);
    let (inputs, ..) = correct(correct_pairs(MAX_PAIRS)).unwrap();
    assert_eq!(inputs.len(), MAX_PAIRS);
    assert_eq!(inputs[63].answer, "a63");
    assert_rejected(
        correct(correct_pairs(0)),
        "inputs",
        "inputs must hold 1 to 64 pairs, got 0",
    );
    assert_rejected(
        correct(correct_pairs(MAX_PAIRS + 1)),
        "inputs",
        "inputs must hold 1 to 64 pairs, got 65",
    );
}

#[test]
fn correct_batch_errors_name_the_pair() {
    let mut b = correct_pairs(3);
    b["inputs"][2]["answer"] = json!("");
    assert_rejected(correct(b), "inputs[2].answer", "must not be empty");
    let mut b = correct_pairs(2);
    b["inputs"][1]["question"] = json!("");
    assert_rejected(correct(b), "inputs[1].question", "must not be empty");
    let b = json!({"inputs": [{"messages": [{"role": "robot", "content": "q"}], "answer": "a"}]});
    assert_rejected(correct(b), "inputs[0].messages[0].role", "got \"robot\"");
    let b = json!({"inputs": [{"answer": "a"}]});
    assert_rejected(correct(b), "inputs[0].question", "question is required");
}

#[test]
fn correct_max_tokens_stays_below_the_aligners_context() {
    assert_eq!(
        correct_one(json!({"max_tokens": 1})).unwrap().2.max_tokens,
        1
    );
    assert_eq!(
        correct_one(json!({"max_tokens": CONTEXT - 1}))
            .unwrap()
            .2
            .max_tokens,
        CONTEXT - 1
    );
    let msg = "max_tokens must be between 1 and 1023 (the aligner's context)";
    assert_rejected(correct_one(json!({"max_tokens": 0})), "max_tokens", msg);
    assert_rejected(
        correct_one(json!({"max_tokens": CONTEXT})),
        "max_tokens",
        "got 1024",
    );
    // The default 256 does not fit a 256-token context.
    let body = serde_json::from_value::<CorrectBody>(json!({"question": "q", "answer": "a"}));
    assert_rejected(
        validate(body.unwrap(), 256),
        "max_tokens",
        "between 1 and 255",
    );
}

#[test]
fn correct_temperature_and_top_p_ranges() {
    for t in [0.0, 1.0, 2.0] {
        let (_, s, _) = correct_one(json!({"temperature": t})).unwrap();
        assert_eq!(s.temperature, t as f32);
    }
    for t in [-0.1, 2.01] {
        assert_rejected(
            correct_one(json!({"temperature": t})),
            "temperature",
            "temperature must be between 0 and 2",
        );
    }
    for p in [1e-6, 0.5, 1.0] {
        let (_, s, _) = correct_one(json!({"top_p": p})).unwrap();
        assert_eq!(s.top_p, p as f32);
    }
    for p in [0.0, -0.1, 1.01] {
        assert_rejected(
            correct_one(json!({"top_p": p})),
            "top_p",
            "top_p must be in (0, 1]",
        );
    }
}

#[test]
fn correct_is_not_streamed() {
    assert!(correct_one(json!({"stream": false})).is_ok());
    assert_rejected(
        correct_one(json!({"stream": true})),
        "stream",
        "streaming is not available on /correct",
    );
    // Checked before anything else.
    assert_rejected(
        correct(json!({"stream": true})),
        "stream",
        "send stream: false",
    );
}

#[test]
fn return_token_ids_is_off_by_default_and_streams_too() {
    assert!(
        completions(json!({"return_token_ids": true}))
            .unwrap()
            .return_token_ids
    );
    assert!(
        !completions(json!({"return_token_ids": false}))
            .unwrap()
            .return_token_ids
    );
    let streamed = completions(json!({"return_token_ids": true, "stream": true})).unwrap();
    assert!(streamed.return_token_ids && streamed.stream);
}

#[test]
fn fields_the_server_does_not_implement_are_rejected_by_name() {
    for (field, fragment) in [
        ("logit_bias", "logit_bias"),
        ("functions", "function calling"),
        ("temprature", "unknown field `temprature`"),
    ] {
        let e = completions(json!({ field: {"type": "json_object"} }));
        assert_rejected(e, field, fragment);
    }
    // Fields ignored on purpose, listed in the README.
    for field in super::generation::IGNORED_FIELDS {
        assert!(
            completions(json!({ *field: {"k": "v"} })).is_ok(),
            "{field}"
        );
    }
    // Keeping the other fields does not loosen the known ones' types.
    assert!(serde_json::from_value::<GenerationBody>(json!({"temperature": "hot"})).is_err());
    assert!(serde_json::from_value::<GenerationBody>(json!({"n": -1})).is_err());
}

#[test]
fn an_open_end_stays_open_when_the_value_rounds_to_it_in_f32() {
    // 5e-324 is above 0 as the client sent it (and valid in the OpenAPI document) but 0 in f32.
    let r = completions(json!({"top_p": 5e-324, "repetition_penalty": 5e-324})).unwrap();
    assert!(r.sampling.top_p > 0.0);
    assert!(r.sampling.repetition_penalty > 0.0);
}

#[test]
fn structured_output_fields_become_one_grammar_named_in_its_errors() {
    use thresh_decoding::Grammar;
    let g = |body: serde_json::Value| completions(body).unwrap().grammar;
    assert_eq!(g(json!({"response_format": {"type": "text"}})), None);
    let object = g(json!({"response_format": {"type": "json_object"}})).unwrap();
    assert_eq!(object.field, "response_format");
    assert_eq!(
        object.grammar,
        Grammar::JsonSchema(json!({"type": "object"}))
    );
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    let named = g(json!({"response_format": {"type": "json_schema",
        "json_schema": {"name": "a", "schema": schema, "strict": true}}}))
    .unwrap();
    assert_eq!(named.grammar, Grammar::JsonSchema(schema.clone()));
    // vLLM's guided_json takes the schema or the schema as a string.
    let as_text = g(json!({"guided_json": schema.to_string()})).unwrap();
    assert_eq!(
        (as_text.field, as_text.grammar),
        ("guided_json", Grammar::JsonSchema(schema))
    );
    assert_eq!(
        g(json!({"guided_regex": "[0-9]+"})).unwrap().grammar,
        Grammar::Regex("[0-9]+".into())
    );
    assert_eq!(
        g(json!({"guided_choice": ["yes", "no"]})).unwrap().grammar,
        Grammar::Choice(vec!["yes".into(), "no".into()])
    );
    for (body, field, fragment) in [
        (
            json!({"response_format": {"type": "json_schema"}}),
            "response_format.json_schema",
            "needs json_schema",
        ),
        (
            json!({"response_format": {"type": "json_object", "json_schema": {"name": "a"}}}),
            "response_format.json_schema",
            "belongs to",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "", "schema": {}}}}),
            "response_format.json_schema.name",
            "1 to 64",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": 3}}}),
            "response_format.json_schema.schema",
            "schema object",
        ),
        (
            json!({"guided_json": "{not json"}),
            "guided_json",
            "not JSON",
        ),
        (
            json!({"guided_regex": " "}),
            "guided_regex",
            "must not be empty",
        ),
        (
            json!({"guided_choice": []}),
            "guided_choice",
            "at least one",
        ),
        (
            json!({"response_format": {"type": "json_object"}, "guided_regex": "a"}),
            "guided_regex",
            "both constrain",
        ),
    ] {
        assert_rejected(completions(body), field, fragment);
    }
    // An unknown type or key is refused while parsing, not ignored.
    assert!(
        serde_json::from_value::<GenerationBody>(json!({"response_format": {"type": "xml"}}))
            .is_err()
    );
    assert!(
        serde_json::from_value::<GenerationBody>(
            json!({"response_format": {"type": "json_object", "extra": 1}})
        )
        .is_err()
    );
}
