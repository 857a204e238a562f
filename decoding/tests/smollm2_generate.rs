//! Generation on the real SmolLM2-135M-Instruct GGUF: reproducible seeds, stop strings, EOS,
//! token limits, pruning and cancellation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use thresh_decoding::{
    DecodeBatch, DecodeError, FinishReason, IncrementalDetokenizer, SamplingParams, StopConditions,
    generate,
};
use thresh_models::{ChatMessage, LoadOptions, LoadedModel, load};

fn model() -> &'static LoadedModel {
    static MODEL: OnceLock<LoadedModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let p = thresh_models::testing::smollm2_gguf();
        load(p.to_str().unwrap(), &LoadOptions::default()).unwrap()
    })
}

fn chat_prompt(q: &str) -> Vec<u32> {
    let m = model();
    let text = m
        .chat_template
        .as_ref()
        .unwrap()
        .render(&[ChatMessage::new("user", q)], true)
        .unwrap();
    m.tokenizer.encode(&text, false).unwrap()
}

fn sampled(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        top_p: 0.95,
        seed,
        ..Default::default()
    }
}

#[test]
fn same_seed_same_samples_and_rows_differ() {
    let m = model();
    let prompt = chat_prompt("Write a short poem about the sea.");
    let stop = StopConditions {
        max_tokens: 24,
        ..Default::default()
    };
    let a = generate(&m.decoder, &m.tokenizer, &prompt, 3, &sampled(42), &stop).unwrap();
    let b = generate(&m.decoder, &m.tokenizer, &prompt, 3, &sampled(42), &stop).unwrap();
    let c = generate(&m.decoder, &m.tokenizer, &prompt, 3, &sampled(43), &stop).unwrap();
    let toks = |g: &thresh_decoding::Generation| {
        g.rows.iter().map(|r| r.tokens.clone()).collect::<Vec<_>>()
    };
    assert_eq!(toks(&a), toks(&b));
    assert_ne!(toks(&a), toks(&c));
    assert_ne!(
        a.rows[0].tokens, a.rows[1].tokens,
        "rows sample independently"
    );
    // Row r with seed s is row 0 with seed s + r, whatever the batch size.
    let single = generate(&m.decoder, &m.tokenizer, &prompt, 1, &sampled(43), &stop).unwrap();
    assert_eq!(single.rows[0].tokens, a.rows[1].tokens);
    // The prompt is prefilled once for all rows.
    assert_eq!(a.stats.prompt_tokens, prompt.len());
}

#[test]
fn eos_and_length_are_honoured() {
    let m = model();
    let prompt = chat_prompt("What is the capital of France?");
    let g = generate(
        &m.decoder,
        &m.tokenizer,
        &prompt,
        1,
        &SamplingParams::greedy(),
        &StopConditions {
            max_tokens: 64,
            ..Default::default()
        },
    )
    .unwrap();
    let row = &g.rows[0];
    assert_eq!(row.finish, Some(FinishReason::Eos), "{row:?}");
    assert!(row.text.contains("Paris"), "{}", row.text);
    assert!(
        row.tokens.iter().all(|t| !m.tokenizer.is_eos(*t)),
        "EOS is not part of the output"
    );
    assert!(!row.text.contains("<|im_end|>"));

    let g = generate(
        &m.decoder,
        &m.tokenizer,
        &prompt,
        2,
        &sampled(1),
        &StopConditions {
            max_tokens: 3,
            ..Default::default()
        },
    )
    .unwrap();
    for r in &g.rows {
        assert!(r.tokens.len() <= 3);
        if r.tokens.len() == 3 {
            assert_eq!(r.finish, Some(FinishReason::Length));
        }
    }
    // ignore_eos keeps going to max_tokens; min_tokens bans EOS until reached.
    let g = generate(
        &m.decoder,
        &m.tokenizer,
        &prompt,
        1,
        &SamplingParams::greedy(),
        &StopConditions {
            max_tokens: 40,
            ignore_eos: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(g.rows[0].tokens.len(), 40);
    assert_eq!(g.rows[0].finish, Some(FinishReason::Length));
    let g = generate(
        &m.decoder,
        &m.tokenizer,
        &prompt,
        1,
        &SamplingParams::greedy(),
        &StopConditions {
            max_tokens: 40,
            min_tokens: 12,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(g.rows[0].tokens.len() >= 12);
}

#[test]
fn stop_strings_cut_the_text_even_across_tokens() {
    let m = model();
    let prompt = chat_prompt("What is the capital of France?");
    let free = generate(
        &m.decoder,
        &m.tokenizer,
        &prompt,
        1,
        &SamplingParams::greedy(),
        &StopConditions {
            max_tokens: 64,
            ..Default::default()
        },
    )
    .unwrap();
    let text = free.rows[0].text.clone();
    let at = text.find("Paris").expect("greedy answer names Paris");
    // "aris" starts inside the token that carries "Paris": the match spans a token boundary
    // or sits inside one token; either way the text ends right before it.
    for stop in ["Paris", "aris", "ris"] {
        let g = generate(
            &m.decoder,
            &m.tokenizer,
            &prompt,
            1,
            &SamplingParams::greedy(),
            &StopConditions {
                max_tokens: 64,
                stop: vec![stop.into(), "never-appears".into()],
                ..Default::default()
            },
        )
        .unwrap();
        let row = &g.rows[0];
        assert_eq!(row.finish, Some(FinishReason::StopString(stop.into())));
        let cut = text.find(stop).unwrap();
        assert_eq!(row.text, text[..cut], "stop {stop:?}");
        assert!(cut <= at + 2);
        assert!(row.tokens.len() < free.rows[0].tokens.len());
    }
}

#[test]
fn detokenizer_never_splits_characters() {
    let m = model();
    let text = "Café ☕ naïve 日本語 🎉 done";
    let ids = m.tokenizer.encode(text, false).unwrap();
    let mut d = IncrementalDetokenizer::new();
    let mut out = String::new();
    for &id in &ids {
        let chunk = d.push(&m.tokenizer, id).unwrap();
        assert!(
            !chunk.contains('\u{FFFD}'),
            "chunk {chunk:?} splits a character"
        );
        out.push_str(&chunk);
    }
    out.push_str(&d.flush(&m.tokenizer).unwrap());
    assert_eq!(out, text);
}

#[test]
fn pruning_releases_rows_and_keeps_survivors_exact() {
    let m = model();
    let prompt = chat_prompt("Tell me about the moon.");
    let stop = StopConditions {
        max_tokens: 16,
        ignore_eos: true,
        ..Default::default()
    };
    let full = generate(&m.decoder, &m.tokenizer, &prompt, 4, &sampled(9), &stop).unwrap();
    let mut b = DecodeBatch::new(&m.decoder, &m.tokenizer, &prompt, 4, &sampled(9), &stop).unwrap();
    for _ in 0..5 {
        b.step().unwrap();
    }
    let bytes = b.cache().bytes_in_use();
    b.prune(&[0, 2]).unwrap();
    assert_eq!(b.cache().bytes_in_use() * 2, bytes);
    assert_eq!(b.active_rows(), &[1, 3]);
    assert!(
        b.prune(&[0]).is_err(),
        "a pruned row cannot be pruned again"
    );
    b.run_to_end().unwrap();
    let (rows, _) = b.into_parts();
    assert_eq!(rows[0].finish, Some(FinishReason::Pruned));
    // Survivors continue exactly as in the unpruned batch.
    assert_eq!(rows[1].tokens, full.rows[1].tokens);
    assert_eq!(rows[3].tokens, full.rows[3].tokens);
}

#[test]
fn cancellation_stops_and_releases() {
    let m = model();
    let prompt = chat_prompt("Count to one hundred.");
    let stop = StopConditions {
        max_tokens: 200,
        ignore_eos: true,
        ..Default::default()
    };
    let mut b = DecodeBatch::new(&m.decoder, &m.tokenizer, &prompt, 2, &sampled(0), &stop).unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    b.set_cancel_flag(flag.clone());
    b.step().unwrap();
    flag.store(true, Ordering::Relaxed);
    assert!(matches!(b.step(), Err(DecodeError::Cancelled)));
    assert_eq!(b.cache().bytes_in_use(), 0);
    assert!(b.is_done());
}

#[test]
fn bad_requests_are_errors() {
    let m = model();
    let prompt = chat_prompt("hi");
    let ok = StopConditions::default();
    let bad_n = generate(&m.decoder, &m.tokenizer, &prompt, 0, &sampled(0), &ok).unwrap_err();
    assert!(bad_n.to_string().contains('n'));
    let bad_p = generate(
        &m.decoder,
        &m.tokenizer,
        &prompt,
        1,
        &SamplingParams {
            top_p: 1.5,
            ..Default::default()
        },
        &ok,
    )
    .unwrap_err();
    assert!(bad_p.to_string().contains("top_p"));
    let long = StopConditions {
        max_tokens: 100_000,
        ..Default::default()
    };
    let e = generate(&m.decoder, &m.tokenizer, &prompt, 1, &sampled(0), &long).unwrap_err();
    assert!(matches!(e, DecodeError::ContextOverflow { .. }), "{e}");
    assert!(generate(&m.decoder, &m.tokenizer, &[], 1, &sampled(0), &ok).is_err());
}

#[test]
fn token_logprobs_align_with_tokens_and_sum_to_the_row_total() {
    let m = model();
    let prompt = chat_prompt("Name three colours.");
    let stop = StopConditions {
        max_tokens: 12,
        ..Default::default()
    };
    let g = generate(&m.decoder, &m.tokenizer, &prompt, 3, &sampled(5), &stop).unwrap();
    for row in &g.rows {
        assert_eq!(row.token_logprobs.len(), row.tokens.len());
        assert!(
            row.token_logprobs
                .iter()
                .all(|lp| lp.is_finite() && *lp <= 0.0)
        );
        let sum: f32 = row.token_logprobs.iter().sum();
        // The row total also counts a final EOS token, which `tokens` excludes.
        if row.finish != Some(FinishReason::Eos) {
            assert!(
                (sum - row.logprob_sum).abs() < 1e-3,
                "{sum} vs {}",
                row.logprob_sum
            );
        } else {
            assert!(sum >= row.logprob_sum - 1e-3);
        }
    }
}
