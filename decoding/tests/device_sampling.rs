//! The device sampler (tensor ops, here on the CPU device) against the host sampler: the same
//! seeds give the same tokens, over thousands of draws and every combination of temperature,
//! top-k, top-p, min-p and the three penalties, with EOS banned on some steps.

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use thresh_decoding::device_sampling::DeviceSampler;
use thresh_decoding::sampling::log_prob;
use thresh_decoding::{Sampler, SamplingParams};

/// Peaked logits, like a language model's: Gaussian times 4 (Box-Muller).
fn logits(rng: &mut StdRng, rows: usize, vocab: usize) -> Vec<Vec<f32>> {
    (0..rows)
        .map(|_| {
            (0..vocab)
                .map(|_| {
                    let (a, b): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random());
                    4.0 * (-2.0 * a.ln()).sqrt() * (std::f32::consts::TAU * b).cos()
                })
                .collect()
        })
        .collect()
}

struct Tally {
    greedy: (usize, usize),
    sampled: (usize, usize),
    worst_logprob: f32,
}

/// Runs `steps` steps of `rows` rows on both samplers, both fed the host's tokens.
fn compare(
    params: &SamplingParams,
    vocab: usize,
    rows: usize,
    steps: usize,
    seed: u64,
    t: &mut Tally,
) {
    let eos = [1u32];
    let prompt: Vec<u32> = (0..20).map(|i| (i * 37 % vocab) as u32).collect();
    let mut host: Vec<Sampler> = (0..rows).map(|r| Sampler::new(params, r)).collect();
    // The uniforms come from each row's own generator, as the batch draws them.
    let mut streams: Vec<Sampler> = (0..rows).map(|r| Sampler::new(params, r)).collect();
    let device = Device::Cpu;
    let mut dev = DeviceSampler::new(params, &prompt, rows, vocab, &eos, &device).unwrap();
    let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); rows];
    let mut rng = StdRng::seed_from_u64(seed);
    for step in 0..steps {
        let l = logits(&mut rng, rows, vocab);
        let ban: Vec<bool> = (0..rows).map(|r| step < 3 && r % 2 == 0).collect();
        let uniforms: Vec<f32> = if dev.needs_uniforms() {
            streams.iter_mut().map(Sampler::next_uniform).collect()
        } else {
            Vec::new()
        };
        let flat: Vec<f32> = l.iter().flatten().copied().collect();
        let tensor = Tensor::from_vec(flat, (rows, vocab), &device).unwrap();
        let drawn = dev.sample(&tensor, &uniforms, &ban).unwrap();
        let mut chosen = Vec::new();
        for r in 0..rows {
            let history: Vec<u32> = prompt.iter().chain(&outputs[r]).copied().collect();
            let banned: &[u32] = if ban[r] { &eos } else { &[] };
            let tok = host[r].sample(&l[r], &history, banned);
            let (dtok, dlp) = drawn[r];
            let tally = if params.temperature == 0.0 {
                &mut t.greedy
            } else {
                &mut t.sampled
            };
            tally.1 += 1;
            if dtok != tok && std::env::var("THRESH_SHOW_MISMATCHES").is_ok() {
                let (a, b) = (log_prob(&l[r], tok), log_prob(&l[r], dtok));
                eprintln!(
                    "mismatch {params:?} step {step} row {r}: host {tok} ({a}) device {dtok} ({b}) u {:?}",
                    uniforms.get(r)
                );
            }
            if dtok == tok {
                tally.0 += 1;
                let diff = (dlp - log_prob(&l[r], tok)).abs();
                t.worst_logprob = t.worst_logprob.max(diff);
            }
            if ban[r] {
                assert_ne!(dtok, eos[0], "EOS is banned on this step");
            }
            host[r].observe(tok);
            outputs[r].push(tok);
            chosen.push(tok);
        }
        dev.observe(&chosen).unwrap();
    }
}

#[test]
fn device_draws_match_the_host_sampler() {
    let mut t = Tally {
        greedy: (0, 0),
        sampled: (0, 0),
        worst_logprob: 0.0,
    };
    let mut combo = 0u64;
    for temperature in [0.0, 0.7, 1.3] {
        for top_k in [0, 40] {
            for top_p in [1.0, 0.9] {
                for min_p in [0.0, 0.05] {
                    for (repetition_penalty, frequency_penalty, presence_penalty) in [
                        (1.0, 0.0, 0.0),
                        (1.3, 0.0, 0.0),
                        (1.0, 0.5, 0.4),
                        (1.2, 0.3, 0.2),
                    ] {
                        combo += 1;
                        let params = SamplingParams {
                            temperature,
                            top_k,
                            top_p,
                            min_p,
                            repetition_penalty,
                            frequency_penalty,
                            presence_penalty,
                            seed: combo * 1000,
                            constraint: None,
                            on_device: false,
                            token_logprobs: true,
                        };
                        // A vocabulary that is not a multiple of the prefix sum's block.
                        compare(&params, 3000, 4, 12, combo, &mut t);
                    }
                }
            }
        }
    }
    assert_eq!(t.greedy.0, t.greedy.1, "greedy draws differ");
    let (same, all) = t.sampled;
    assert!(all >= 3000, "{all} sampled draws");
    let share = same as f64 / all as f64;
    eprintln!(
        "sampled draws identical: {same} of {all} ({:.4}); greedy {} of {}; worst log-prob difference {:.2e}",
        share, t.greedy.0, t.greedy.1, t.worst_logprob
    );
    assert!(share >= 0.999, "only {same} of {all} sampled draws agree");
    assert!(
        t.worst_logprob < 1e-4,
        "log-probabilities differ by {}",
        t.worst_logprob
    );
}

#[test]
fn the_full_vocabulary_and_pruned_rows_keep_their_state() {
    // 49,152 ids as SmolLM2's; drop rows mid-way and keep going on the survivors.
    let params = SamplingParams {
        temperature: 0.9,
        top_p: 0.95,
        frequency_penalty: 0.5,
        seed: 9,
        ..Default::default()
    };
    let (vocab, rows) = (49_152, 4);
    let device = Device::Cpu;
    let mut dev = DeviceSampler::new(&params, &[5, 6, 7], rows, vocab, &[0], &device).unwrap();
    let mut host: Vec<Sampler> = (0..rows).map(|r| Sampler::new(&params, r)).collect();
    let mut streams: Vec<Sampler> = (0..rows).map(|r| Sampler::new(&params, r)).collect();
    let mut alive: Vec<usize> = (0..rows).collect();
    let mut rng = StdRng::seed_from_u64(1);
    let (mut same, mut all) = (0, 0);
    for step in 0..10 {
        if step == 4 {
            // Rows 0 and 2 leave; the device state follows the cache's row order.
            alive = vec![1, 3];
            dev.retain_rows(&[1, 3]).unwrap();
        }
        let l = logits(&mut rng, alive.len(), vocab);
        let uniforms: Vec<f32> = alive.iter().map(|&r| streams[r].next_uniform()).collect();
        let flat: Vec<f32> = l.iter().flatten().copied().collect();
        let tensor = Tensor::from_vec(flat, (alive.len(), vocab), &device).unwrap();
        let drawn = dev
            .sample(&tensor, &uniforms, &vec![false; alive.len()])
            .unwrap();
        let mut chosen = Vec::new();
        for (slot, &r) in alive.iter().enumerate() {
            let tok = host[r].sample(&l[slot], &[], &[]);
            all += 1;
            same += usize::from(drawn[slot].0 == tok);
            host[r].observe(tok);
            chosen.push(tok);
        }
        dev.observe(&chosen).unwrap();
    }
    assert!(same + 1 >= all, "{same} of {all} draws agree");
}

#[test]
fn a_batch_sampled_on_the_device_generates_what_the_host_generates() {
    use thresh_decoding::{DecodeBatch, StopConditions};
    use thresh_models::{LoadOptions, load};
    let p = thresh_models::testing::smollm2_gguf();
    let m = load(p.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let prompt = m
        .tokenizer
        .encode("The three best things about autumn are", false)
        .unwrap();
    let stop = StopConditions {
        max_tokens: 24,
        ..Default::default()
    };
    for params in [
        SamplingParams::greedy(),
        SamplingParams {
            temperature: 0.8,
            top_p: 0.95,
            seed: 3,
            ..Default::default()
        },
        SamplingParams {
            temperature: 1.0,
            top_k: 50,
            min_p: 0.02,
            repetition_penalty: 1.2,
            frequency_penalty: 0.3,
            seed: 8,
            ..Default::default()
        },
    ] {
        let run = |on_device: bool| {
            let params = SamplingParams {
                on_device,
                ..params.clone()
            };
            let mut b =
                DecodeBatch::new(&m.decoder, &m.tokenizer, &prompt, 6, &params, &stop).unwrap();
            for _ in 0..6 {
                b.step().unwrap();
            }
            // Pruning mid-way moves the device state with the rows.
            let drop: Vec<usize> = b
                .active_rows()
                .iter()
                .copied()
                .filter(|r| r % 3 == 0)
                .collect();
            b.prune(&drop).unwrap();
            b.run_to_end().unwrap();
            b.into_parts().0
        };
        let (host, device) = (run(false), run(true));
        let same = host
            .iter()
            .zip(&device)
            .filter(|(a, b)| a.tokens == b.tokens)
            .count();
        eprintln!("{params:?}: {same} of {} rows identical", host.len());
        for (a, b) in host.iter().zip(&device) {
            assert_eq!(a.tokens, b.tokens, "{params:?}");
            assert_eq!(a.finish, b.finish);
            for (x, y) in a.token_logprobs.iter().zip(&b.token_logprobs) {
                assert!((x - y).abs() < 1e-3, "log-probabilities {x} and {y}");
            }
        }
    }
}
