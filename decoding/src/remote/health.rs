//! Active health checks: a replica left out after a failure is probed (`GET /v1/models`,
//! the model listed) every few seconds and taken back once it answers, rather than being
//! tried again with a client's request after a fixed time out.

use std::sync::{Arc, Weak};
use std::time::Duration;

use thresh_reward::ApiKey;

use super::{RemotePolicy, Replica, wire};

/// Longest wait for one health probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Probes every replica now left out; those that answer are taken back. How many were.
fn check(
    replicas: &[Replica],
    agent: &ureq::Agent,
    key: Option<&ApiKey>,
    model: Option<&str>,
) -> usize {
    let mut back = 0;
    for r in replicas.iter().filter(|r| r.down().is_some()) {
        if wire::models(agent, &r.url, key, model).is_ok() {
            tracing::info!(
                url = r.url,
                "policy replica answers its health check; taken back"
            );
            r.set_down(false);
            back += 1;
        }
    }
    back
}

impl RemotePolicy {
    /// Probes the replicas now left out once; those that answer are taken back. How many
    /// were.
    pub fn check_health(&self) -> usize {
        let agent = wire::agent(PROBE_TIMEOUT);
        check(
            &self.replicas,
            &agent,
            self.api_key.as_ref(),
            self.model.as_deref(),
        )
    }

    /// Runs [`RemotePolicy::check_health`] every `every` on a thread of its own, which ends
    /// when the policy is dropped; from now on a failed replica is left out until a check
    /// finds it answering. Call it once the model is named.
    pub fn with_health_checks(mut self, every: Duration) -> Self {
        let every = every.max(Duration::from_millis(10));
        let replicas: Weak<[Replica]> = Arc::downgrade(&self.replicas);
        let (key, model) = (self.api_key.clone(), self.model.clone());
        let agent = wire::agent(PROBE_TIMEOUT.min(every.max(Duration::from_millis(500))));
        let spawned = std::thread::Builder::new()
            .name("policy-health".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    let Some(replicas) = replicas.upgrade() else {
                        return;
                    };
                    check(&replicas, &agent, key.as_ref(), model.as_deref());
                }
            });
        match spawned {
            Ok(_) => self.health_checked = true,
            Err(e) => tracing::warn!("no health checks of the policy replicas: {e}"),
        }
        self
    }
}
