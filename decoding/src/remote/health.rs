//! Active health checks: a replica left out after a failure is probed (`GET /v1/models`,
//! the model listed) every few seconds and taken back once it answers, rather than being
//! tried again with a client's request after a fixed time out. One that was down at start-up
//! must also pass the start-up check first (`admission.rs`).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use thresh_reward::ApiKey;

use super::admission::{ADMISSION_TIMEOUT, Admission, PROBE_TIMEOUT, take_in};
use super::{RemotePolicy, Replica, wire};

/// What a health check needs of its policy.
struct Checker {
    probe: ureq::Agent,
    admit: ureq::Agent,
    key: Option<ApiKey>,
    model: Option<String>,
    admission: Arc<Mutex<Option<Admission>>>,
}

impl Checker {
    /// Probes every replica now left out; those that answer (and, if not admitted yet, pass
    /// the start-up check) are taken back. How many were.
    fn check(&self, replicas: &[Replica]) -> usize {
        let (key, model) = (self.key.as_ref(), self.model.as_deref());
        let mut back = 0;
        for r in replicas.iter().filter(|r| r.down().is_some()) {
            let Ok(info) = wire::models(&self.probe, &r.url, key, model) else {
                continue;
            };
            if r.is_admitted() {
                tracing::info!(
                    url = r.url,
                    "policy replica answers its health check; taken back"
                );
                r.set_down(false);
                back += 1;
            } else if take_in(r, &info, &self.admission, &self.admit, key, model) {
                back += 1;
            }
        }
        back
    }
}

impl RemotePolicy {
    /// What a health check of these replicas needs, probing with `probe`.
    fn checker(&self, probe: ureq::Agent) -> Checker {
        Checker {
            probe,
            admit: wire::agent(ADMISSION_TIMEOUT),
            key: self.api_key.clone(),
            model: self.model.clone(),
            admission: Arc::clone(&self.admission),
        }
    }

    /// Probes the replicas now left out once; those that answer (and, if down at start-up,
    /// pass the start-up check) are taken back. How many were.
    pub fn check_health(&self) -> usize {
        self.checker(wire::agent(PROBE_TIMEOUT))
            .check(&self.replicas)
    }

    /// Runs [`RemotePolicy::check_health`] every `every` on a thread of its own, which ends
    /// when the policy is dropped; from now on a failed replica is left out until a check
    /// finds it answering. Call it once the model is named. Without health checks, a replica
    /// that was down at start-up stays out until [`RemotePolicy::check_health`] admits it.
    pub fn with_health_checks(mut self, every: Duration) -> Self {
        let every = every.max(Duration::from_millis(10));
        let replicas: Weak<[Replica]> = Arc::downgrade(&self.replicas);
        let checker = self.checker(wire::agent(
            PROBE_TIMEOUT.min(every.max(Duration::from_millis(500))),
        ));
        let spawned = std::thread::Builder::new()
            .name("policy-health".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    let Some(replicas) = replicas.upgrade() else {
                        return;
                    };
                    checker.check(&replicas);
                }
            });
        match spawned {
            Ok(_) => self.health_checked = true,
            Err(e) => tracing::warn!("no health checks of the policy replicas: {e}"),
        }
        self
    }
}
