//! Continuous batching across requests: one decoder pass for the decode steps of every batch
//! that is running at the same time.
//!
//! Each request runs its own strategy (Best-of-N, Speculative Rejection, ...) on its own
//! thread with its own [`DecodeBatch`](crate::DecodeBatch) and KV cache. A batch that holds a
//! [`Stepper`] hands each decode step to it instead of calling the decoder. [`StepMerger`] is
//! the stepper that merges: it collects the steps that the running batches submit, runs
//! them as one [`Decoder::forward_last_many`] pass (the projections and MLP read their
//! weights once for all rows of all requests) and hands each batch back its cache and
//! logits. Rotary positions, masks and attention stay per batch, so every request gets the
//! same logits as it would alone; only the weight reads are shared.
//!
//! A pass starts as soon as every registered batch has submitted its step, or when
//! [`StepMerger::wait`] has passed since the first submission (a batch busy elsewhere, e.g.
//! scoring its partial answers, does not hold the others back for longer than that). The
//! batches that missed a pass this way are not waited for again until they submit.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use thresh_models::{Decoder, KvCache};

use crate::error::{DecodeError, Result};

/// Runs the decode steps of a batch. Batches are told apart by the thread that steps them:
/// a thread steps one batch at a time.
pub trait Stepper: Send + Sync {
    /// A batch starts decoding: it will submit steps until it calls [`Stepper::leave`].
    fn enter(&self);
    /// A batch will submit no more steps.
    fn leave(&self);
    /// One decode step: `next` (one token per row) continues `cache`. Returns the cache,
    /// advanced by one token, and the next-token logits `(rows, vocab)`.
    fn step(&self, next: Vec<u32>, cache: KvCache) -> Result<(KvCache, Tensor)>;
}

/// Counters of a [`StepMerger`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Decoder passes run.
    pub passes: usize,
    /// Batch steps served (a pass serves one step of each batch in it).
    pub steps: usize,
    /// Rows decoded over all passes.
    pub rows: usize,
    /// The most batches merged into one pass.
    pub max_batches: usize,
}

type Reply = mpsc::SyncSender<Result<(KvCache, Tensor)>>;

struct Pending {
    thread: ThreadId,
    next: Vec<u32>,
    cache: KvCache,
    reply: Reply,
}

#[derive(Default)]
struct State {
    /// Batches registered, by the thread that steps them (a thread steps one batch at a time).
    registered: HashMap<ThreadId, usize>,
    /// Registered threads that missed a pass's wait: busy elsewhere, not waited for until
    /// they submit again.
    busy: HashSet<ThreadId>,
    pending: Vec<Pending>,
    closed: bool,
    stats: MergeStats,
}

impl State {
    /// Registered threads, neither pending nor busy, that the next pass waits for.
    fn waiting_for(&self) -> usize {
        self.registered
            .keys()
            .filter(|t| !self.busy.contains(t) && !self.pending.iter().any(|p| p.thread == **t))
            .count()
    }
}

/// A [`Stepper`] that merges the steps of concurrent batches into one decoder pass; see the
/// module documentation. One thread calls [`StepMerger::run`]; any number of batches on
/// other threads step through it.
pub struct StepMerger {
    state: Mutex<State>,
    changed: Condvar,
    wait: Duration,
    on_pass: Option<Box<dyn Fn(usize, usize) + Send + Sync>>,
}

impl StepMerger {
    /// A merger that waits at most `wait` for straggling batches before a pass.
    pub fn new(wait: Duration) -> Self {
        Self {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            wait,
            on_pass: None,
        }
    }

    /// Calls `f(rows, batches)` before every pass, and `f(0, 0)` when no batch is left
    /// (for metrics).
    pub fn with_pass_hook(mut self, f: impl Fn(usize, usize) + Send + Sync + 'static) -> Self {
        self.on_pass = Some(Box::new(f));
        self
    }

    /// The longest a pass waits for registered batches that have not submitted yet.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Counters so far.
    pub fn stats(&self) -> MergeStats {
        self.lock().stats
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain counters behind: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves steps with `decoder` until [`StepMerger::close`]; returns once closed and
    /// drained.
    pub fn run(&self, decoder: &Decoder) {
        loop {
            let batch = {
                let mut st = self.lock();
                let mut idle_reported = false;
                while st.pending.is_empty() && !st.closed {
                    if !idle_reported
                        && st.registered.is_empty()
                        && let Some(f) = &self.on_pass
                    {
                        f(0, 0);
                        idle_reported = true;
                    }
                    st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                if st.pending.is_empty() {
                    return;
                }
                let deadline = Instant::now() + self.wait;
                while !st.closed && st.waiting_for() > 0 {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        let absent: Vec<ThreadId> = st
                            .registered
                            .keys()
                            .filter(|t| !st.pending.iter().any(|p| p.thread == **t))
                            .copied()
                            .collect();
                        st.busy.extend(absent);
                        break;
                    }
                    st = self
                        .changed
                        .wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                let batch = std::mem::take(&mut st.pending);
                let rows: usize = batch.iter().map(|p| p.next.len()).sum();
                st.stats.passes += 1;
                st.stats.steps += batch.len();
                st.stats.rows += rows;
                st.stats.max_batches = st.stats.max_batches.max(batch.len());
                batch
            };
            if let Some(f) = &self.on_pass {
                f(batch.iter().map(|p| p.next.len()).sum(), batch.len());
            }
            self.pass(decoder, batch);
        }
    }

    fn pass(&self, decoder: &Decoder, batch: Vec<Pending>) {
        let mut caches = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut ids = Vec::with_capacity(batch.len());
        for p in batch {
            match Tensor::new(p.next.as_slice(), decoder.device()).and_then(|t| t.unsqueeze(1)) {
                Ok(t) => {
                    ids.push(t);
                    caches.push(p.cache);
                    replies.push(p.reply);
                }
                Err(e) => {
                    let _ = p.reply.send(Err(e.into()));
                }
            }
        }
        if ids.is_empty() {
            return;
        }
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
            decoder.forward_last_many(&ids, &mut refs)
        }));
        match result {
            Ok(Ok(logits)) => {
                for ((cache, l), reply) in caches.into_iter().zip(logits).zip(replies) {
                    let _ = reply.send(Ok((cache, l)));
                }
            }
            Ok(Err(e)) => {
                let msg = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(DecodeError::Merged(msg.clone())));
                }
            }
            Err(_) => {
                for reply in replies {
                    let _ = reply.send(Err(DecodeError::Merged(
                        "the decoder panicked on a merged step".into(),
                    )));
                }
            }
        }
    }

    /// Stops serving: pending and later steps fail, and [`StepMerger::run`] returns.
    pub fn close(&self) {
        let pending = {
            let mut st = self.lock();
            st.closed = true;
            std::mem::take(&mut st.pending)
        };
        for p in pending {
            let _ = p.reply.send(Err(DecodeError::Merged(
                "the engine is shutting down".into(),
            )));
        }
        self.changed.notify_all();
    }
}

impl Stepper for StepMerger {
    fn enter(&self) {
        *self
            .lock()
            .registered
            .entry(std::thread::current().id())
            .or_default() += 1;
    }

    fn leave(&self) {
        let me = std::thread::current().id();
        let mut st = self.lock();
        if let Some(n) = st.registered.get_mut(&me) {
            *n -= 1;
            if *n == 0 {
                st.registered.remove(&me);
                st.busy.remove(&me);
            }
        }
        drop(st);
        self.changed.notify_all();
    }

    fn step(&self, next: Vec<u32>, cache: KvCache) -> Result<(KvCache, Tensor)> {
        let (tx, rx) = mpsc::sync_channel(1);
        {
            let mut st = self.lock();
            if st.closed {
                return Err(DecodeError::Merged("the engine is shutting down".into()));
            }
            let thread = std::thread::current().id();
            st.busy.remove(&thread);
            st.pending.push(Pending {
                thread,
                next,
                cache,
                reply: tx,
            });
        }
        self.changed.notify_all();
        rx.recv()
            .map_err(|_| DecodeError::Merged("the step was dropped".into()))?
    }
}
