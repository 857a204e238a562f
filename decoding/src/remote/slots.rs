//! The per-replica concurrency limit (`--policy-max-in-flight`): at most `limit` generation
//! requests are out to one replica at once. A request goes to the first replica of its order
//! (its prompt's own first, [`RemotePolicy::order`](super::RemotePolicy)) that has room, so a
//! prompt keeps its replica, and its prefix cache, while that replica keeps up, and spills to
//! the next one along the ring when it is full (consistent hashing with bounded loads). When
//! every candidate is full it waits for a slot, up to the request timeout.
//!
//! Without a limit every request takes a slot at once; the slots then only count, for
//! `thresh_policy_replica_in_flight{replica}`. Tokenizer calls take none: they are short, and
//! a streamed answer may make them while it holds its own slot.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use metrics::{counter, gauge};

/// How often a waiting request looks again at which replicas are up, even when no slot frees.
const RECHECK: Duration = Duration::from_millis(250);

/// The generation requests out to each replica, and the limit on them.
pub(super) struct Slots {
    /// Requests out to one replica at most (`usize::MAX`: no limit).
    limit: usize,
    /// Requests out to each replica now.
    out: Mutex<Vec<usize>>,
    /// Signalled whenever a slot frees.
    freed: Condvar,
}

/// A slot taken on one replica, given back when dropped.
pub(super) struct Slot<'a, 'u> {
    slots: &'a Slots,
    /// The replica's index.
    pub(super) replica: usize,
    url: &'u str,
}

/// Why no slot was taken.
#[derive(Debug, PartialEq)]
pub(super) enum NoSlot {
    /// No replica is left to try.
    NoCandidate,
    /// Every candidate stayed full until the deadline.
    Full,
}

impl Slots {
    /// Slots for `replicas` replicas, `limit` on each (`None`: no limit).
    pub(super) fn new(replicas: usize, limit: Option<usize>) -> Self {
        Self {
            limit: limit.unwrap_or(usize::MAX).max(1),
            out: Mutex::new(vec![0; replicas]),
            freed: Condvar::new(),
        }
    }

    /// The limit, if one is set.
    pub(super) fn limit(&self) -> Option<usize> {
        (self.limit != usize::MAX).then_some(self.limit)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<usize>> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot on the first of `candidates()` (indices, best first, with their URLs) that has
    /// room, waiting while all are full until `deadline`; `candidates` is asked again after
    /// every wait, since replicas go down and come back meanwhile. A slot taken on another than
    /// the first candidate counts in `thresh_policy_affinity_spills_total`.
    pub(super) fn take<'u>(
        &self,
        candidates: impl Fn() -> Vec<(usize, &'u str)>,
        deadline: Instant,
    ) -> Result<Slot<'_, 'u>, NoSlot> {
        let mut out = self.lock();
        let mut waiting = false;
        let result = loop {
            let now = candidates();
            if now.is_empty() {
                break Err(NoSlot::NoCandidate);
            }
            if let Some(pos) = now.iter().position(|&(i, _)| out[i] < self.limit) {
                let (replica, url) = now[pos];
                out[replica] += 1;
                gauge!("thresh_policy_replica_in_flight", "replica" => url.to_string())
                    .set(out[replica] as f64);
                if pos > 0 {
                    counter!("thresh_policy_affinity_spills_total").increment(1);
                }
                break Ok(Slot {
                    slots: self,
                    replica,
                    url,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(NoSlot::Full);
            }
            if !waiting {
                waiting = true;
                gauge!("thresh_policy_waiting_for_replica").increment(1.0);
            }
            out = match self.freed.wait_timeout(out, left.min(RECHECK)) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        };
        if waiting {
            gauge!("thresh_policy_waiting_for_replica").decrement(1.0);
        }
        result
    }
}

impl Drop for Slot<'_, '_> {
    fn drop(&mut self) {
        let mut out = self.slots.lock();
        out[self.replica] = out[self.replica].saturating_sub(1);
        gauge!("thresh_policy_replica_in_flight", "replica" => self.url.to_string())
            .set(out[self.replica] as f64);
        drop(out);
        self.slots.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    const URLS: [&str; 2] = ["a", "b"];

    fn both() -> Vec<(usize, &'static str)> {
        vec![(0, URLS[0]), (1, URLS[1])]
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(50)
    }

    #[test]
    fn a_full_replica_spills_to_the_next_and_a_full_fleet_waits_for_a_slot() {
        let slots = Slots::new(2, Some(1));
        let first = slots.take(both, soon()).unwrap();
        assert_eq!(
            first.replica, 0,
            "the prompt's own replica while it has room"
        );
        let second = slots.take(both, soon()).unwrap();
        assert_eq!(second.replica, 1, "spilled to the next");
        let t = Instant::now();
        assert_eq!(slots.take(both, soon()).err(), Some(NoSlot::Full));
        assert!(t.elapsed() >= Duration::from_millis(40), "it waited");
        // A slot freed on another thread ends the wait, on that replica.
        let freed = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                freed.store(true, Ordering::SeqCst);
                drop(second);
            });
            let third = slots
                .take(both, Instant::now() + Duration::from_secs(10))
                .unwrap();
            assert!(freed.load(Ordering::SeqCst), "taken only once one freed");
            assert_eq!(third.replica, 1);
        });
        drop(first);
        assert_eq!(slots.take(both, soon()).unwrap().replica, 0, "room again");
        assert_eq!(
            slots.take(Vec::new, soon()).err(),
            Some(NoSlot::NoCandidate)
        );
    }

    #[test]
    fn without_a_limit_every_request_goes_to_its_own_replica() {
        let slots = Slots::new(2, None);
        assert_eq!(slots.limit(), None);
        let held: Vec<Slot<'_, '_>> = (0..100)
            .map(|_| slots.take(both, soon()).unwrap())
            .collect();
        assert!(held.iter().all(|s| s.replica == 0));
        assert_eq!(slots.lock()[0], 100);
        drop(held);
        assert_eq!(slots.lock()[0], 0, "given back when dropped");
    }
}
