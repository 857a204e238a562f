//! `thresh-train nash-md`: online Nash learning from human feedback.
//!
//! Each micro-batch of prompts: sample `y` from the current policy and `y'` from the geometric
//! mixture `log_softmax(c ref + (1 - c) policy)` ([`sampling`]), score both with the reward
//! model, `p = sigmoid(R(x, y) - R(x, y'))`, and minimise Nash-MD's REINFORCE loss
//! ([`crate::losses::nash_md`]) on `y`, or online IPO ([`crate::losses::online_ipo`]) on the
//! pair. The reference is the starting model, loaded a second time and frozen, so a resumed
//! run compares against the same reference. Sampling seeds derive from `--seed` and the
//! micro-batch counter, which checkpoints save: a resumed run draws the same samples.

pub mod sampling;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Tensor;
use serde_json::{Value, json};
use thresh_decoding::SamplingParams;
use thresh_models::{ChatMessage, LoadOptions};
use thresh_reward::{Prompt as RewardPrompt, RewardInput, RewardModel};

use super::{ensure_out, load_data, load_model, train_and_save};
use crate::cli::{NashLoss, NashMdArgs};
use crate::encode::Encoder;
use crate::error::{Result, TrainError};
use crate::losses::{self, PairLogps};
use crate::model::{Batch, TrainModel, Tuning};
use crate::train::{Objective, StepLoss};
use sampling::{Row, Source, summed, token_logps};

/// The mixture weight `c` over the run: constant, or linear from the first to the last step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mixture {
    /// `c` at the first step.
    pub start: f64,
    /// `c` at the last step.
    pub end: f64,
}

impl Mixture {
    /// Parses `--mixture`: `C` or `A..B`, each in `[0, 1]`.
    pub fn parse(spec: &str) -> Result<Self> {
        let num = |s: &str| -> Result<f64> {
            let v: f64 = s.trim().parse().map_err(|_| {
                TrainError::Config(format!(
                    "--mixture {spec:?}: {s:?} is not a number (use C or A..B)"
                ))
            })?;
            if !(0.0..=1.0).contains(&v) {
                return Err(TrainError::Config(format!(
                    "--mixture {spec:?}: {v} is outside [0, 1]"
                )));
            }
            Ok(v)
        };
        match spec.split_once("..") {
            Some((a, b)) => Ok(Self {
                start: num(a)?,
                end: num(b)?,
            }),
            None => {
                let c = num(spec)?;
                Ok(Self { start: c, end: c })
            }
        }
    }

    /// `c` at optimiser step `step` (0-based) of `total`.
    pub fn at(&self, step: u64, total: u64) -> f64 {
        if total <= 1 {
            return self.start;
        }
        let f = (step.min(total - 1)) as f64 / (total - 1) as f64;
        self.start + (self.end - self.start) * f
    }
}

/// Settings of the objective.
#[derive(Debug, Clone)]
pub struct NashSettings {
    /// Which loss.
    pub loss: NashLoss,
    /// Nash-MD's KL strength.
    pub beta: f64,
    /// Online IPO's tau.
    pub tau: f64,
    /// The mixture weight's schedule.
    pub mixture: Mixture,
    /// Longest response.
    pub max_new_tokens: usize,
    /// Sampling temperature.
    pub temperature: f32,
    /// Base seed of the samplers.
    pub seed: u64,
    /// Micro-batches per optimiser step (to find the step for the schedule).
    pub accumulation: usize,
    /// Optimiser steps of the run.
    pub total_steps: u64,
}

/// Prompts with their ids, the frozen reference and the reward model: the on-policy
/// objective of `nash-md`.
pub struct NashMd {
    /// The prompts as chat messages.
    pub prompts: Vec<Vec<ChatMessage>>,
    /// Their ids as the policy sees them (cut from the front to leave room for the answer).
    pub prompt_ids: Vec<Vec<u32>>,
    /// The reference policy (the starting model, frozen).
    pub reference: TrainModel,
    /// The judge.
    pub reward: Box<dyn RewardModel>,
    /// Tokens that end a response.
    pub stop: Vec<u32>,
    /// Settings.
    pub settings: NashSettings,
    /// Micro-batches run so far (seeds and schedule derive from it; checkpointed).
    pub draws: u64,
}

/// A splitmix64 step: decorrelated seeds from `(seed, counter)`.
fn mix(seed: u64, counter: u64) -> u64 {
    let mut z = seed
        .wrapping_add(counter.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The samples of one micro-batch and their rewards.
#[derive(Debug, Clone)]
pub struct Rollouts {
    /// Policy samples `y` (token ids, ending with a stop token where one was drawn).
    pub policy: Vec<Vec<u32>>,
    /// Mixture samples `y'`.
    pub mixture: Vec<Vec<u32>>,
    /// `R(x, y)`.
    pub policy_rewards: Vec<f64>,
    /// `R(x, y')`.
    pub mixture_rewards: Vec<f64>,
}

impl NashMd {
    /// The stop tokens of a tokenizer: its end-of-sequence token and ids.
    pub fn stop_tokens(model: &TrainModel) -> Vec<u32> {
        let tok = model.tokenizer();
        let mut stop: Vec<u32> = tok.eos_ids().to_vec();
        if let Some(id) = tok.eos_token().and_then(|t| tok.token_to_id(t)) {
            stop.push(id);
        }
        stop.sort_unstable();
        stop.dedup();
        stop
    }

    /// The response text of sampled ids (stop tokens and specials dropped).
    pub fn text(&self, model: &TrainModel, ids: &[u32]) -> Result<String> {
        let body: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|t| !self.stop.contains(t))
            .collect();
        Ok(model.tokenizer().decode(&body, true)?)
    }

    /// Rewards of `responses` to the prompts `idx`.
    pub fn rewards(
        &self,
        model: &TrainModel,
        idx: &[usize],
        responses: &[Vec<u32>],
    ) -> Result<Vec<f64>> {
        let inputs: Vec<RewardInput> = idx
            .iter()
            .zip(responses)
            .map(|(&i, ids)| {
                Ok(RewardInput {
                    prompt: RewardPrompt::Messages(self.prompts[i].clone()),
                    response: self.text(model, ids)?,
                })
            })
            .collect::<Result<_>>()?;
        let scored = self
            .reward
            .score(&inputs)
            .map_err(|e| TrainError::Config(format!("reward model: {e}")))?;
        Ok(scored.iter().map(|s| f64::from(s.score)).collect())
    }

    /// Samples `y` from the policy and `y'` from the mixture for the prompts `idx`, with the
    /// seed of micro-batch `draw`, and scores both.
    pub fn rollouts(&self, model: &TrainModel, idx: &[usize], draw: u64) -> Result<Rollouts> {
        let s = &self.settings;
        let step = draw / s.accumulation.max(1) as u64;
        let c = s.mixture.at(step, s.total_steps);
        let mut rows: Vec<Row> = idx
            .iter()
            .map(|&i| Row {
                prompt: self.prompt_ids[i].clone(),
                source: Source::Policy,
            })
            .collect();
        rows.extend(idx.iter().map(|&i| Row {
            prompt: self.prompt_ids[i].clone(),
            source: Source::Mixture(c),
        }));
        let params = SamplingParams {
            temperature: s.temperature,
            seed: mix(s.seed, draw),
            ..SamplingParams::default()
        };
        params
            .validate()
            .map_err(|e| TrainError::Config(e.to_string()))?;
        let mut out = sampling::sample(
            model,
            &self.reference,
            &rows,
            &params,
            s.max_new_tokens,
            &self.stop,
        )?;
        let mixture = out.split_off(idx.len());
        let policy = out;
        let mut both = policy.clone();
        both.extend(mixture.iter().cloned());
        let idx2: Vec<usize> = idx.iter().chain(idx).copied().collect();
        let mut rewards = self.rewards(model, &idx2, &both)?;
        let mixture_rewards = rewards.split_off(idx.len());
        Ok(Rollouts {
            policy,
            mixture,
            policy_rewards: rewards,
            mixture_rewards,
        })
    }

    /// Prompt + response rows of `responses` to the prompts `idx`.
    fn batch(&self, model: &TrainModel, idx: &[usize], responses: &[Vec<u32>]) -> Result<Batch> {
        let rows: Vec<(Vec<u32>, usize)> = idx
            .iter()
            .zip(responses)
            .map(|(&i, r)| {
                let mut ids = self.prompt_ids[i].clone();
                let p = ids.len();
                ids.extend_from_slice(r);
                (ids, p)
            })
            .collect();
        Batch::new(&rows, model.device())
    }
}

/// `sigmoid(a - b)` per pair, as an `f32` vector on `model`'s device.
fn preferences(a: &[f64], b: &[f64], model: &TrainModel) -> Result<Tensor> {
    let p: Vec<f32> = a
        .iter()
        .zip(b)
        .map(|(x, y)| (1.0 / (1.0 + (-(x - y)).exp())) as f32)
        .collect();
    let n = p.len();
    Ok(Tensor::from_vec(p, n, model.device())?)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

impl Objective for NashMd {
    fn len(&self) -> usize {
        self.prompts.len()
    }

    fn loss(&mut self, model: &TrainModel, batch: &[usize]) -> Result<StepLoss> {
        let draw = self.draws;
        self.draws += 1;
        let r = self.rollouts(model, batch, draw)?;
        let pref = preferences(&r.policy_rewards, &r.mixture_rewards, model)?;
        let s = &self.settings;
        let mut metrics = BTreeMap::from([
            ("reward/policy".to_string(), mean(&r.policy_rewards)),
            ("reward/mixture".to_string(), mean(&r.mixture_rewards)),
            (
                "mixture_c".to_string(),
                s.mixture
                    .at(draw / s.accumulation.max(1) as u64, s.total_steps),
            ),
            (
                "length/policy".to_string(),
                mean(&r.policy.iter().map(|y| y.len() as f64).collect::<Vec<_>>()),
            ),
        ]);
        let (out, tokens) = match s.loss {
            NashLoss::NashMd => {
                let b = self.batch(model, batch, &r.policy)?;
                let (lp, mask) = token_logps(model, &b)?;
                let (rf, _) = token_logps(&self.reference, &b)?;
                let tokens = b.lengths.iter().sum::<usize>();
                (
                    losses::nash_md(&lp, &rf.detach(), &mask, &pref, s.beta)?,
                    2 * tokens,
                )
            }
            NashLoss::OnlineIpo => {
                let idx2: Vec<usize> = batch.iter().chain(batch).copied().collect();
                let mut both = r.policy.clone();
                both.extend(r.mixture.iter().cloned());
                let b = self.batch(model, &idx2, &both)?;
                let (lp, mask) = token_logps(model, &b)?;
                let (rf, _) = token_logps(&self.reference, &b)?;
                let lp = summed(&lp, &mask)?;
                let rf = summed(&rf.detach(), &mask)?;
                let n = batch.len();
                let pairs = PairLogps {
                    policy_chosen: lp.narrow(0, 0, n)?,
                    policy_rejected: lp.narrow(0, n, n)?,
                    ref_chosen: rf.narrow(0, 0, n)?,
                    ref_rejected: rf.narrow(0, n, n)?,
                };
                let tokens = b.lengths.iter().sum::<usize>();
                (losses::online_ipo(&pairs, &pref, s.tau)?, 2 * tokens)
            }
        };
        metrics.extend(out.metrics);
        Ok(StepLoss {
            loss: out.loss,
            metrics,
            tokens,
        })
    }

    fn state(&self) -> Value {
        json!({ "draws": self.draws })
    }

    fn restore(&mut self, state: &Value) -> Result<()> {
        self.draws = state
            .get("draws")
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                TrainError::Config(format!(
                    "--resume: the checkpoint's loss state {state} has no sample counter (not a nash-md run?)"
                ))
            })?;
        Ok(())
    }
}

/// Loads a reward model or remote reward server for `nash-md`.
pub fn load_reward(path: &Path, head: Option<&str>, device: &str) -> Result<Box<dyn RewardModel>> {
    let opts = LoadOptions {
        device: thresh_models::parse_device(device)?,
        ..LoadOptions::default()
    };
    thresh_reward::load(path, head, &opts)
        .map_err(|e| TrainError::Config(format!("--reward {}: {e}", path.display())))
}

/// `thresh-train nash-md`.
pub fn nash_md(a: &NashMdArgs) -> Result<Value> {
    let c = &a.common;
    let mixture = Mixture::parse(&a.mixture)?;
    if a.max_new_tokens == 0 {
        return Err(TrainError::Config(
            "--max-new-tokens must be positive".into(),
        ));
    }
    if !a.beta.is_finite() || a.beta < 0.0 {
        return Err(TrainError::Config(format!(
            "--beta must be finite and >= 0, got {}",
            a.beta
        )));
    }
    if !a.tau.is_finite() || a.tau <= 0.0 {
        return Err(TrainError::Config(format!(
            "--tau must be finite and > 0, got {}",
            a.tau
        )));
    }
    let examples = load_data(&c.data, &c.format)?;
    if examples.is_empty() {
        return Err(TrainError::NoExamples(format!(
            "{} holds no prompts",
            c.data.display()
        )));
    }
    let reward = load_reward(&a.reward, a.reward_head.as_deref(), &c.device)?;
    let model = load_model(c, false)?;
    let device = thresh_models::parse_device(&c.device)?;
    let reference = TrainModel::load(&c.model, Tuning::Frozen, false, c.seed, &device)?;
    ensure_out(c)?;
    let cfg = super::run_config(c, examples.len(), true)?;
    let room = c
        .max_len
        .min(model.config().max_position_embeddings)
        .saturating_sub(a.max_new_tokens);
    if room == 0 {
        return Err(TrainError::Config(format!(
            "--max-new-tokens {} leaves no room for the prompt in --max-len {} (context {})",
            a.max_new_tokens,
            c.max_len,
            model.config().max_position_embeddings
        )));
    }
    let enc = Encoder::for_model(&model, c.max_len);
    let mut prompts = Vec::with_capacity(examples.len());
    let mut prompt_ids = Vec::with_capacity(examples.len());
    for e in &examples {
        let msgs = e.prompt.messages();
        let mut ids = enc.prompt(&msgs)?;
        if ids.len() > room {
            ids.drain(..ids.len() - room);
        }
        if ids.is_empty() {
            return Err(TrainError::Input(format!(
                "{}: a prompt encodes to no tokens",
                c.data.display()
            )));
        }
        prompts.push(msgs);
        prompt_ids.push(ids);
    }
    let stop = NashMd::stop_tokens(&model);
    let mut obj = NashMd {
        prompts,
        prompt_ids,
        reference,
        reward,
        stop,
        settings: NashSettings {
            loss: a.loss,
            beta: a.beta,
            tau: a.tau,
            mixture,
            max_new_tokens: a.max_new_tokens,
            temperature: a.temperature,
            seed: c.seed,
            accumulation: c.grad_accum,
            total_steps: cfg.max_steps,
        },
        draws: 0,
    };
    train_and_save(c, &model, &mut obj, true)
}
