//! Prompt prefix caching: the keys and values of recent prompts, reused by later requests that
//! start with the same tokens (a shared system prompt, a conversation that grows by a turn, a
//! client retrying), as vLLM's automatic prefix caching and llama.cpp's slot cache do.
//!
//! A prefill looks for the cached prompt sharing the longest prefix with the new one, copies
//! that many tokens of keys and values, and runs the decoder on the rest only. At least the
//! prompt's last token is always run, because its logits start the sampling. On the CPU the
//! result is bit-identical to a full prefill: every projection and attention query is computed
//! row by row, whatever the number of tokens run together.
//!
//! Entries are one-row caches trimmed to their prompt, evicted least recently used first once
//! their bytes exceed the budget. Copies go in and out, so requests never share memory they
//! append to. A `PrefixCache` belongs to one decoder: its entries are that model's keys and
//! values.
//!
//! Requests that arrive together with the same prompt prefix (a burst of chats under one system
//! prompt) would all miss the cache. So a prefill that could reuse at least
//! [`WAIT_FOR_TOKENS`] more tokens from a prefill still running waits for that one to finish
//! and then copies its result, instead of computing the same keys and values again.

use std::sync::{Arc, Condvar, Mutex};

use candle_core::Tensor;
use thresh_models::{Decoder, KvCache};

use crate::error::{DecodeError, Result};

struct Entry {
    tokens: Vec<u32>,
    cache: KvCache,
    last_used: u64,
}

/// A prefill to wait for rather than duplicate: it gains at least this many reused tokens.
pub const WAIT_FOR_TOKENS: usize = 16;

/// A prefill in progress, announced so that requests sharing its prefix can wait for it.
struct Running {
    id: u64,
    tokens: Vec<u32>,
    done: Arc<Done>,
}

#[derive(Default)]
struct Done {
    finished: Mutex<bool>,
    cv: Condvar,
}

impl Done {
    fn wait(&self) {
        let mut f = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        while !*f {
            f = self.cv.wait(f).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[derive(Default)]
struct Inner {
    entries: Vec<Entry>,
    running: Vec<Running>,
    clock: u64,
    stats: PrefixStats,
}

/// Withdraws a running prefill's announcement and wakes its waiters, also when the prefill
/// fails.
struct Announced<'a> {
    cache: &'a PrefixCache,
    id: u64,
    done: Arc<Done>,
}

impl Drop for Announced<'_> {
    fn drop(&mut self) {
        self.cache.lock().running.retain(|r| r.id != self.id);
        *self.done.finished.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.done.cv.notify_all();
    }
}

/// Counters of a [`PrefixCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixStats {
    /// Prefills served.
    pub prefills: u64,
    /// Prefills that reused at least one cached token.
    pub hits: u64,
    /// Prompt tokens prefilled in all.
    pub prompt_tokens: u64,
    /// Of those, tokens copied from the cache instead of computed.
    pub reused_tokens: u64,
    /// Prompts in the cache now.
    pub entries: usize,
    /// Bytes the cached keys and values hold now.
    pub bytes: usize,
}

/// A prompt prefilled into a one-row cache.
pub struct Prefilled {
    /// The cache holding the whole prompt (one row).
    pub cache: KvCache,
    /// Logits after the prompt's last token, `(vocab,)`.
    pub logits: Vec<f32>,
    /// Prompt tokens copied from the prefix cache rather than computed.
    pub reused: usize,
}

/// Runs `tokens` on `decoder`, continuing `cache`, and returns the logits after the last one.
pub(crate) fn run_tokens(
    decoder: &Decoder,
    cache: &mut KvCache,
    tokens: &[u32],
) -> Result<Vec<f32>> {
    let ids = Tensor::new(tokens, decoder.device())?.unsqueeze(0)?;
    Ok(decoder
        .forward_last(&ids, cache)?
        .squeeze(0)?
        .to_vec1::<f32>()?)
}

/// Recently prefilled prompts of one decoder, up to a byte budget.
pub struct PrefixCache {
    budget_bytes: usize,
    inner: Mutex<Inner>,
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PrefixCache {
    /// A cache that keeps prompts' keys and values up to `budget_bytes` (0 keeps none).
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            budget_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The byte budget.
    pub fn budget_bytes(&self) -> usize {
        self.budget_bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The entries stay consistent even if a holder panicked: every update is one push
        // or one removal.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counters so far, with the current size.
    pub fn stats(&self) -> PrefixStats {
        let inner = self.lock();
        PrefixStats {
            entries: inner.entries.len(),
            bytes: inner
                .entries
                .iter()
                .map(|e| e.cache.bytes_allocated())
                .sum(),
            ..inner.stats
        }
    }

    /// Prefills `prompt` on `decoder` into a one-row cache with room for `extra` more tokens,
    /// reusing the longest cached prefix, and caches the prompt for later requests.
    pub fn prefill(&self, decoder: &Decoder, prompt: &[u32], extra: usize) -> Result<Prefilled> {
        if prompt.is_empty() {
            return Err(DecodeError::InvalidParameter(
                "the prompt has no tokens".into(),
            ));
        }
        let usable = |tokens: &[u32]| common_prefix(tokens, prompt).min(prompt.len() - 1);
        let (base, _announced) = loop {
            let mut guard = self.lock();
            let inner = &mut *guard;
            inner.clock += 1;
            let clock = inner.clock;
            let best = inner
                .entries
                .iter_mut()
                .map(|e| (usable(&e.tokens), e))
                .filter(|(m, _)| *m > 0)
                .max_by_key(|(m, e)| (*m, e.last_used));
            let reusable = best.as_ref().map_or(0, |(m, _)| *m);
            let pending = inner
                .running
                .iter()
                .map(|r| (usable(&r.tokens), &r.done))
                .filter(|(k, _)| *k >= reusable + WAIT_FOR_TOKENS)
                .max_by_key(|(k, _)| *k)
                .map(|(_, d)| d.clone());
            if let Some(done) = pending {
                drop(guard);
                done.wait();
                continue;
            }
            let base = match best {
                Some((m, e)) => {
                    e.last_used = clock;
                    Some(e.cache.prefix_copy(m, prompt.len() - m + extra)?)
                }
                None => None,
            };
            let done = Arc::new(Done::default());
            inner.running.push(Running {
                id: clock,
                tokens: prompt.to_vec(),
                done: done.clone(),
            });
            let announced = Announced {
                cache: self,
                id: clock,
                done,
            };
            break (base, announced);
        };
        let mut cache = base.unwrap_or_else(|| decoder.new_cache());
        let reused = cache.len();
        let logits = run_tokens(decoder, &mut cache, &prompt[reused..])?;
        self.insert(prompt, &cache, reused)?;
        Ok(Prefilled {
            cache,
            logits,
            reused,
        })
    }

    /// Whether a cached prompt already covers `prompt` (extends or equals it); marks it used.
    fn touch_covering(inner: &mut Inner, prompt: &[u32]) -> bool {
        inner.clock += 1;
        let clock = inner.clock;
        match inner
            .entries
            .iter_mut()
            .find(|e| e.tokens.starts_with(prompt))
        {
            Some(e) => {
                e.last_used = clock;
                true
            }
            None => false,
        }
    }

    /// Records a prefill and keeps a copy of its prompt's keys and values, unless a cached
    /// prompt covers it or it does not fit the budget.
    fn insert(&self, prompt: &[u32], cache: &KvCache, reused: usize) -> Result<()> {
        {
            let mut inner = self.lock();
            inner.stats.prefills += 1;
            inner.stats.hits += u64::from(reused > 0);
            inner.stats.prompt_tokens += prompt.len() as u64;
            inner.stats.reused_tokens += reused as u64;
            if prompt.len() * cache.bytes_per_token() > self.budget_bytes
                || Self::touch_covering(&mut inner, prompt)
            {
                return Ok(());
            }
        }
        // Copied outside the lock; another request may have cached the prompt meanwhile.
        let copy = cache.prefix_copy(prompt.len(), 0)?;
        let mut inner = self.lock();
        if Self::touch_covering(&mut inner, prompt) {
            return Ok(());
        }
        let clock = inner.clock;
        // Cached prompts that this one extends are covered by it.
        inner.entries.retain(|e| !prompt.starts_with(&e.tokens));
        inner.entries.push(Entry {
            tokens: prompt.to_vec(),
            cache: copy,
            last_used: clock,
        });
        let mut total: usize = inner
            .entries
            .iter()
            .map(|e| e.cache.bytes_allocated())
            .sum();
        while total > self.budget_bytes {
            let Some((i, _)) = inner
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
            else {
                break;
            };
            total -= inner.entries.swap_remove(i).cache.bytes_allocated();
        }
        Ok(())
    }
}
