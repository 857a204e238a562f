//! Constrained decoding on the real SmolLM2 policy: JSON schemas (objects, enums, arrays,
//! nested), regular expressions and choices, plain and under Best-of-4 and Speculative
//! Rejection; every finished answer parses and validates, the same seed gives the same answer,
//! and the grammar state survives pruning.

mod common;

use std::sync::OnceLock;

use common::{chat_ids, policy, relevance, strategy_input};
use serde_json::{Value, json};
use thresh_decoding::strategy::{
    Fate, Rejection, Schedule, SpeculativeParams, best_of_n, speculative_rejection,
};
use thresh_decoding::{
    ConstraintCompiler, DecodeBatch, DecodeError, FinishReason, Grammar, SamplingParams,
    StopConditions,
};

fn compiler() -> &'static ConstraintCompiler {
    static C: OnceLock<ConstraintCompiler> = OnceLock::new();
    C.get_or_init(|| ConstraintCompiler::new(&policy().tokenizer).unwrap())
}

fn sampled(schema: &Value, seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 0.8,
        top_p: 0.95,
        seed,
        constraint: Some(
            compiler()
                .compile(&Grammar::JsonSchema(schema.clone()))
                .unwrap(),
        ),
        ..Default::default()
    }
}

fn name() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 16})
}

/// Twenty requests for structured answers, with schemas bounded so that an answer fits in
/// `MAX_TOKENS` (strings and arrays have maximum lengths).
fn cases() -> Vec<(&'static str, Value)> {
    let obj = |props: Value, required: Vec<&str>| {
        json!({"type": "object", "properties": props, "required": required,
               "additionalProperties": false})
    };
    vec![
        (
            "Describe a cat as JSON.",
            obj(
                json!({"name": name(), "age": {"type": "integer", "minimum": 0, "maximum": 30}}),
                vec!["name", "age"],
            ),
        ),
        (
            "Give me a colour.",
            obj(
                json!({"colour": {"enum": ["red", "green", "blue"]}}),
                vec!["colour"],
            ),
        ),
        (
            "Is the sky blue?",
            obj(json!({"answer": {"type": "boolean"}}), vec!["answer"]),
        ),
        (
            "List three fruits.",
            obj(
                json!({"fruits": {"type": "array", "items": name(), "minItems": 3, "maxItems": 3}}),
                vec!["fruits"],
            ),
        ),
        (
            "What is 2 + 2?",
            obj(json!({"result": {"type": "integer"}}), vec!["result"]),
        ),
        (
            "Name a city and its country.",
            obj(
                json!({"city": name(), "country": name()}),
                vec!["city", "country"],
            ),
        ),
        (
            "Rate this movie from 1 to 5.",
            obj(
                json!({"stars": {"type": "integer", "minimum": 1, "maximum": 5}, "liked": {"type": "boolean"}}),
                vec!["stars", "liked"],
            ),
        ),
        (
            "Describe a person.",
            obj(
                json!({"person": obj(json!({"first": name(), "last": name()}), vec!["first", "last"])}),
                vec!["person"],
            ),
        ),
        (
            "Pick a day of the week.",
            json!({"enum": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]}),
        ),
        (
            "Give two numbers.",
            json!({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 100}, "minItems": 2, "maxItems": 2}),
        ),
        (
            "What is the temperature today?",
            obj(
                json!({"celsius": {"type": "number", "minimum": -50, "maximum": 60}}),
                vec!["celsius"],
            ),
        ),
        (
            "Describe a book.",
            obj(
                json!({"title": name(), "pages": {"type": "integer", "minimum": 1, "maximum": 2000}, "genre": {"enum": ["fiction", "science", "history"]}}),
                vec!["title", "pages", "genre"],
            ),
        ),
        (
            "Give a to-do list.",
            obj(
                json!({"items": {"type": "array", "items": obj(json!({"task": name(), "done": {"type": "boolean"}}), vec!["task", "done"]), "minItems": 1, "maxItems": 2}}),
                vec!["items"],
            ),
        ),
        (
            "Say hello.",
            obj(
                json!({"greeting": {"const": "hello"}, "to": name()}),
                vec!["greeting", "to"],
            ),
        ),
        (
            "What is your mood?",
            obj(
                json!({"mood": {"enum": ["happy", "sad"]}, "reason": name()}),
                vec!["mood", "reason"],
            ),
        ),
        (
            "Give a point in 2D.",
            obj(
                json!({"x": {"type": "integer", "minimum": -10, "maximum": 10}, "y": {"type": "integer", "minimum": -10, "maximum": 10}}),
                vec!["x", "y"],
            ),
        ),
        (
            "Name an animal, or nothing.",
            obj(
                json!({"animal": {"anyOf": [name(), {"type": "null"}]}}),
                vec!["animal"],
            ),
        ),
        (
            "Describe the weather.",
            obj(
                json!({"sky": {"enum": ["clear", "cloudy", "rain"]}, "wind": obj(json!({"kmh": {"type": "integer", "minimum": 0, "maximum": 200}}), vec!["kmh"])}),
                vec!["sky", "wind"],
            ),
        ),
        (
            "Give tags for a photo of a beach.",
            obj(
                json!({"tags": {"type": "array", "items": {"enum": ["sea", "sand", "sun", "people"]}, "minItems": 1, "maxItems": 3}}),
                vec!["tags"],
            ),
        ),
        (
            "Is 7 a prime number? Answer with a reason.",
            obj(
                json!({"prime": {"type": "boolean"}, "why": name()}),
                vec!["prime", "why"],
            ),
        ),
    ]
}

const MAX_TOKENS: usize = 160;

fn assert_valid(schema: &Value, text: &str, what: &str) {
    let value: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: {text:?} is not JSON: {e}"));
    let validator = jsonschema::validator_for(schema).unwrap();
    assert!(
        validator.is_valid(&value),
        "{what}: {text} does not follow {schema}"
    );
}

fn plain(ids: &[u32], params: &SamplingParams) -> (String, FinishReason) {
    let m = policy();
    let stop = StopConditions {
        max_tokens: MAX_TOKENS,
        ..Default::default()
    };
    let mut batch = DecodeBatch::new(&m.decoder, &m.tokenizer, ids, 1, params, &stop).unwrap();
    batch.run_to_end().unwrap();
    let (rows, _) = batch.into_parts();
    (rows[0].text.clone(), rows[0].finish.clone().unwrap())
}

#[test]
fn every_answer_follows_its_schema_plain_best_of_4_and_speculative_rejection() {
    for (i, (question, schema)) in cases().into_iter().enumerate() {
        let ids = chat_ids(policy(), question);
        let params = sampled(&schema, 100 + i as u64);
        let (text, finish) = plain(&ids, &params);
        assert_eq!(finish, FinishReason::Eos, "case {i}: {text}");
        assert_valid(&schema, &text, &format!("case {i} plain"));

        let input = strategy_input(&ids, question, MAX_TOKENS, params.clone());
        let bon = best_of_n(&input, relevance(), 4).unwrap();
        for c in bon.candidates.as_ref().unwrap() {
            assert_eq!(
                c.fate,
                Fate::Finished,
                "case {i} best-of-4 row {}: {}",
                c.row,
                c.text
            );
            assert_valid(
                &schema,
                &c.text,
                &format!("case {i} best-of-4 row {}", c.row),
            );
        }
        assert_valid(&schema, &bon.best[0].text, &format!("case {i} best-of-4"));

        let sr_params = SpeculativeParams {
            rejection: Rejection::Fixed(0.5),
            kv_budget_tokens: 8 * (ids.len() + MAX_TOKENS),
            max_batch: 8,
            initial_batch: Some(8),
            schedule: Some(Schedule::Tokens(vec![6])),
        };
        let sr = speculative_rejection(&input, relevance(), &sr_params).unwrap();
        let finished: Vec<_> = sr
            .candidates
            .as_ref()
            .unwrap()
            .iter()
            .filter(|c| !matches!(c.fate, Fate::Pruned { .. }))
            .collect();
        assert!(!finished.is_empty());
        for c in finished {
            assert_eq!(
                c.fate,
                Fate::Finished,
                "case {i} SR row {}: {}",
                c.row,
                c.text
            );
            assert_valid(&schema, &c.text, &format!("case {i} SR row {}", c.row));
        }
        assert_valid(&schema, &sr.best[0].text, &format!("case {i} SR"));
    }
}

#[test]
fn the_same_seed_gives_the_same_structured_answer() {
    let (question, schema) = &cases()[0];
    let ids = chat_ids(policy(), question);
    let a = plain(&ids, &sampled(schema, 7));
    let b = plain(&ids, &sampled(schema, 7));
    assert_eq!(a, b);
    // A fresh compile of the same grammar does not change the draw either.
    let c = plain(&ids, &sampled(&schema.clone(), 7));
    assert_eq!(a, c);
}

#[test]
fn pruned_batches_keep_each_survivors_grammar_state() {
    let m = policy();
    let (question, schema) = &cases()[12];
    let ids = chat_ids(m, question);
    let stop = StopConditions {
        max_tokens: MAX_TOKENS,
        ..Default::default()
    };
    let params = sampled(schema, 3);
    let mut batch = DecodeBatch::new(&m.decoder, &m.tokenizer, &ids, 6, &params, &stop).unwrap();
    for _ in 0..5 {
        batch.step().unwrap();
    }
    // Drop rows 0, 2 and 4: the cache slots of 1, 3 and 5 move, their grammar states with them.
    let drop: Vec<usize> = batch
        .active_rows()
        .iter()
        .copied()
        .filter(|r| r % 2 == 0)
        .collect();
    batch.prune(&drop).unwrap();
    batch.run_to_end().unwrap();
    let (rows, _) = batch.into_parts();
    let mut survivors = 0;
    for (r, row) in rows.iter().enumerate() {
        if row.finish == Some(FinishReason::Pruned) {
            continue;
        }
        survivors += 1;
        assert_eq!(row.finish, Some(FinishReason::Eos), "row {r}: {}", row.text);
        assert_valid(schema, &row.text, &format!("survivor {r}"));
    }
    assert!(survivors >= 3);
}

#[test]
fn regexes_choices_and_lark_grammars_hold_whole_answers() {
    let ids = chat_ids(policy(), "What is your phone number?");
    let with = |g: Grammar, seed| SamplingParams {
        constraint: Some(compiler().compile(&g).unwrap()),
        ..sampled(&json!({}), seed)
    };
    for seed in 0..3 {
        let (text, _) = plain(
            &ids,
            &with(Grammar::Regex("[0-9]{3}-[0-9]{4}".into()), seed),
        );
        assert_eq!(text.len(), 8, "{text}");
        assert!(
            text.chars().enumerate().all(|(i, c)| if i == 3 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }),
            "{text}"
        );
        let (text, _) = plain(
            &ids,
            &with(
                Grammar::Choice(vec!["yes".into(), "no".into(), "maybe".into()]),
                seed,
            ),
        );
        assert!(["yes", "no", "maybe"].contains(&text.as_str()), "{text}");
        let lark = r#"start: "call " NUMBER
NUMBER: /[1-9][0-9]{2}/"#;
        let (text, _) = plain(&ids, &with(Grammar::Lark(lark.into()), seed));
        assert!(
            text.starts_with("call ")
                && text[5..]
                    .parse::<u32>()
                    .is_ok_and(|n| (100..1000).contains(&n)),
            "{text}"
        );
    }
    // JSON-object mode: any object, and nothing after it. Under sampling most answers end
    // within the budget; each that does is one object.
    let object = Grammar::JsonSchema(json!({"type": "object"}));
    let ids = chat_ids(policy(), "Describe a dog as JSON.");
    let mut ended = 0;
    for seed in 0..4 {
        let (text, finish) = plain(&ids, &with(object.clone(), seed));
        if finish == FinishReason::Eos {
            ended += 1;
            assert!(
                serde_json::from_str::<Value>(&text).unwrap().is_object(),
                "{text}"
            );
        } else {
            assert_eq!(finish, FinishReason::Length);
            assert!(text.starts_with('{'), "{text}");
        }
    }
    assert!(
        ended >= 2,
        "only {ended} of 4 objects ended within {MAX_TOKENS} tokens"
    );
}

#[test]
fn invalid_grammars_are_refused_with_the_reason() {
    for bad in [
        Grammar::JsonSchema(json!({"type": "object", "properties": {"a": {"type": "nonsense"}}})),
        Grammar::Regex("(unclosed".into()),
        Grammar::Lark("start: undefined_rule".into()),
        Grammar::Choice(vec![]),
    ] {
        match compiler().compile(&bad) {
            Err(DecodeError::InvalidGrammar(why)) => assert!(!why.is_empty()),
            other => panic!(
                "{bad:?}: expected InvalidGrammar, got {:?}",
                other.map(|_| ())
            ),
        }
    }
}
