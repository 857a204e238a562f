//! The replicas of a remote policy: which one a request goes to (its prompt's affinity
//! first, those left out after a failure last, those not admitted never), and the failover
//! of one call across them, each with a slot under the concurrency limit when it generates
//! (`slots.rs`), with each replica's metrics.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use metrics::{counter, gauge, histogram};

use super::slots::NoSlot;
use super::wire::Failure;
use super::{DOWN_FOR, RemotePolicy};
use crate::error::{DecodeError, Result};

/// Why no replica answered.
pub(super) struct Failed {
    pub(super) url: String,
    pub(super) message: String,
    /// Every replica tried was down or failing (waiting could help), rather than refusing.
    pub(super) replicas_down: bool,
}

impl Failed {
    pub(super) fn into_error(self) -> DecodeError {
        DecodeError::Remote {
            url: self.url,
            message: self.message,
        }
    }
}

/// One server of the fleet.
pub(super) struct Replica {
    /// Its completions endpoint.
    pub(super) url: String,
    /// Since when it has been left out, after a failure (until a health check or, without
    /// them, [`DOWN_FOR`] takes it back).
    pub(super) down_since: Mutex<Option<Instant>>,
    /// It has passed the fleet's start-up check, or none ran; one that was down at start-up
    /// gets no request until a health check has run that check on it ([`admission`]).
    pub(super) admitted: AtomicBool,
    /// Why its last admission check failed (logged when it changes).
    pub(super) refusal: Mutex<Option<String>>,
}

impl Replica {
    /// Replica `url`, up and admitted.
    pub(super) fn new(url: String) -> Self {
        Self {
            url,
            down_since: Mutex::new(None),
            admitted: AtomicBool::new(true),
            refusal: Mutex::new(None),
        }
    }

    /// Whether it may be sent requests ([`Replica::admitted`]).
    pub(super) fn is_admitted(&self) -> bool {
        self.admitted.load(Ordering::Acquire)
    }

    /// Marks it failed (`true`: left out from now) or answering, on
    /// `thresh_policy_replica_up` too.
    pub(super) fn set_down(&self, down: bool) {
        if let Ok(mut d) = self.down_since.lock() {
            // A new failure starts its time out again.
            *d = down.then(Instant::now);
        }
        gauge!("thresh_policy_replica_up", "replica" => self.url.clone()).set(if down {
            0.0
        } else {
            1.0
        });
    }

    /// Since when it has been down, if it is.
    pub(super) fn down(&self) -> Option<Instant> {
        self.down_since.lock().ok().and_then(|d| *d)
    }
}

impl RemotePolicy {
    /// The replicas to try for `affinity`, in order: the one it hashes to first, then the
    /// others; those left out after a failure go last (all are tried when all are down).
    /// A failed replica is left out until a health check passes or, without health checks,
    /// for [`DOWN_FOR`]; one not admitted yet ([`Replica::admitted`]) is never tried.
    #[cfg(test)]
    pub(super) fn order(&self, affinity: u64) -> Vec<usize> {
        let (up, down) = self.ranked(affinity);
        up.into_iter().chain(down).collect()
    }

    /// [`RemotePolicy::order`], as the replicas up and those left out.
    fn ranked(&self, affinity: u64) -> (Vec<usize>, Vec<usize>) {
        let n = self.replicas.len();
        let start = (affinity % n as u64) as usize;
        (0..n)
            .map(|i| (start + i) % n)
            .filter(|&i| self.replicas[i].is_admitted())
            .partition(|&i| {
                self.replicas[i]
                    .down()
                    .is_none_or(|t| !self.health_checked && t.elapsed() >= DOWN_FOR)
            })
    }

    /// The replicas still to try for `affinity`, best first: those up not `tried` yet, or,
    /// once none is left, those left out.
    fn candidates(&self, affinity: u64, tried: &[usize]) -> Vec<usize> {
        let (up, down) = self.ranked(affinity);
        let fresh = |v: Vec<usize>| -> Vec<usize> {
            v.into_iter().filter(|i| !tried.contains(i)).collect()
        };
        let up = fresh(up);
        if up.is_empty() { fresh(down) } else { up }
    }

    pub(super) fn mark(&self, i: usize, failed: bool) {
        self.replicas[i].set_down(failed);
    }

    /// Runs `call` on the replicas in `order(affinity)` until one answers; a replica's
    /// failure leaves it out for [`DOWN_FOR`]. For calls that take no slot (probes, the
    /// tokenizer's).
    pub(super) fn with_replicas<T>(
        &self,
        affinity: u64,
        call: impl Fn(&str) -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        self.try_replicas(affinity, call)
            .map_err(Failed::into_error)
    }

    /// [`RemotePolicy::with_replicas`] for a generation request: each replica tried is one
    /// with room under the concurrency limit (`slots.rs`), waited for while all are full.
    pub(super) fn generating<T>(
        &self,
        affinity: u64,
        call: impl Fn(&str) -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        self.attempt(affinity, true, call)
            .map_err(Failed::into_error)
    }

    /// [`RemotePolicy::with_replicas`], also saying whether every failure was a replica's
    /// (down or failing), so that waiting could help.
    pub(super) fn try_replicas<T>(
        &self,
        affinity: u64,
        call: impl Fn(&str) -> std::result::Result<T, Failure>,
    ) -> std::result::Result<T, Failed> {
        self.attempt(affinity, false, call)
    }

    /// Runs `call` on the replicas in `affinity`'s order until one answers, each first taking
    /// a slot on it when `slotted`.
    fn attempt<T>(
        &self,
        affinity: u64,
        slotted: bool,
        call: impl Fn(&str) -> std::result::Result<T, Failure>,
    ) -> std::result::Result<T, Failed> {
        if !self.health_checked {
            self.admit_due();
        }
        let deadline = Instant::now() + self.timeout;
        let mut tried = Vec::new();
        let mut failures = Vec::new();
        loop {
            let (i, _slot) = if slotted {
                let candidates = || {
                    self.candidates(affinity, &tried)
                        .into_iter()
                        .map(|i| (i, self.replicas[i].url.as_str()))
                        .collect()
                };
                match self.slots.take(candidates, deadline) {
                    Ok(slot) => (slot.replica, Some(slot)),
                    Err(NoSlot::NoCandidate) => break,
                    Err(NoSlot::Full) => return Err(self.full()),
                }
            } else {
                match self.candidates(affinity, &tried).first() {
                    Some(&i) => (i, None),
                    None => break,
                }
            };
            tried.push(i);
            let url = &self.replicas[i].url;
            let t = Instant::now();
            let result = call(url);
            let outcome = match &result {
                Ok(_) => "ok",
                Err(Failure::Request(_)) => "refused",
                Err(Failure::Replica(_) | Failure::Broken(_)) => "failed",
            };
            counter!("thresh_policy_replica_requests_total",
                "replica" => url.clone(), "outcome" => outcome)
            .increment(1);
            histogram!("thresh_policy_replica_request_seconds", "replica" => url.clone())
                .record(t.elapsed().as_secs_f64());
            match result {
                Ok(v) => {
                    self.mark(i, false);
                    return Ok(v);
                }
                Err(Failure::Request(message)) => {
                    return Err(Failed {
                        url: url.clone(),
                        message,
                        replicas_down: false,
                    });
                }
                Err(Failure::Broken(message)) => {
                    // Part of the answer has been handed on: no other replica may redo it.
                    tracing::warn!(url, %message, "policy replica failed mid-stream; left out for a while");
                    self.mark(i, true);
                    return Err(Failed {
                        url: url.clone(),
                        message,
                        replicas_down: true,
                    });
                }
                Err(Failure::Replica(message)) => {
                    tracing::warn!(url, %message, "policy replica failed; left out for a while");
                    self.mark(i, true);
                    failures.push((url.clone(), message));
                }
            }
        }
        let (url, message) = if failures.len() == 1 {
            failures.remove(0)
        } else {
            let each: Vec<String> = failures.iter().map(|(u, m)| format!("{u}: {m}")).collect();
            (
                self.urls().join(","),
                format!("every replica failed: {}", each.join("; ")),
            )
        };
        Err(Failed {
            url,
            message,
            replicas_down: true,
        })
    }

    /// Why a request found no slot: every replica stayed at its limit until the timeout.
    fn full(&self) -> Failed {
        Failed {
            url: self.urls().join(","),
            message: format!(
                "every replica had {} requests in flight (--policy-max-in-flight) for {} s",
                self.slots.limit().unwrap_or(usize::MAX),
                self.timeout.as_secs()
            ),
            replicas_down: true,
        }
    }
}
