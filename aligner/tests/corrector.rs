//! The corrector end to end on a tiny random Llama (byte tokenizer) and on the real SmolLM2 as
//! a stand-in corrector, with the real MiniLM relevance reward for guarded correction.

use std::sync::Arc;

use thresh_aligner::{AlignerError, AlignerTemplate, CorrectionInput, Corrector};
use thresh_decoding::{SamplingParams, StopConditions};
use thresh_models::testing::{BYTE_TOKENIZER_VOCAB, TinySpec, write_byte_tokenizer};
use thresh_models::{ChatMessage, Family, LoadOptions, load};
use thresh_reward::{Prompt, RelevanceReward, RewardInput, RewardModel};

fn tiny(dir: &std::path::Path) -> Corrector {
    tiny_of(Family::Llama, dir)
}

fn tiny_of(family: Family, dir: &std::path::Path) -> Corrector {
    let mut spec = TinySpec::new(family);
    spec.vocab_size = BYTE_TOKENIZER_VOCAB;
    spec.max_position_embeddings = 256;
    spec.write(dir).unwrap();
    write_byte_tokenizer(dir).unwrap();
    let m = load(dir.to_str().unwrap(), &LoadOptions::default()).unwrap();
    Corrector::new(Arc::new(m), AlignerTemplate::Current)
}

fn greedy() -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        ..Default::default()
    }
}

fn stop(max_tokens: usize) -> StopConditions {
    StopConditions {
        max_tokens,
        ignore_eos: true,
        ..Default::default()
    }
}

#[test]
fn tiny_llama_batch_equals_single_and_counts_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let c = tiny(dir.path());
    let a = CorrectionInput::new("Is the sky green?", "Yes, always.");
    let b = CorrectionInput::new("Name a prime.", "Four.");
    let both = c
        .correct(&[a.clone(), b.clone()], &greedy(), &stop(12), None)
        .unwrap();
    let only_b = c
        .correct(std::slice::from_ref(&b), &greedy(), &stop(12), None)
        .unwrap();
    assert_eq!(both.len(), 2);
    assert_eq!(both[1].text, only_b[0].text);
    assert_eq!(both[1].completion_tokens, 12);
    // The prompt is the rendered template, byte-tokenised.
    let rendered = AlignerTemplate::Current.render("Is the sky green?", "Yes, always.");
    let ids = c.tokenizer().encode(&rendered, true).unwrap();
    assert_eq!(both[0].prompt_tokens, ids.len());
    assert_eq!(c.prompt_ids(&a, 12).unwrap(), ids);
    // Another template renders another prompt.
    let v1 = Corrector::new(
        Arc::new(load(dir.path().to_str().unwrap(), &LoadOptions::default()).unwrap()),
        AlignerTemplate::V1,
    );
    assert_ne!(v1.prompt_ids(&a, 12).unwrap(), ids);
}

#[test]
fn tiny_gemma_corrector_runs_the_v1_template() {
    // Released Aligners are Llama-2 and Gemma based; Gemma runs on the same decoder.
    let dir = tempfile::tempdir().unwrap();
    let c = tiny_of(Family::Gemma, dir.path());
    assert!(
        c.model()
            .expect("loaded here")
            .decoder
            .config()
            .scale_embeddings
    );
    let c = Corrector::new(
        Arc::new(load(dir.path().to_str().unwrap(), &LoadOptions::default()).unwrap()),
        AlignerTemplate::V1,
    );
    let input = CorrectionInput::new("Is fire cold?", "Yes.");
    let out = c
        .correct(std::slice::from_ref(&input), &greedy(), &stop(6), None)
        .unwrap();
    assert_eq!(out[0].completion_tokens, 6);
    let ids = c
        .tokenizer()
        .encode(&AlignerTemplate::V1.render("Is fire cold?", "Yes."), true)
        .unwrap();
    assert_eq!(out[0].prompt_tokens, ids.len());
}

#[test]
fn bad_inputs_are_rejected_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let c = tiny(dir.path());
    let ok = CorrectionInput::new("q", "a");
    let cases = [
        (CorrectionInput::new("  ", "a"), "question"),
        (CorrectionInput::new("q", ""), "answer"),
        (CorrectionInput::new("q", "x".repeat(300)), "context of 256"),
    ];
    for (bad, needle) in cases {
        // The valid first pair must not be generated either: validation covers the batch.
        let e = c
            .correct(&[ok.clone(), bad], &greedy(), &stop(8), None)
            .unwrap_err();
        assert!(matches!(e, AlignerError::InvalidInput(_)), "{e}");
        assert!(e.to_string().contains(needle), "{e}");
    }
    let e = c.correct(&[], &greedy(), &stop(8), None).unwrap_err();
    assert!(e.to_string().contains("at least one"), "{e}");
}

#[test]
fn chat_messages_become_the_question() {
    let single = CorrectionInput {
        question: Prompt::Messages(vec![ChatMessage::new("user", "Why is the sea salty?")]),
        answer: "Fish.".into(),
    };
    assert_eq!(single.question_text(), "Why is the sea salty?");
    let multi = CorrectionInput {
        question: Prompt::Messages(vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Why is the sea salty?"),
        ]),
        answer: "Fish.".into(),
    };
    assert_eq!(
        multi.question_text(),
        "system: Be brief.\nuser: Why is the sea salty?"
    );
}

#[test]
fn smollm2_corrects_and_the_guard_keeps_the_better_answer() {
    let p = thresh_models::testing::smollm2_gguf();
    let m = load(p.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let c = Corrector::new(Arc::new(m), AlignerTemplate::Current);
    let reward = RelevanceReward::load(
        &thresh_models::testing::minilm_dir(),
        &thresh_models::Device::Cpu,
    )
    .unwrap();
    let input = CorrectionInput::new(
        "What is the capital of France?",
        "I like turtles and the colour blue.",
    );
    let stop = StopConditions {
        max_tokens: 24,
        ..Default::default()
    };
    let first = c
        .correct(std::slice::from_ref(&input), &greedy(), &stop, None)
        .unwrap();
    let again = c
        .correct(std::slice::from_ref(&input), &greedy(), &stop, None)
        .unwrap();
    assert!(!first[0].text.is_empty());
    assert!(first[0].completion_tokens <= 24);
    assert_eq!(
        first[0].text, again[0].text,
        "greedy correction is deterministic"
    );
    assert!(!first[0].text.starts_with(' '));

    let batch = c
        .correct_guarded(
            std::slice::from_ref(&input),
            &reward,
            &greedy(),
            &stop,
            None,
        )
        .unwrap();
    let g = &batch.items[0];
    assert_eq!(g.correction.text, first[0].text);
    // The scores are the reward model's own, and the higher one wins.
    let direct = reward
        .score(&[
            RewardInput::new(input.question_text(), input.answer.clone()),
            RewardInput::new(input.question_text(), g.correction.text.clone()),
        ])
        .unwrap();
    assert!((direct[0].score - g.original_score).abs() < 1e-5);
    let corrected = g.corrected_score.expect("a non-empty correction is scored");
    assert!((direct[1].score - corrected).abs() < 1e-5);
    assert_eq!(g.use_corrected, corrected >= g.original_score);
    assert_eq!(
        batch.reward_tokens,
        direct.iter().map(|s| s.tokens).sum::<usize>()
    );
    // An answer that is the question itself is as relevant as text gets: it stays.
    let perfect = CorrectionInput::new(
        "Paris is the capital of France.",
        "Paris is the capital of France.",
    );
    // A batch: the pairs keep their order and their own scores; an empty answer is corrected
    // (as the placeholder) and scored as the empty text it is.
    let empty = CorrectionInput::new("What is the capital of France?", "  ");
    let batch = c
        .correct_guarded(
            &[perfect.clone(), input.clone(), empty.clone()],
            &reward,
            &greedy(),
            &stop,
            None,
        )
        .unwrap();
    assert_eq!(batch.items.len(), 3);
    let g = &batch.items[0];
    assert!(g.original_score > 0.99, "{}", g.original_score);
    assert_eq!(
        g.use_corrected,
        g.corrected_score.is_some_and(|s| s >= g.original_score)
    );
    assert_eq!(batch.items[1].correction.text, first[0].text);
    let placeholder = c
        .correct(
            &[CorrectionInput::new(
                empty.question_text(),
                thresh_aligner::NO_ANSWER,
            )],
            &greedy(),
            &stop,
            None,
        )
        .unwrap();
    assert_eq!(batch.items[2].correction.text, placeholder[0].text);
    let empty_score = reward
        .score(&[RewardInput::new(empty.question_text(), "  ")])
        .unwrap()[0]
        .score;
    assert!((batch.items[2].original_score - empty_score).abs() < 1e-5);
    for g in &batch.items {
        assert_eq!(
            g.corrected_score.is_none(),
            g.correction.text.trim().is_empty()
        );
    }
}
