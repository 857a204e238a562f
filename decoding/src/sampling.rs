//! Per-row sampling: penalties, temperature, top-k, top-p, min-p, greedy, with a seeded RNG.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::constraint::{Constraint, RowConstraint};
use crate::error::{DecodeError, Result};

/// Sampling parameters, with OpenAI and Hugging Face semantics.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1 = off).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (0 = off).
    pub min_p: f32,
    /// Hugging Face repetition penalty over prompt and output tokens (1 = off).
    pub repetition_penalty: f32,
    /// OpenAI frequency penalty over output tokens, per occurrence (0 = off).
    pub frequency_penalty: f32,
    /// OpenAI presence penalty over output tokens, once per distinct token (0 = off).
    pub presence_penalty: f32,
    /// Base seed; row `r` samples with `seed + r`.
    pub seed: u64,
    /// A grammar every row's output must match (JSON schema, regex, Lark); `None` = free text.
    pub constraint: Option<Constraint>,
    /// Sample on the model's device ([`DeviceSampler`](crate::device_sampling::DeviceSampler)):
    /// only token ids and log-probabilities come back to the host each step. Ignored for a
    /// constrained batch, whose masks are computed on the host.
    pub on_device: bool,
    /// Whether the sampled tokens' log-probabilities are wanted. Rows decoded here always
    /// carry them (they cost nothing); a remote policy asks its server for them only when
    /// set (llama-server computes them with a softmax over the vocabulary, about 4% of its
    /// decode), and its rows carry zeros otherwise.
    pub token_logprobs: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: 0,
            constraint: None,
            on_device: false,
            token_logprobs: true,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Checks every parameter against its valid range.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DecodeError::InvalidParameter(m));
        if !(self.temperature.is_finite() && (0.0..=100.0).contains(&self.temperature)) {
            return bad(format!(
                "temperature must be in [0, 100], got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(format!(
                "repetition_penalty must be positive, got {}",
                self.repetition_penalty
            ));
        }
        for (name, v) in [
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return bad(format!("{name} must be in [-2, 2], got {v}"));
            }
        }
        Ok(())
    }

    fn needs_penalties(&self) -> bool {
        self.repetition_penalty != 1.0
            || self.frequency_penalty != 0.0
            || self.presence_penalty != 0.0
    }
}

/// One row's sampler: parameters plus its own RNG stream.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Output-token counts for frequency/presence penalties (sparse).
    counts: std::collections::HashMap<u32, u32>,
    scratch: Vec<(u32, f32)>,
    work: Vec<f32>,
    /// This row's place in the request's grammar, if it has one.
    constraint: Option<RowConstraint>,
    /// Time spent computing this row's grammar masks.
    mask_time: std::time::Duration,
}

/// Tokens examined before falling back to a full sort for top-p.
const NUCLEUS_PREFIX: usize = 64;

impl Sampler {
    /// A sampler for row `row` of a request.
    pub fn new(params: &SamplingParams, row: usize) -> Self {
        Self {
            rng: StdRng::seed_from_u64(params.seed.wrapping_add(row as u64)),
            params: params.clone(),
            counts: Default::default(),
            scratch: Vec::new(),
            work: Vec::new(),
            constraint: params.constraint.as_ref().map(Constraint::start),
            mask_time: std::time::Duration::ZERO,
        }
    }

    /// The next uniform in `[0, 1)` of this row's generator: the one the host sampler would
    /// draw for its next sampled (non-greedy) token, for a draw made elsewhere
    /// ([`DeviceSampler`](crate::device_sampling::DeviceSampler)).
    pub fn next_uniform(&mut self) -> f32 {
        self.rng.random::<f32>()
    }

    /// Time this row has spent computing grammar masks.
    pub fn mask_time(&self) -> std::time::Duration {
        self.mask_time
    }

    /// Whether this row's grammar is complete and admits nothing more (the row ends).
    pub fn constraint_done(&self) -> bool {
        self.constraint.as_ref().is_some_and(RowConstraint::is_done)
    }

    /// Whether the repetition penalty needs the prompt and output tokens.
    pub fn uses_repetition_penalty(&self) -> bool {
        self.params.repetition_penalty != 1.0
    }

    /// Records an output token for the frequency and presence penalties, and advances the
    /// grammar past it.
    pub fn observe(&mut self, token: u32) {
        *self.counts.entry(token).or_default() += 1;
        if let Some(c) = &mut self.constraint {
            c.consume(token);
        }
    }

    /// Picks the next token from `logits`. `context` holds prompt and output tokens for the
    /// repetition penalty; `banned` lists tokens that must not be sampled (EOS before
    /// `min_tokens`), unless the row's grammar allows nothing else.
    pub fn sample(&mut self, logits: &[f32], context: &[u32], banned: &[u32]) -> u32 {
        let mut work = std::mem::take(&mut self.work);
        work.clear();
        work.extend_from_slice(logits);
        let mut banned = banned;
        if let Some(c) = &mut self.constraint {
            let t = std::time::Instant::now();
            if !c.mask(&mut work, banned) {
                banned = &[];
            }
            self.mask_time += t.elapsed();
        }
        let tok = self.sample_in_place(&mut work, context, banned);
        self.work = work;
        tok
    }

    fn sample_in_place(&mut self, logits: &mut [f32], context: &[u32], banned: &[u32]) -> u32 {
        let p = &self.params;
        if p.needs_penalties() {
            if p.repetition_penalty != 1.0 {
                let mut seen: Vec<u32> = context.to_vec();
                seen.sort_unstable();
                seen.dedup();
                for t in seen {
                    if let Some(l) = logits.get_mut(t as usize) {
                        *l = if *l > 0.0 {
                            *l / p.repetition_penalty
                        } else {
                            *l * p.repetition_penalty
                        };
                    }
                }
            }
            for (&t, &c) in &self.counts {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= p.frequency_penalty * c as f32 + p.presence_penalty;
                }
            }
        }
        for &t in banned {
            if let Some(l) = logits.get_mut(t as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
        // Extreme penalties can overflow a logit to infinity (or make inf - inf); sample as
        // if the infinite tokens were the only ones, and never from a NaN.
        let mut max = f32::NEG_INFINITY;
        for l in logits.iter_mut() {
            if l.is_nan() {
                *l = f32::NEG_INFINITY;
            }
            max = max.max(*l);
        }
        if max == f32::INFINITY {
            for l in logits.iter_mut() {
                *l = if *l == f32::INFINITY {
                    0.0
                } else {
                    f32::NEG_INFINITY
                };
            }
            max = 0.0;
        }
        if p.temperature == 0.0 || max == f32::NEG_INFINITY {
            return argmax(logits);
        }
        let inv_t = 1.0 / p.temperature;
        // Unnormalised probabilities.
        for l in logits.iter_mut() {
            *l = ((*l - max) * inv_t).exp();
        }
        let restricted = p.top_k > 0 || p.top_p < 1.0 || p.min_p > 0.0;
        if !restricted {
            let total: f32 = logits.iter().sum();
            return self.draw_dense(logits, total);
        }
        // Candidates sorted by probability, as few as the filters need.
        let cands = &mut self.scratch;
        cands.clear();
        cands.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, w)| **w > 0.0)
                .map(|(i, &w)| (i as u32, w)),
        );
        if cands.is_empty() {
            // Every weight underflowed: the most likely token is the only one left.
            return argmax(logits);
        }
        let total = cands.iter().map(|c| f64::from(c.1)).sum::<f64>() as f32;
        let by_prob = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let n = cands.len();
        let mut keep = if p.top_k > 0 { p.top_k.min(n) } else { n };
        // Sort only as long a prefix of the candidates as the filters need: top-k's, or for
        // top-p a prefix grown until it holds the nucleus (usually the first one does).
        let mut prefix = if p.top_k > 0 {
            keep
        } else {
            NUCLEUS_PREFIX.min(n)
        };
        loop {
            if prefix < n {
                cands.select_nth_unstable_by(prefix, by_prob);
            }
            cands[..prefix].sort_unstable_by(by_prob);
            if p.top_p >= 1.0 {
                break;
            }
            let target = p.top_p * total;
            let mut acc = 0.0;
            if let Some(i) = cands[..prefix].iter().position(|c| {
                acc += c.1;
                acc >= target
            }) {
                keep = keep.min(i + 1);
                break;
            }
            if prefix == n || p.top_k > 0 {
                break;
            }
            prefix = (prefix * 4).min(n);
        }
        if p.min_p > 0.0 {
            let floor = p.min_p * cands[0].1;
            // Only the first `prefix` candidates are in order: grow it while they all clear
            // the floor, or the count below would stop at an arbitrary one past them.
            while prefix < keep && cands[prefix - 1].1 >= floor {
                prefix = (prefix * 4).min(n);
                if prefix < n {
                    cands.select_nth_unstable_by(prefix, by_prob);
                }
                cands[..prefix].sort_unstable_by(by_prob);
            }
            keep = keep.min(
                cands[..keep]
                    .iter()
                    .take_while(|c| c.1 >= floor)
                    .count()
                    .max(1),
            );
        }
        let kept = &cands[..keep.max(1)];
        let mass: f32 = kept.iter().map(|c| c.1).sum();
        let mut u = self.rng.random::<f32>() * mass;
        for c in kept {
            u -= c.1;
            if u <= 0.0 {
                return c.0;
            }
        }
        kept[kept.len() - 1].0
    }

    fn draw_dense(&mut self, weights: &[f32], total: f32) -> u32 {
        let mut u = self.rng.random::<f32>() * total;
        let mut last = 0;
        for (i, &w) in weights.iter().enumerate() {
            if w > 0.0 {
                last = i;
                u -= w;
                if u <= 0.0 {
                    return i as u32;
                }
            }
        }
        last as u32
    }
}

/// Index of the largest value; ties go to the lowest index.
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Log-probability of `token` under the softmax of `logits`.
pub fn log_prob(logits: &[f32], token: u32) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
    logits
        .get(token as usize)
        .map_or(f32::NEG_INFINITY, |l| l - lse)
}

#[cfg(test)]
mod tests {
    #[test]
    fn extreme_penalties_and_nan_logits_still_sample_a_real_token() {
        // A tiny repetition penalty divides a positive logit into infinity.
        for (top_p, top_k) in [(1.0, 0), (1e-30, 0), (0.9, 3)] {
            let params = SamplingParams {
                temperature: 1.0,
                top_p,
                top_k,
                // The smallest positive f32: 2.0 / it overflows to infinity.
                repetition_penalty: f32::from_bits(1),
                ..Default::default()
            };
            let mut s = Sampler::new(&params, 0);
            let logits = [1.0, 2.0, -1.0, 0.5];
            let t = s.sample(&logits, &[1], &[]);
            assert_eq!(t, 1, "the one infinite logit wins ({top_p}, {top_k})");
            let t = s.sample(&[f32::NAN, 0.3, f32::NAN, 0.2], &[], &[]);
            assert!(t == 1 || t == 3, "never a NaN token: {t}");
        }
        let mut s = Sampler::new(&SamplingParams::default(), 0);
        let all_banned = s.sample(&[0.1, 0.2], &[], &[0, 1]);
        assert!(
            all_banned < 2,
            "every token banned still answers a token id"
        );
    }

    use super::*;

    fn logits() -> Vec<f32> {
        vec![2.0, 1.0, 0.5, 3.0, -1.0, 0.0]
    }

    #[test]
    fn min_p_keeps_every_token_above_its_floor_past_the_sorted_prefix() {
        // 150 equally likely tokens interleaved with 150 unlikely ones: min-p 0.5 keeps
        // exactly the first 150, more than the sorted prefix of 64 holds.
        let logits: Vec<f32> = (0..300)
            .map(|i| if i % 2 == 0 { 0.0 } else { -10.0 })
            .collect();
        let params = SamplingParams {
            min_p: 0.5,
            seed: 4,
            ..Default::default()
        };
        let mut s = Sampler::new(&params, 0);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..5000 {
            let t = s.sample(&logits, &[], &[]);
            assert_eq!(t % 2, 0, "token {t} is below the floor");
            seen.insert(t);
        }
        assert_eq!(seen.len(), 150, "every token above the floor is drawn");
    }

    #[test]
    fn greedy_and_seeded_reproducibility() {
        let mut s = Sampler::new(&SamplingParams::greedy(), 0);
        assert_eq!(s.sample(&logits(), &[], &[]), 3);
        assert_eq!(
            s.sample(&logits(), &[], &[3]),
            0,
            "banned tokens are never picked"
        );
        let p = SamplingParams {
            seed: 7,
            ..Default::default()
        };
        let draw = |row| {
            let mut s = Sampler::new(&p, row);
            (0..50)
                .map(|_| s.sample(&logits(), &[], &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(0), draw(0));
        assert_ne!(draw(0), draw(1), "rows use different streams");
    }

    #[test]
    fn filters_restrict_the_support() {
        let run = |p: SamplingParams| {
            let mut s = Sampler::new(&p, 0);
            let mut seen: Vec<u32> = (0..400).map(|_| s.sample(&logits(), &[], &[])).collect();
            seen.sort_unstable();
            seen.dedup();
            seen
        };
        assert_eq!(
            run(SamplingParams {
                top_k: 2,
                ..Default::default()
            }),
            vec![0, 3]
        );
        // softmax: 3.0 -> 0.61, 2.0 -> 0.22: top_p 0.7 needs both.
        assert_eq!(
            run(SamplingParams {
                top_p: 0.7,
                ..Default::default()
            }),
            vec![0, 3]
        );
        assert_eq!(
            run(SamplingParams {
                top_p: 0.5,
                ..Default::default()
            }),
            vec![3]
        );
        // min_p 0.3: exp(2-3) = 0.37 >= 0.3 stays, exp(1-3) = 0.14 goes.
        assert_eq!(
            run(SamplingParams {
                min_p: 0.3,
                ..Default::default()
            }),
            vec![0, 3]
        );
        assert_eq!(run(SamplingParams::default()).len(), 6);
    }

    #[test]
    fn penalties_follow_hf_and_openai_semantics() {
        let p = SamplingParams {
            repetition_penalty: 2.0,
            ..SamplingParams::greedy()
        };
        let mut s = Sampler::new(&p, 0);
        let mut l = logits();
        assert_eq!(s.sample_in_place(&mut l, &[3, 4], &[]), 0);
        assert_eq!(l[3], 1.5);
        assert_eq!(l[4], -2.0);
        let p = SamplingParams {
            frequency_penalty: 0.5,
            presence_penalty: 0.25,
            ..SamplingParams::greedy()
        };
        let mut s = Sampler::new(&p, 0);
        s.observe(3);
        s.observe(3);
        let mut l = logits();
        s.sample_in_place(&mut l, &[], &[]);
        assert_eq!(l[3], 3.0 - 1.0 - 0.25);
    }

    #[test]
    fn validation_names_the_parameter() {
        let e = SamplingParams {
            top_p: 0.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("top_p"));
        let e = SamplingParams {
            temperature: -1.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("temperature"));
        assert!(SamplingParams::default().validate().is_ok());
    }
}
