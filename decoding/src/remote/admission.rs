//! Taking in a replica that was down at start-up. The start-up check
//! ([`RemotePolicy::check_fleet`]) could not ask it, so it gets no request until a health check
//! finds it answering and has run that same check on it. It must serve the model, run the
//! fleet's engine (with at least as many slots, for llama-servers) and offer at least the
//! fleet's context, and it must pass the capability check. A replica that fails stays out,
//! its reason logged once.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use thresh_reward::ApiKey;

use super::{Engine, RemotePolicy, Replica, ServerInfo, wire};

/// What the start-up check found, which a late replica must match.
#[derive(Debug, Clone)]
pub(super) struct Admission {
    /// The capability check's prompt.
    pub(super) prompt: Vec<u32>,
    /// What the fleet offers.
    pub(super) fleet: ServerInfo,
}

impl Admission {
    /// Why a replica whose probe says `info` cannot join the fleet, if it cannot.
    fn misfit(&self, info: &ServerInfo) -> Option<String> {
        let fleet = &self.fleet;
        match (fleet.engine, info.engine) {
            (Engine::OpenAi, Engine::OpenAi) => {}
            (Engine::LlamaCpp { slots: want }, Engine::LlamaCpp { slots }) => {
                if slots < want {
                    return Some(format!(
                        "it has {slots} slots, and the fleet sends requests of up to {want} rows"
                    ));
                }
            }
            (_, _) => {
                return Some(format!(
                    "it speaks {} while the fleet speaks {}",
                    info.engine.dialect(),
                    fleet.engine.dialect()
                ));
            }
        }
        match (fleet.max_model_len, info.max_model_len) {
            (Some(want), Some(has)) if has < want => Some(format!(
                "its context is {has} tokens, smaller than the fleet's {want}"
            )),
            (Some(want), None) => Some(format!(
                "it does not say its context, and the fleet's is {want} tokens"
            )),
            _ => None,
        }
    }
}

/// Longest wait for one health probe.
pub(super) const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Longest wait for each request of a late start-up check (a probe and a one-token
/// completion, which a busy server may queue).
pub(super) const ADMISSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs the start-up check late on `replica`, left out since start-up, whose probe now says
/// `info`: if it passes, the replica is admitted and taken in (`true`); if not, it stays out,
/// its time out restarted, and the reason is logged when it differs from the last one.
pub(super) fn take_in(
    replica: &Replica,
    info: &ServerInfo,
    admission: &Mutex<Option<Admission>>,
    agent: &ureq::Agent,
    key: Option<&ApiKey>,
    model: Option<&str>,
) -> bool {
    match admit(replica, info, admission, agent, key, model) {
        Ok(()) => {
            tracing::info!(
                url = replica.url,
                "policy replica, down at start-up, passed the start-up check; taken in"
            );
            replica.set_down(false);
            true
        }
        Err(why) => {
            if let Ok(mut last) = replica.refusal.lock() {
                if last.as_deref() != Some(why.as_str()) {
                    tracing::warn!(
                        url = replica.url,
                        %why,
                        "policy replica, down at start-up, fails the start-up check; left out"
                    );
                }
                *last = Some(why);
            }
            replica.set_down(true);
            false
        }
    }
}

/// The start-up check, run late on `replica` whose probe says `info`: `Ok` once it has passed
/// and is admitted, else why not. Without a start-up check having run, every replica is
/// admitted.
fn admit(
    replica: &Replica,
    info: &ServerInfo,
    admission: &Mutex<Option<Admission>>,
    agent: &ureq::Agent,
    key: Option<&ApiKey>,
    model: Option<&str>,
) -> Result<(), String> {
    let Some(gate) = admission.lock().ok().and_then(|a| a.clone()) else {
        replica.admitted.store(true, Ordering::Release);
        return Ok(());
    };
    if let Some(why) = gate.misfit(info) {
        return Err(why);
    }
    let one = RemotePolicy::alone(
        replica.url.clone(),
        model.map(str::to_string),
        key.cloned(),
        agent.clone(),
        Some(info.engine),
    );
    one.check_capabilities(&gate.prompt)
        .map_err(|e| e.to_string())?;
    replica.admitted.store(true, Ordering::Release);
    Ok(())
}

impl RemotePolicy {
    /// Without health checks: the start-up check, late, of each replica down at start-up
    /// whose [`super::DOWN_FOR`] has passed: a probe (up to 2 s) and, if it answers, a
    /// 1-token completion, before the request that finds it due.
    pub(super) fn admit_due(&self) {
        let due = |r: &&Replica| {
            !r.is_admitted() && r.down().is_none_or(|t| t.elapsed() >= super::DOWN_FOR)
        };
        if !self.replicas.iter().any(|r| due(&r)) {
            return;
        }
        let (key, model) = (self.api_key.as_ref(), self.model.as_deref());
        let (probe, agent) = (wire::agent(PROBE_TIMEOUT), wire::agent(ADMISSION_TIMEOUT));
        for r in self.replicas.iter().filter(due) {
            match wire::models(&probe, &r.url, key, model) {
                Ok(info) => {
                    take_in(r, &info, &self.admission, &agent, key, model);
                }
                Err(_) => r.set_down(true),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(engine: Engine, context: Option<usize>) -> ServerInfo {
        ServerInfo {
            model: "m".into(),
            max_model_len: context,
            engine,
        }
    }

    #[test]
    fn a_late_replica_must_match_the_fleets_engine_slots_and_context() {
        let gate = |engine, context| Admission {
            prompt: vec![1],
            fleet: info(engine, context),
        };
        let vllm = gate(Engine::OpenAi, Some(2048));
        assert_eq!(vllm.misfit(&info(Engine::OpenAi, Some(2048))), None);
        assert_eq!(vllm.misfit(&info(Engine::OpenAi, Some(4096))), None);
        let small = vllm.misfit(&info(Engine::OpenAi, Some(1024))).unwrap();
        assert!(small.contains("1024") && small.contains("2048"), "{small}");
        let silent = vllm.misfit(&info(Engine::OpenAi, None)).unwrap();
        assert!(silent.contains("does not say its context"), "{silent}");
        let other = vllm
            .misfit(&info(Engine::LlamaCpp { slots: 4 }, Some(2048)))
            .unwrap();
        assert!(other.contains("llama-server"), "{other}");

        let llama = gate(Engine::LlamaCpp { slots: 4 }, None);
        assert_eq!(
            llama.misfit(&info(Engine::LlamaCpp { slots: 8 }, None)),
            None
        );
        let few = llama
            .misfit(&info(Engine::LlamaCpp { slots: 2 }, Some(512)))
            .unwrap();
        assert!(few.contains("2 slots") && few.contains("4 rows"), "{few}");
    }
}
