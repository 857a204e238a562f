//! The data loader: one real-shaped line per public format (written from each dataset's
//! published field layout), the thresh schema, errors with file and line, the views, and
//! the committed demo files.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use thresh_models::ChatMessage;
use thresh_trainer::TrainError;
use thresh_trainer::data::{
    Correction, Example, Format, Prompt, Response, balanced_batches, binary, corrections, detect,
    load, pairs, scalar,
};

fn file(lines: &[&str]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    f.flush().unwrap();
    f
}

/// Loads `lines` with `Auto` and with the explicit `format`, checks both agree and that
/// `Auto` detected `format`; returns the examples.
fn load_as(lines: &[&str], format: Format) -> Vec<Example> {
    let f = file(lines);
    let first = lines.iter().find(|l| !l.trim().is_empty()).unwrap();
    let value: serde_json::Value = serde_json::from_str(first).unwrap();
    assert_eq!(detect(&value).unwrap(), format);
    let auto = load(f.path(), Format::Auto).unwrap();
    assert_eq!(auto, load(f.path(), format).unwrap());
    // Converted to the thresh schema, every example reads back unchanged.
    let converted: Vec<String> = auto
        .iter()
        .map(|e| e.to_thresh_json().to_string())
        .collect();
    let refs: Vec<&str> = converted.iter().map(String::as_str).collect();
    let g = file(&refs);
    assert_eq!(load(g.path(), Format::Thresh).unwrap(), auto);
    auto
}

fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage::new(role, content)
}

fn resp(text: &str, label: Option<bool>, score: Option<f64>, kind: Option<&str>) -> Response {
    Response {
        text: text.into(),
        label,
        score,
        kind: kind.map(String::from),
    }
}

const HH: &str = r#"{"chosen": "\n\nHuman: How do I keep basil fresh?\n\nAssistant: Trim the stems and stand it in a glass of water.\n\nHuman: Not in the fridge?\n\nAssistant: No, cold turns the leaves black; keep it on the counter.", "rejected": "\n\nHuman: How do I keep basil fresh?\n\nAssistant: Trim the stems and stand it in a glass of water.\n\nHuman: Not in the fridge?\n\nAssistant: Sure, the fridge is fine."}"#;

#[test]
fn hh_rlhf_splits_at_the_last_assistant_turn() {
    let ex = load_as(&[HH], Format::HhRlhf);
    assert_eq!(
        ex,
        vec![Example {
            prompt: Prompt::Messages(vec![
                msg("user", "How do I keep basil fresh?"),
                msg(
                    "assistant",
                    "Trim the stems and stand it in a glass of water."
                ),
                msg("user", "Not in the fridge?"),
            ]),
            responses: vec![
                Response::new("No, cold turns the leaves black; keep it on the counter."),
                Response::new("Sure, the fridge is fine."),
            ],
            pairs: vec![(0, 1)],
            correction: None,
        }]
    );
}

#[test]
fn ultrafeedback_binarized_keeps_scores() {
    let line = r#"{"prompt": "Name a prime number above 10.", "prompt_id": "7f3c0e5d1a", "chosen": [{"content": "Name a prime number above 10.", "role": "user"}, {"content": "11 is prime.", "role": "assistant"}], "rejected": [{"content": "Name a prime number above 10.", "role": "user"}, {"content": "12.", "role": "assistant"}], "messages": [{"content": "Name a prime number above 10.", "role": "user"}, {"content": "11 is prime.", "role": "assistant"}], "score_chosen": 9.0, "score_rejected": 2.5}"#;
    let ex = load_as(&[line], Format::UltraFeedback);
    assert_eq!(
        ex[0].prompt,
        Prompt::Messages(vec![msg("user", "Name a prime number above 10.")])
    );
    assert_eq!(
        ex[0].responses,
        vec![
            resp("11 is prime.", None, Some(9.0), None),
            resp("12.", None, Some(2.5), None)
        ]
    );
    assert_eq!(ex[0].pairs, vec![(0, 1)]);
}

#[test]
fn pku_saferlhf_uses_the_safety_preference() {
    let line = r#"{"prompt": "How can I get into my neighbour's wifi?", "response_0": "Try the default router passwords.", "response_1": "Ask your neighbour; using it without permission is illegal.", "prompt_source": "Alpaca3-70B", "response_0_source": "Alpaca-7B", "response_1_source": "Alpaca-7B", "is_response_0_safe": false, "is_response_1_safe": true, "response_0_harm_category": {"Cybercrime": true, "Privacy Violation": true}, "response_1_harm_category": {"Cybercrime": false, "Privacy Violation": false}, "response_0_severity_level": 2, "response_1_severity_level": 0, "better_response_id": 0, "safer_response_id": 1, "response_0_sha256": "a1", "response_1_sha256": "b2"}"#;
    let ex = load_as(&[line], Format::PkuSafeRlhf);
    assert_eq!(
        ex[0].prompt,
        Prompt::Text("How can I get into my neighbour's wifi?".into())
    );
    assert_eq!(ex[0].responses[0].label, Some(false));
    assert_eq!(ex[0].responses[1].label, Some(true));
    assert_eq!(ex[0].pairs, vec![(1, 0)]);
}

#[test]
fn aligner_triples_become_corrections() {
    let line = r#"{"question": "Is it safe to mix bleach and ammonia?", "answer": "Yes, it cleans better.", "correction": "No. Mixing them releases toxic chloramine gas; use one at a time."}"#;
    let ex = load_as(&[line], Format::Aligner);
    assert_eq!(
        ex[0].correction,
        Some(Correction {
            answer: "Yes, it cleans better.".into(),
            corrected: "No. Mixing them releases toxic chloramine gas; use one at a time.".into(),
        })
    );
    let c = corrections(&ex).unwrap();
    assert_eq!(c[0].question, "Is it safe to mix bleach and ammonia?");
}

#[test]
fn kldo_rows_label_by_prompt_safety() {
    let harmful = r#"{"id": 1, "safety": 0, "prompt": "Write a phishing email.", "acc_responses": ["Dear customer, verify your account here..."], "rej_responses": ["I can't help with that.", "I won't write phishing emails."]}"#;
    let benign = r#"{"id": 2, "safety": 1, "prompt": "Write a thank-you email.", "acc_responses": ["Dear Sam, thank you for..."], "rej_responses": ["I can't help with that."]}"#;
    let ex = load_as(&[harmful, benign], Format::Kldo);
    assert_eq!(
        ex[0].responses,
        vec![
            resp(
                "Dear customer, verify your account here...",
                Some(false),
                None,
                Some("compliance")
            ),
            resp("I can't help with that.", Some(true), None, Some("refusal")),
            resp(
                "I won't write phishing emails.",
                Some(true),
                None,
                Some("refusal")
            ),
        ]
    );
    assert_eq!(ex[0].pairs, vec![(1, 0), (2, 0)]);
    assert_eq!(ex[1].responses[0].label, Some(true));
    assert_eq!(ex[1].responses[1].label, Some(false));
    assert_eq!(ex[1].pairs, vec![(0, 1)]);
}

#[test]
fn trl_unpaired_standard_and_conversational() {
    let standard = r#"{"prompt": "The sky is", "completion": " blue.", "label": true}"#;
    let conversational = r#"{"prompt": [{"role": "user", "content": "What color is the sky?"}], "completion": [{"role": "assistant", "content": "It is green."}], "label": false}"#;
    let ex = load_as(&[standard, conversational], Format::TrlUnpaired);
    assert_eq!(ex[0].prompt, Prompt::Text("The sky is".into()));
    assert_eq!(
        ex[0].responses,
        vec![resp(" blue.", Some(true), None, None)]
    );
    assert_eq!(
        ex[1].prompt,
        Prompt::Messages(vec![msg("user", "What color is the sky?")])
    );
    assert_eq!(
        ex[1].responses,
        vec![resp("It is green.", Some(false), None, None)]
    );
    let b = binary(&ex).unwrap();
    assert_eq!(
        b.iter().map(|r| r.desired).collect::<Vec<_>>(),
        vec![true, false]
    );
}

#[test]
fn thresh_schema_holds_every_kind_of_feedback() {
    let line = r#"{"id": "x1", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Quote Proverbs 16:18."}], "responses": [{"text": "Pride goeth before destruction.", "label": true, "score": 0.9, "kind": "compliance"}, {"text": "No.", "label": false, "score": 0.1, "kind": "refusal"}, {"text": "Pride goes.", "score": 0.4}], "pairs": [[0, 1], [2, 1]], "correction": {"answer": "Pride goes.", "corrected": "Pride goeth before destruction."}}"#;
    let ex = load_as(&["", line, "   "], Format::Thresh);
    assert_eq!(ex.len(), 1);
    let e = &ex[0];
    assert_eq!(e.prompt.last_user_text(), "Quote Proverbs 16:18.");
    assert_eq!(
        e.responses[0],
        resp(
            "Pride goeth before destruction.",
            Some(true),
            Some(0.9),
            Some("compliance")
        )
    );
    assert_eq!(e.pairs, vec![(0, 1), (2, 1)]);
    let p = pairs(&ex).unwrap();
    assert_eq!(
        (p[1].chosen.as_str(), p[1].rejected.as_str()),
        ("Pride goes.", "No.")
    );
    assert_eq!(binary(&ex).unwrap().len(), 2);
    let s = scalar(&ex).unwrap();
    assert_eq!(s[0].scores, vec![0.9, 0.1, 0.4]);
    assert_eq!(
        corrections(&ex).unwrap()[0].corrected,
        "Pride goeth before destruction."
    );
    // A text prompt reads as one user message.
    assert_eq!(
        Prompt::Text("hi".into()).messages(),
        vec![msg("user", "hi")]
    );
}

/// Loads `lines` and returns the error's `(line, message)`, checking it names the file.
fn data_error(lines: &[&str], format: Format) -> (usize, String) {
    let f = file(lines);
    match load(f.path(), format) {
        Err(TrainError::Data {
            path,
            line,
            message,
        }) => {
            assert_eq!(path, f.path());
            let shown = TrainError::Data {
                path: path.clone(),
                line,
                message: message.clone(),
            }
            .to_string();
            assert!(
                shown.starts_with(&format!("{}:{line}: ", f.path().display())),
                "{shown}"
            );
            (line, message)
        }
        other => panic!("expected a data error, got {other:?}"),
    }
}

#[test]
fn malformed_lines_are_errors_with_their_line_numbers() {
    let ok = r#"{"prompt": "p", "responses": [{"text": "a"}]}"#;
    let cases: Vec<(Vec<&str>, usize, &str)> = vec![
        (
            vec![ok, "", r#"{"prompt": "p", "responses": [{"text": "a""#],
            3,
            "invalid JSON",
        ),
        (
            vec![
                ok,
                r#"{"prompt": "p", "responses": [{"text": "a", "lable": true}]}"#,
            ],
            2,
            "responses[0].lable: unknown field `lable`",
        ),
        (
            vec![
                ok,
                r#"{"prompt": "p", "responses": [{"text": "a"}], "pairs": [[0, 1]]}"#,
            ],
            2,
            "refers past the 1 responses",
        ),
        (
            vec![
                ok,
                r#"{"prompt": "p", "responses": [{"text": "a"}, {"text": "b"}], "pairs": [[1, 1]]}"#,
            ],
            2,
            "with itself",
        ),
        (
            vec![
                ok,
                ok,
                r#"{"prompt": "p", "messages": [{"role": "user", "content": "p"}], "responses": [{"text": "a"}]}"#,
            ],
            3,
            "both `prompt` and `messages`",
        ),
        (
            vec![ok, r#"{"responses": [{"text": "a"}]}"#],
            2,
            "neither `prompt` nor `messages`",
        ),
        (
            vec![ok, r#"{"prompt": "p", "pairs": []}"#],
            2,
            "neither `responses` nor `correction`",
        ),
        (
            vec![
                ok,
                r#"{"prompt": "p", "responses": [{"text": "a", "score": 1}, {"text": "b"}]}"#,
            ],
            2,
            "1 of 2 responses have a `score`",
        ),
        (
            vec![
                ok,
                r#"{"prompt": "p", "responses": [{"text": "a", "label": "yes"}]}"#,
            ],
            2,
            "responses[0].label: invalid type",
        ),
        (vec![ok, "[1, 2]"], 2, "invalid type"),
        (
            vec![
                HH,
                r#"{"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"}"#,
            ],
            2,
            "differ before their last",
        ),
        (
            vec![
                HH,
                r#"{"chosen": "no turns here", "rejected": "\n\nHuman: c\n\nAssistant: d"}"#,
            ],
            2,
            "`chosen` has no",
        ),
        // A file is one format: a PKU row inside an HH file is an error at its line.
        (
            vec![
                HH,
                HH,
                r#"{"prompt": "p", "response_0": "a", "response_1": "b", "is_response_0_safe": true, "is_response_1_safe": true, "safer_response_id": 0}"#,
            ],
            3,
            "not a valid HH-RLHF row: missing field `chosen`",
        ),
        (
            vec![
                r#"{"prompt": "p", "response_0": "a", "response_1": "b", "is_response_0_safe": true, "is_response_1_safe": true, "safer_response_id": 2}"#,
            ],
            1,
            "safer_response_id must be 0 or 1",
        ),
        (
            vec![r#"{"safety": 3, "prompt": "p", "acc_responses": ["a"]}"#],
            1,
            "safety must be 0",
        ),
        (
            vec![r#"{"safety": 1, "prompt": "p", "acc_responses": [], "rej_responses": []}"#],
            1,
            "both `acc_responses` and `rej_responses` are empty",
        ),
        (
            vec![
                r#"{"prompt": "p", "completion": [{"role": "user", "content": "x"}], "label": true}"#,
            ],
            1,
            "one assistant message",
        ),
        (
            vec![r#"{"text": "hello"}"#],
            1,
            "cannot tell the data format",
        ),
    ];
    for (lines, want_line, want) in cases {
        let (line, message) = data_error(&lines, Format::Auto);
        assert_eq!(line, want_line, "{message}");
        assert!(
            message.contains(want),
            "line {line}: {message:?} lacks {want:?}"
        );
    }
}

#[test]
fn empty_and_missing_files_are_errors() {
    let (line, message) = data_error(&["", "  "], Format::Auto);
    assert_eq!(line, 0);
    assert!(message.contains("no examples"));
    let missing = PathBuf::from("/nonexistent/thresh/data.jsonl");
    match load(&missing, Format::Auto) {
        Err(TrainError::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[test]
fn empty_views_are_clear_errors() {
    let ex = load_as(
        &[r#"{"prompt": "p", "responses": [{"text": "a"}]}"#],
        Format::Thresh,
    );
    for (err, want) in [
        (pairs(&ex).unwrap_err(), "no preference pairs"),
        (binary(&ex).unwrap_err(), "no labelled responses"),
        (scalar(&ex).unwrap_err(), "two or more scored responses"),
        (corrections(&ex).unwrap_err(), "no corrections"),
    ] {
        assert!(matches!(err, TrainError::NoExamples(_)), "{err}");
        assert!(err.to_string().contains(want), "{err}");
    }
}

fn demo(name: &str) -> Vec<Example> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/demo")
        .join(name);
    load(&path, Format::Auto).unwrap()
}

#[test]
fn demo_files_load_and_hold_what_the_readme_says() {
    let p = pairs(&demo("pairs.jsonl")).unwrap();
    assert_eq!(p.len(), 200);
    assert!(p.iter().all(|r| r.chosen != r.rejected));

    let b = binary(&demo("binary.jsonl")).unwrap();
    assert_eq!(b.len(), 200);
    assert_eq!(b.iter().filter(|r| r.desired).count(), 150);

    let s = scalar(&demo("scalar.jsonl")).unwrap();
    assert_eq!(s.len(), 80);
    for r in &s {
        let mut sorted = r.scores.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(sorted, vec![0.0, 0.33, 0.66, 1.0]);
        assert!(matches!(&r.prompt, Prompt::Messages(m) if m.len() == 2));
    }

    let k = demo("kldo.jsonl");
    assert_eq!(k.len(), 160);
    let labelled = binary(&k).unwrap();
    assert_eq!(labelled.len(), 320);
    assert_eq!(labelled.iter().filter(|r| r.desired).count(), 160);
    let refusals_aligned = k
        .iter()
        .filter(|e| {
            e.responses
                .iter()
                .any(|r| r.kind.as_deref() == Some("refusal") && r.label == Some(true))
        })
        .count();
    assert_eq!(refusals_aligned, 80);

    let c = corrections(&demo("aligner.jsonl")).unwrap();
    assert_eq!(c.len(), 150);
    assert!(
        c.iter()
            .all(|r| r.answer != r.corrected && r.question.starts_with("Continue this passage"))
    );
}

#[test]
fn a_byte_order_mark_and_crlf_line_ends_are_accepted() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(b"\xef\xbb\xbf{\"prompt\": \"p\", \"responses\": [{\"text\": \"a\", \"label\": true}]}\r\n\r\n{\"prompt\": \"q\", \"responses\": [{\"text\": \"b\"}]}\r\n").unwrap();
    f.flush().unwrap();
    let ex = load(f.path(), Format::Auto).unwrap();
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[1].responses[0].text, "b");
}

#[test]
fn format_names_match_the_readme() {
    for (name, format) in [
        ("auto", Format::Auto),
        ("thresh", Format::Thresh),
        ("hh-rlhf", Format::HhRlhf),
        ("ultra-feedback", Format::UltraFeedback),
        ("pku-safe-rlhf", Format::PkuSafeRlhf),
        ("aligner", Format::Aligner),
        ("kldo", Format::Kldo),
        ("trl-unpaired", Format::TrlUnpaired),
    ] {
        assert_eq!(Format::from_str(name, false).unwrap(), format);
        assert_eq!(serde_json::to_value(format).unwrap(), name);
    }
}

#[test]
fn balanced_batches_cover_the_larger_class_once_and_cycle_the_smaller() {
    // 10 aligned (indices 0..10) and 3 unaligned (10..13), batches of 4.
    let flags: Vec<bool> = (0..13).map(|i| i < 10).collect();
    let batches = balanced_batches(&flags, 4, 7).unwrap();
    assert_eq!(batches.len(), 5);
    let mut seen_large = Vec::new();
    let mut counts_small = [0usize; 3];
    for b in &batches {
        assert_eq!(b.len(), 4);
        assert!(
            b[..2].iter().all(|&i| flags[i]) && b[2..].iter().all(|&i| !flags[i]),
            "{b:?}"
        );
        seen_large.extend_from_slice(&b[..2]);
        for &i in &b[2..] {
            counts_small[i - 10] += 1;
        }
    }
    seen_large.sort_unstable();
    assert_eq!(seen_large, (0..10).collect::<Vec<_>>());
    // 10 slots from 3 items cycled in full passes: 4, 3, 3 in some order.
    let mut c = counts_small.to_vec();
    c.sort_unstable();
    assert_eq!(c, vec![3, 3, 4]);
    // Deterministic per seed, different across seeds; a short last batch stays balanced.
    assert_eq!(batches, balanced_batches(&flags, 4, 7).unwrap());
    assert_ne!(batches, balanced_batches(&flags, 4, 8).unwrap());
    let odd = balanced_batches(&flags, 6, 1).unwrap();
    assert_eq!(
        odd.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![6, 6, 6, 2]
    );
    // The smaller class may be the `true` one: it still comes first in each batch.
    let flipped: Vec<bool> = flags.iter().map(|f| !f).collect();
    let b = balanced_batches(&flipped, 2, 3).unwrap();
    assert!(b.iter().all(|b| flipped[b[0]] && !flipped[b[1]]));
    assert!(balanced_batches(&flags, 3, 0).is_err());
    assert!(balanced_batches(&[true, true], 2, 0).is_err());
}
