//! Prompt prefix caching on the real SmolLM2: a prefill that reuses cached keys and values
//! gives exactly the logits and answers of a full prefill, and the cache keeps to its budget.

mod common;

use common::{chat_ids, policy};
use thresh_decoding::{DecodeBatch, PrefixCache, SamplingParams, StopConditions};
use thresh_models::Tensor;

fn full_prefill_logits(prompt: &[u32]) -> Vec<f32> {
    let m = policy();
    let mut cache = m.decoder.new_cache();
    let ids = Tensor::new(prompt, m.decoder.device())
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    m.decoder
        .forward_last(&ids, &mut cache)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Seeded answers of `n` rows, through `prefix` when given.
fn answers(prompt: &[u32], prefix: Option<&PrefixCache>) -> (Vec<Vec<u32>>, Vec<String>, usize) {
    let m = policy();
    let params = SamplingParams {
        temperature: 0.8,
        seed: 11,
        ..Default::default()
    };
    let stop = StopConditions {
        max_tokens: 12,
        ..Default::default()
    };
    let mut b =
        DecodeBatch::with_prefix_cache(&m.decoder, &m.tokenizer, prompt, 3, &params, &stop, prefix)
            .unwrap();
    b.run_to_end().unwrap();
    let (rows, stats) = b.into_parts();
    (
        rows.iter().map(|r| r.tokens.clone()).collect(),
        rows.iter().map(|r| r.text.clone()).collect(),
        stats.cached_prompt_tokens,
    )
}

#[test]
fn reused_prefixes_give_the_full_prefills_logits_and_answers() {
    let m = policy();
    let a = chat_ids(m, "Give me one tip for staying healthy.");
    let b = chat_ids(m, "Give me one tip for sleeping well.");
    let shared = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    assert!(
        shared > 10 && shared < a.len(),
        "the chat template is shared"
    );
    let pc = PrefixCache::new(64 << 20);

    // Cold: nothing reused; the prompt is cached.
    let cold = pc.prefill(&m.decoder, &a, 8).unwrap();
    assert_eq!(cold.reused, 0);
    assert_eq!(cold.cache.len(), a.len());
    assert_eq!(cold.logits, full_prefill_logits(&a));
    // The same prompt: all but its last token reused, logits bit-identical.
    let warm = pc.prefill(&m.decoder, &a, 8).unwrap();
    assert_eq!(warm.reused, a.len() - 1);
    assert_eq!(warm.logits, cold.logits);
    // Another question after the same template: the common prefix reused.
    let partial = pc.prefill(&m.decoder, &b, 8).unwrap();
    assert_eq!(partial.reused, shared);
    assert_eq!(partial.logits, full_prefill_logits(&b));

    // Whole generations: the same tokens and texts as without the cache.
    for prompt in [&a, &b] {
        let (want_tokens, want_texts, none) = answers(prompt, None);
        assert_eq!(none, 0);
        let (tokens, texts, reused) = answers(prompt, Some(&pc));
        assert_eq!(reused, prompt.len() - 1);
        assert_eq!(tokens, want_tokens);
        assert_eq!(texts, want_texts);
    }
    let s = pc.stats();
    assert_eq!((s.prefills, s.hits), (5, 4));
    // `b` extends no cached prompt and `a` is cached once: two entries.
    assert_eq!(s.entries, 2);
}

#[test]
fn copies_are_independent_and_the_budget_holds() {
    let m = policy();
    let a = chat_ids(m, "Name a fruit.");
    let pc = PrefixCache::new(64 << 20);
    pc.prefill(&m.decoder, &a, 4).unwrap();
    // Two requests continue copies of the same cached prompt differently: neither changes the
    // other's keys and values, nor the cached ones.
    let mut x = pc.prefill(&m.decoder, &a, 4).unwrap();
    let mut y = pc.prefill(&m.decoder, &a, 4).unwrap();
    let step = |c: &mut thresh_models::KvCache, t: u32| {
        let ids = Tensor::new(&[[t]], m.decoder.device()).unwrap();
        m.decoder
            .forward_last(&ids, c)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    };
    let x1 = step(&mut x.cache, 100);
    let _ = step(&mut y.cache, 200);
    let x2 = step(&mut x.cache, 300);
    let mut fresh = pc.prefill(&m.decoder, &a, 4).unwrap();
    assert_eq!(step(&mut fresh.cache, 100), x1);
    assert_eq!(step(&mut fresh.cache, 300), x2);

    // A budget below one prompt keeps nothing and reuses nothing.
    let none = PrefixCache::new(0);
    none.prefill(&m.decoder, &a, 4).unwrap();
    assert_eq!(none.prefill(&m.decoder, &a, 4).unwrap().reused, 0);
    assert_eq!(none.stats().entries, 0);
    // A budget of about one prompt keeps the most recent one only.
    let one_prompt = x.cache.bytes_per_token() * 64;
    let small = PrefixCache::new(one_prompt);
    let b = chat_ids(m, "Name a colour.");
    small.prefill(&m.decoder, &a, 4).unwrap();
    small.prefill(&m.decoder, &b, 4).unwrap();
    let s = small.stats();
    assert_eq!(s.entries, 1);
    assert!(s.bytes <= one_prompt, "{} > {one_prompt}", s.bytes);
    assert_eq!(
        small.prefill(&m.decoder, &b, 4).unwrap().reused,
        b.len() - 1
    );
}

#[test]
fn requests_arriving_together_compute_a_shared_prompt_once() {
    let m = policy();
    let a = chat_ids(m, "Tell me about the moon.");
    let want = full_prefill_logits(&a);
    let pc = PrefixCache::new(64 << 20);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| pc.prefill(&m.decoder, &a, 4).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // One computed the prompt; the others waited for it (or came after) and copied it.
    let mut reused: Vec<usize> = results.iter().map(|r| r.reused).collect();
    reused.sort();
    assert_eq!(reused, vec![0, a.len() - 1, a.len() - 1, a.len() - 1]);
    for r in &results {
        assert_eq!(r.logits, want);
    }
    let s = pc.stats();
    assert_eq!((s.prefills, s.hits, s.entries), (4, 3, 1));
}
