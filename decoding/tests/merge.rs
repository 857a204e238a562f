//! Continuous batching across requests: strategies of several requests running at once on
//! their own threads, their decode steps merged by a `StepMerger` into shared decoder
//! passes, give exactly the answers each gives alone; on the real SmolLM2 and MiniLM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use thresh_decoding::strategy::{
    Rejection, Schedule, SpeculativeParams, StrategyInput, StrategyOutput, best_of_n,
    speculative_rejection,
};
use thresh_decoding::{DecodeError, SamplingParams, StepMerger, Stepper, StopConditions};
use thresh_reward::Prompt;

mod common;

use common::{chat_ids, policy, relevance};

const QUESTIONS: [&str; 3] = [
    "Give me one tip for staying healthy.",
    "Name a colour.",
    "Write one sentence about the sea and the wind.",
];

fn prompt_ids(q: &str) -> Vec<u32> {
    chat_ids(policy(), q)
}

/// Request `i`: a different prompt length, seed and length cap per request, and a strategy
/// that alternates between Best-of-N and Speculative Rejection.
fn run(
    i: usize,
    ids: &[u32],
    stepper: Option<&dyn Stepper>,
    cancel: Option<Arc<AtomicBool>>,
) -> Result<StrategyOutput, DecodeError> {
    let m = policy();
    let input = StrategyInput {
        decoder: &m.decoder,
        tokenizer: &m.tokenizer,
        prompt_ids: ids,
        reward_prompt: Prompt::Text(QUESTIONS[i % 3].into()),
        sampling: SamplingParams {
            temperature: 1.0,
            top_k: 50,
            seed: 100 + i as u64,
            ..Default::default()
        },
        stop: StopConditions {
            max_tokens: 12 + 4 * i,
            ..Default::default()
        },
        top_k: 2,
        return_candidates: true,
        cancel,
        stepper,
        prefix_cache: None,
    };
    if i.is_multiple_of(2) {
        best_of_n(&input, relevance(), 2 + i)
    } else {
        let params = SpeculativeParams {
            rejection: Rejection::Fixed(0.5),
            kv_budget_tokens: 4 * (ids.len() + 6),
            max_batch: 4,
            initial_batch: Some(4),
            schedule: Some(Schedule::Budget),
        };
        speculative_rejection(&input, relevance(), &params)
    }
}

fn summary(o: &StrategyOutput) -> Vec<(Vec<u32>, String, f32)> {
    o.candidates
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| (c.tokens.clone(), c.text.clone(), c.score))
        .collect()
}

#[test]
fn merged_requests_get_exactly_their_solo_answers() {
    let prompts: Vec<Vec<u32>> = (0..4).map(|i| prompt_ids(QUESTIONS[i % 3])).collect();
    let solo: Vec<_> = (0..4)
        .map(|i| run(i, &prompts[i], None, None).unwrap())
        .collect();
    let merger = StepMerger::new(Duration::from_millis(50));
    let merged: Vec<StrategyOutput> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|i| {
                let (merger, ids) = (&merger, &prompts[i]);
                s.spawn(move || run(i, ids, Some(merger), None))
            })
            .collect();
        let engine = s.spawn(|| merger.run(&policy().decoder));
        let outs = workers
            .into_iter()
            .map(|w| w.join().unwrap().unwrap())
            .collect();
        merger.close();
        engine.join().unwrap();
        outs
    });
    for (i, (a, b)) in solo.iter().zip(&merged).enumerate() {
        assert_eq!(summary(a), summary(b), "request {i}");
        assert_eq!(a.stats.policy_tokens, b.stats.policy_tokens, "request {i}");
        assert_eq!(a.best[0].text, b.best[0].text, "request {i}");
    }
    let st = merger.stats();
    assert!(st.max_batches >= 2, "steps were merged: {st:?}");
    assert!(st.passes < st.steps, "fewer passes than steps: {st:?}");
    let solo_tokens: usize = solo.iter().map(|o| o.stats.policy_tokens).sum();
    // Every generated token but each row's first (sampled from the prefill) went through a
    // merged pass, so the pass rows are the tokens fed back: at most the tokens generated.
    assert!(
        st.rows > 0 && st.rows <= solo_tokens,
        "{st:?} vs {solo_tokens}"
    );
}

#[test]
fn a_cancelled_request_leaves_and_the_others_finish() {
    let prompts: Vec<Vec<u32>> = (0..3).map(|i| prompt_ids(QUESTIONS[i])).collect();
    let solo = run(2, &prompts[2], None, None).unwrap();
    let merger = StepMerger::new(Duration::from_secs(5));
    let flag = Arc::new(AtomicBool::new(true));
    std::thread::scope(|s| {
        let engine = s.spawn(|| merger.run(&policy().decoder));
        // Cancelled from the start: it registers, fails at its first step and must leave,
        // or every pass of the survivor would wait the full 5 s for it.
        let cancelled = {
            let (merger, ids, flag) = (&merger, &prompts[0], flag.clone());
            s.spawn(move || run(0, ids, Some(merger), Some(flag)))
        };
        let t = std::time::Instant::now();
        let survivor = {
            let (merger, ids) = (&merger, &prompts[2]);
            s.spawn(move || run(2, ids, Some(merger), None))
        };
        assert!(matches!(
            cancelled.join().unwrap(),
            Err(DecodeError::Cancelled)
        ));
        let out = survivor.join().unwrap().unwrap();
        assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
        assert_eq!(summary(&out), summary(&solo));
        merger.close();
        engine.join().unwrap();
    });
    assert!(flag.load(Ordering::Relaxed));
    // After close, a step fails at once instead of waiting for a pass.
    let m = policy();
    let r = merger.step(vec![1], m.decoder.new_cache());
    assert!(matches!(r, Err(DecodeError::Merged(_))));
}
