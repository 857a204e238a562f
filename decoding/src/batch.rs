//! A batch of sampled continuations of one prompt, decoded in lock-step on a shared KV cache.
//!
//! The prompt is prefilled once and the cache forked to `n` rows. Each step samples one token
//! per active row; rows that finish (EOS, stop string, token limit) leave the cache through
//! `retain_rows`, so a finished row costs no more compute. Strategies (Best-of-N, Speculative
//! Rejection) drive the same batch and may drop rows themselves with [`DecodeBatch::prune`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::Tensor;
use thresh_models::parallel::parallel_for_each_mut;
use thresh_models::{Decoder, KvCache, Tokenizer};

use crate::detok::{IncrementalDetokenizer, cut_at_stop};
use crate::device_sampling::DeviceSampler;
use crate::error::{DecodeError, Result};
use crate::merge::Stepper;
use crate::prefix::{PrefixCache, run_tokens};
use crate::sampling::{Sampler, SamplingParams, log_prob};

/// When a row stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopConditions {
    /// New tokens per row at most.
    pub max_tokens: usize,
    /// EOS cannot be sampled before this many new tokens.
    pub min_tokens: usize,
    /// Keep generating through EOS tokens.
    pub ignore_eos: bool,
    /// Strings that end a row; the text is cut before the first match.
    pub stop: Vec<String>,
}

impl Default for StopConditions {
    fn default() -> Self {
        Self {
            max_tokens: 128,
            min_tokens: 0,
            ignore_eos: false,
            stop: Vec::new(),
        }
    }
}

/// Why a row finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced an end-of-sequence token.
    Eos,
    /// A stop string appeared in the text.
    StopString(String),
    /// `max_tokens` or the model's context was reached.
    Length,
    /// A strategy dropped the row before it finished.
    Pruned,
}

impl FinishReason {
    /// The OpenAI `finish_reason` string.
    pub fn as_openai(&self) -> &'static str {
        match self {
            FinishReason::Eos | FinishReason::StopString(_) => "stop",
            FinishReason::Length | FinishReason::Pruned => "length",
        }
    }
}

/// One continuation.
#[derive(Debug, Clone)]
pub struct Row {
    /// Generated ids (EOS excluded; tokens of a stop string included).
    pub tokens: Vec<u32>,
    /// Generated text, cut before a stop string.
    pub text: String,
    /// Sum of the log-probabilities of the sampled tokens under the model.
    pub logprob_sum: f32,
    /// Log-probability of each token of `tokens` under the model, in order.
    pub token_logprobs: Vec<f32>,
    /// Why the row ended, once it has.
    pub finish: Option<FinishReason>,
    sampler: Sampler,
    detok: IncrementalDetokenizer,
}

impl Row {
    /// A row generated elsewhere (by a remote policy server): its ids, text, per-token
    /// log-probabilities and, once it has ended, why.
    pub fn external(
        tokens: Vec<u32>,
        text: String,
        token_logprobs: Vec<f32>,
        finish: Option<FinishReason>,
    ) -> Self {
        Self {
            logprob_sum: token_logprobs.iter().sum(),
            tokens,
            text,
            token_logprobs,
            finish,
            sampler: Sampler::new(&SamplingParams::default(), 0),
            detok: IncrementalDetokenizer::new(),
        }
    }
}

/// Counters and timings of a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchStats {
    /// Prompt tokens prefilled (once, whatever `n`).
    pub prompt_tokens: usize,
    /// Of those, tokens whose keys and values came from a [`PrefixCache`].
    pub cached_prompt_tokens: usize,
    /// Tokens generated over all rows.
    pub generated_tokens: usize,
    /// Decoder forward passes after the prefill.
    pub decode_steps: usize,
    /// Largest number of KV bytes live at once.
    pub peak_kv_bytes: usize,
    /// Time in the prefill.
    pub prefill_time: Duration,
    /// Time in decoder forward passes after the prefill.
    pub decode_time: Duration,
    /// Time spent sampling and detokenising.
    pub sample_time: Duration,
    /// Time spent computing grammar masks (part of sampling), summed over rows: rows are
    /// sampled in parallel, so this is CPU time, not wall time.
    pub mask_time: Duration,
}

/// The state of a batch being decoded.
pub struct DecodeBatch<'m> {
    decoder: &'m Decoder,
    tokenizer: &'m Tokenizer,
    prompt: Vec<u32>,
    stop: StopConditions,
    cache: KvCache,
    rows: Vec<Row>,
    /// `active[i]` is the row held by cache row `i`.
    active: Vec<usize>,
    /// Next-token logits of each active row, `(active, vocab)`, on the host.
    logits: Vec<Vec<f32>>,
    /// The same logits left on the model's device, when sampling there.
    device_logits: Option<Tensor>,
    /// Samples on the device instead of the host ([`SamplingParams::on_device`]).
    device_sampler: Option<DeviceSampler>,
    stats: BatchStats,
    cancel: Option<Arc<AtomicBool>>,
    /// Runs the decode steps instead of the decoder, while `entered`.
    stepper: Option<&'m dyn Stepper>,
    entered: bool,
    /// Waits for the device after each forward pass ([`DecodeBatch::set_timing_sync`]).
    timing_sync: bool,
}

impl<'m> DecodeBatch<'m> {
    /// Prefills `prompt` once and forks it into `n` rows.
    pub fn new(
        decoder: &'m Decoder,
        tokenizer: &'m Tokenizer,
        prompt: &[u32],
        n: usize,
        params: &SamplingParams,
        stop: &StopConditions,
    ) -> Result<Self> {
        Self::with_prefix_cache(decoder, tokenizer, prompt, n, params, stop, None)
    }

    /// [`DecodeBatch::new`], reusing (and adding to) `prefix`'s cached prompts when given.
    pub fn with_prefix_cache(
        decoder: &'m Decoder,
        tokenizer: &'m Tokenizer,
        prompt: &[u32],
        n: usize,
        params: &SamplingParams,
        stop: &StopConditions,
        prefix: Option<&PrefixCache>,
    ) -> Result<Self> {
        params.validate()?;
        if n == 0 {
            return Err(DecodeError::InvalidParameter("n must be at least 1".into()));
        }
        if prompt.is_empty() {
            return Err(DecodeError::InvalidParameter(
                "the prompt has no tokens".into(),
            ));
        }
        if stop.max_tokens == 0 {
            return Err(DecodeError::InvalidParameter(
                "max_tokens must be at least 1".into(),
            ));
        }
        if stop.min_tokens > stop.max_tokens {
            return Err(DecodeError::InvalidParameter(format!(
                "min_tokens ({}) exceeds max_tokens ({})",
                stop.min_tokens, stop.max_tokens
            )));
        }
        let context = decoder.config().max_position_embeddings;
        if prompt.len() + stop.max_tokens > context {
            return Err(DecodeError::ContextOverflow {
                prompt: prompt.len(),
                max_tokens: stop.max_tokens,
                context,
            });
        }
        let t0 = Instant::now();
        let (mut cache, logits, cached_prompt_tokens) = match prefix {
            Some(p) => {
                let done = p.prefill(decoder, prompt, stop.max_tokens)?;
                (done.cache, done.logits, done.reused)
            }
            None => {
                let mut cache = decoder.new_cache();
                let logits = run_tokens(decoder, &mut cache, prompt)?;
                (cache, logits, 0)
            }
        };
        cache.fork(n)?;
        cache.reserve(stop.max_tokens)?;
        let prefill_time = t0.elapsed();
        let rows = (0..n)
            .map(|r| Row {
                tokens: Vec::new(),
                text: String::new(),
                logprob_sum: 0.0,
                token_logprobs: Vec::new(),
                finish: None,
                sampler: Sampler::new(params, r),
                detok: IncrementalDetokenizer::new(),
            })
            .collect();
        let stats = BatchStats {
            prompt_tokens: prompt.len(),
            cached_prompt_tokens,
            peak_kv_bytes: cache.bytes_in_use(),
            prefill_time,
            ..Default::default()
        };
        let device_sampler = if params.on_device && params.constraint.is_none() {
            Some(DeviceSampler::new(
                params,
                prompt,
                n,
                decoder.config().vocab_size,
                tokenizer.eos_ids(),
                decoder.device(),
            )?)
        } else {
            None
        };
        Ok(Self {
            device_logits: None,
            device_sampler,
            decoder,
            tokenizer,
            prompt: prompt.to_vec(),
            stop: stop.clone(),
            cache,
            rows,
            active: (0..n).collect(),
            logits: vec![logits; n],
            stats,
            cancel: None,
            stepper: None,
            entered: false,
            timing_sync: false,
        })
    }

    /// Waits for the device at the end of each forward pass, so that
    /// [`BatchStats::decode_time`] and [`BatchStats::sample_time`] split a step truthfully
    /// when sampling on an asynchronous device (without it, the forward pass's kernels
    /// finish inside the sampler's copy of the ids and count as sampling). It costs the
    /// overlap of the two, so it is for measurements, not for serving.
    pub fn set_timing_sync(&mut self, on: bool) {
        self.timing_sync = on;
    }

    /// Stops the batch at its next step when `flag` becomes true.
    pub fn set_cancel_flag(&mut self, flag: Arc<AtomicBool>) {
        self.cancel = Some(flag);
    }

    /// Hands this batch's decode steps to `stepper` (which may merge them with other
    /// batches' steps into one decoder pass) instead of calling the decoder.
    pub fn set_stepper(&mut self, stepper: &'m dyn Stepper) {
        self.leave_stepper();
        if !self.is_done() {
            stepper.enter();
            self.entered = true;
        }
        self.stepper = Some(stepper);
    }

    fn leave_stepper(&mut self) {
        if self.entered {
            self.entered = false;
            if let Some(s) = self.stepper {
                s.leave();
            }
        }
    }

    /// Prompt tokens.
    pub fn prompt_len(&self) -> usize {
        self.prompt.len()
    }

    /// Every row, finished or not, in their original order.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Indices of the rows still decoding.
    pub fn active_rows(&self) -> &[usize] {
        &self.active
    }

    /// Whether every row has finished.
    pub fn is_done(&self) -> bool {
        self.active.is_empty()
    }

    /// Counters and timings so far.
    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }

    /// The shared cache (for byte accounting).
    pub fn cache(&self) -> &KvCache {
        &self.cache
    }

    /// Samples one token for every active row, retires finished rows and runs the decoder on
    /// the rest. Returns the rows that finished in this step.
    pub fn step(&mut self) -> Result<Vec<usize>> {
        if let Some(flag) = &self.cancel
            && flag.load(Ordering::Relaxed)
        {
            self.cache.clear();
            self.active.clear();
            self.leave_stepper();
            return Err(DecodeError::Cancelled);
        }
        let t0 = Instant::now();
        let eos = self.tokenizer.eos_ids().to_vec();
        let mut next = Vec::with_capacity(self.active.len());
        let mut finished = Vec::new();
        let mut keep = Vec::with_capacity(self.active.len());
        let context = self.decoder.config().max_position_embeddings;
        // Sample every active row in parallel: each row has its own sampler and logits.
        let mut work: Vec<(&mut Row, &Vec<f32>, (u32, f32))> = {
            let mut rows: Vec<&mut Row> = self.rows.iter_mut().collect();
            let mut picked = Vec::with_capacity(self.active.len());
            // `active` is ascending, so walking it in reverse lets `pop` hand out each row.
            for (slot, &r) in self.active.iter().enumerate().rev() {
                rows.truncate(r + 1);
                if let Some(row) = rows.pop() {
                    picked.push((row, &self.logits[slot], (0u32, 0f32)));
                }
            }
            picked.reverse();
            picked
        };
        let (prompt, stop) = (&self.prompt, &self.stop);
        if let (Some(dev), Some(logits)) = (&mut self.device_sampler, &self.device_logits) {
            // On the device: the rows' own uniforms and EOS bans go there, ids come back.
            let uniforms: Vec<f32> = if dev.needs_uniforms() {
                work.iter_mut()
                    .map(|w| w.0.sampler.next_uniform())
                    .collect()
            } else {
                Vec::new()
            };
            let ban: Vec<bool> = work
                .iter()
                .map(|w| !stop.ignore_eos && w.0.tokens.len() < stop.min_tokens)
                .collect();
            let drawn = dev.sample(logits, &uniforms, &ban)?;
            for (w, d) in work.iter_mut().zip(drawn) {
                w.2 = d;
            }
        } else {
            parallel_for_each_mut(&mut work, |_, (row, logits, out)| {
                let banned: &[u32] = if !stop.ignore_eos && row.tokens.len() < stop.min_tokens {
                    &eos
                } else {
                    &[]
                };
                let history: Vec<u32> = if row.sampler.uses_repetition_penalty() {
                    prompt.iter().chain(row.tokens.iter()).copied().collect()
                } else {
                    Vec::new()
                };
                let tok = row.sampler.sample(logits, &history, banned);
                *out = (tok, log_prob(logits, tok));
            });
        }
        let sampled: Vec<(u32, f32)> = work.into_iter().map(|w| w.2).collect();
        if let Some(dev) = &mut self.device_sampler {
            let ids: Vec<u32> = sampled.iter().map(|s| s.0).collect();
            dev.observe(&ids)?;
        }
        for (slot, &r) in self.active.iter().enumerate() {
            let row = &mut self.rows[r];
            let (tok, lp) = sampled[slot];
            row.logprob_sum += lp;
            if !self.stop.ignore_eos && self.tokenizer.is_eos(tok) {
                row.finish = Some(FinishReason::Eos);
                let tail = row.detok.flush(self.tokenizer)?;
                row.text.push_str(&tail);
                finished.push(r);
                continue;
            }
            row.sampler.observe(tok);
            row.tokens.push(tok);
            row.token_logprobs.push(lp);
            let before = row.text.len();
            let chunk = row.detok.push(self.tokenizer, tok)?;
            row.text.push_str(&chunk);
            if let Some(matched) = cut_at_stop(&mut row.text, before, &self.stop.stop) {
                row.finish = Some(FinishReason::StopString(matched));
                finished.push(r);
                continue;
            }
            if row.sampler.constraint_done() {
                // The grammar is complete: nothing may follow, as if EOS came next.
                let tail = row.detok.flush(self.tokenizer)?;
                row.text.push_str(&tail);
                row.finish = Some(FinishReason::Eos);
                finished.push(r);
                continue;
            }
            if row.tokens.len() >= self.stop.max_tokens
                || self.prompt.len() + row.tokens.len() >= context
            {
                let tail = row.detok.flush(self.tokenizer)?;
                row.text.push_str(&tail);
                row.finish = Some(FinishReason::Length);
                finished.push(r);
                continue;
            }
            keep.push(slot);
            next.push(tok);
        }
        self.stats.generated_tokens += self.active.len();
        self.stats.sample_time += t0.elapsed();
        // These logits are spent; the next ones come from the forward pass below.
        self.device_logits = None;
        self.retain_slots(&keep)?;
        if self.active.is_empty() {
            self.leave_stepper();
        } else {
            let t1 = Instant::now();
            let logits = match self.stepper.filter(|_| self.entered) {
                Some(stepper) => {
                    let cache = std::mem::replace(&mut self.cache, self.decoder.new_cache());
                    let (cache, logits) = stepper.step(next, cache)?;
                    self.cache = cache;
                    logits
                }
                None => {
                    let ids = Tensor::new(next.as_slice(), self.decoder.device())?.unsqueeze(1)?;
                    self.decoder.forward_last(&ids, &mut self.cache)?
                }
            };
            if self.device_sampler.is_some() {
                if self.timing_sync {
                    logits.device().synchronize()?;
                }
                self.device_logits = Some(logits);
                self.logits = vec![Vec::new(); self.active.len()];
            } else {
                self.logits = logits.to_vec2::<f32>()?;
            }
            self.stats.decode_steps += 1;
            self.stats.decode_time += t1.elapsed();
            self.stats.peak_kv_bytes = self.stats.peak_kv_bytes.max(self.cache.bytes_in_use());
        }
        Ok(finished)
    }

    fn retain_slots(&mut self, slots: &[usize]) -> Result<()> {
        if slots.len() == self.active.len() {
            return Ok(());
        }
        self.cache.retain_rows(slots)?;
        self.active = slots.iter().map(|&s| self.active[s]).collect();
        if let Some(dev) = &mut self.device_sampler {
            dev.retain_rows(slots)?;
        }
        if let Some(l) = &self.device_logits {
            let idx: Vec<u32> = slots.iter().map(|&s| s as u32).collect();
            let idx = Tensor::from_vec(idx, slots.len(), l.device())?;
            self.device_logits = Some(l.index_select(&idx, 0)?);
        }
        let mut logits = std::mem::take(&mut self.logits);
        self.logits = slots
            .iter()
            .map(|&s| std::mem::take(&mut logits[s]))
            .collect();
        Ok(())
    }

    /// Drops active rows (by row index) before they finish, releasing their KV cache.
    pub fn prune(&mut self, rows: &[usize]) -> Result<()> {
        for &r in rows {
            if r >= self.rows.len() || self.rows[r].finish.is_some() {
                return Err(DecodeError::InvalidParameter(format!(
                    "row {r} is not active"
                )));
            }
        }
        let keep: Vec<usize> = (0..self.active.len())
            .filter(|&s| !rows.contains(&self.active[s]))
            .collect();
        for &r in rows {
            let row = &mut self.rows[r];
            let tail = row.detok.flush(self.tokenizer)?;
            row.text.push_str(&tail);
            row.finish = Some(FinishReason::Pruned);
        }
        self.retain_slots(&keep)?;
        if self.active.is_empty() {
            self.leave_stepper();
        }
        Ok(())
    }

    /// Decodes until every row has finished.
    pub fn run_to_end(&mut self) -> Result<()> {
        while !self.is_done() {
            self.step()?;
        }
        Ok(())
    }

    /// Consumes the batch, returning its rows and statistics.
    pub fn into_parts(mut self) -> (Vec<Row>, BatchStats) {
        self.leave_stepper();
        let rows = std::mem::take(&mut self.rows);
        let mut stats = std::mem::take(&mut self.stats);
        stats.mask_time = rows.iter().map(|r| r.sampler.mask_time()).sum();
        (rows, stats)
    }
}

impl Drop for DecodeBatch<'_> {
    fn drop(&mut self) {
        self.leave_stepper();
    }
}
