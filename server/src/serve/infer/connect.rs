//! Connecting to models served elsewhere (`--policy http://...`, `--aligner http://...`):
//! the tokenizer files thresh renders and counts prompts with, a probe that waits for the
//! server to come up, the start-up check of every replica
//! ([`thresh_decoding::remote::RemotePolicy::check_fleet`]: model, engine, context,
//! capabilities), and health checks of the replicas left out later.

use std::path::Path;

use thresh_decoding::remote::RemotePolicy;
use thresh_reward::ApiKey;

use super::jobs::RemotePolicyModel;
use crate::serve::config::ServeConfig;

/// What names one remote model on the command line.
struct Remote<'a> {
    /// Its flag (`--policy`).
    flag: &'static str,
    /// Its server URL, or a comma list of replicas.
    url: &'a str,
    /// Its tokenizer's flag and path.
    tokenizer: (&'static str, Option<&'a Path>),
    /// The model to ask for (default: the server's first).
    model: Option<&'a str>,
    /// The bearer token to send.
    api_key: Option<&'a ApiKey>,
}

/// Connects to the server (or fleet) in `r`: the client, with the model named, its tokenizer
/// files, the context (the server's `max_model_len` where smaller than the tokenizer
/// configuration's), and the model's name.
fn connect(cfg: &ServeConfig, r: Remote<'_>) -> anyhow::Result<(RemotePolicyModel, String)> {
    let (flag, url) = (r.flag, r.url);
    let (tokenizer_flag, tokenizer) = r.tokenizer;
    let tokenizer =
        tokenizer.ok_or_else(|| anyhow::anyhow!("{flag} {url} needs {tokenizer_flag}"))?;
    let files = thresh_models::load_tokenizer(&tokenizer.to_string_lossy())
        .map_err(|e| anyhow::anyhow!("{tokenizer_flag} {}: {e}", tokenizer.display()))?;
    let mut client = RemotePolicy::new(url)
        .map_err(|e| anyhow::anyhow!("{flag} {url}: {e}"))?
        .with_timeout(cfg.request_timeout);
    if let Some(m) = r.model {
        client = client.with_model(m);
    }
    if let Some(k) = r.api_key {
        client = client.with_api_key(k.clone());
    }
    let server = client
        .probe_waiting(cfg.policy_startup_timeout)
        .map_err(|e| anyhow::anyhow!("{flag} {url}: {e}"))?;
    if r.model.is_none() {
        client = client.with_model(server.model.clone());
    }
    let probe = files
        .tokenizer
        .encode("Hello", false)
        .ok()
        .filter(|ids| !ids.is_empty())
        .unwrap_or_else(|| files.tokenizer.eos_ids().iter().take(1).copied().collect());
    // Each replica now: it serves that model, on the same engine, with every capability.
    let server = client
        .check_fleet(&probe)
        .map_err(|e| anyhow::anyhow!("{flag} {url}: {e}"))?;
    if !cfg.policy_health_interval.is_zero() {
        client = client.with_health_checks(cfg.policy_health_interval);
    }
    let own = files.config.max_position_embeddings;
    let context = server.max_model_len.map_or(own, |m| m.min(own));
    tracing::info!(flag, url, model = %server.model, context, engine = ?server.engine, "remote model");
    Ok((
        RemotePolicyModel {
            client,
            files,
            context,
        },
        server.model,
    ))
}

/// Connects to the remote policy `--policy URL` names.
pub(super) fn remote_policy(
    cfg: &ServeConfig,
    url: &str,
) -> anyhow::Result<(RemotePolicyModel, String)> {
    connect(
        cfg,
        Remote {
            flag: "--policy",
            url,
            tokenizer: ("--policy-tokenizer", cfg.policy_tokenizer.as_deref()),
            model: cfg.policy_model.as_deref(),
            api_key: cfg.policy_api_key.as_ref(),
        },
    )
}

/// Connects to the remote aligner `--aligner URL` names (it shares the policy's start-up
/// wait and health-check interval).
pub(super) fn remote_aligner(
    cfg: &ServeConfig,
    url: &str,
) -> anyhow::Result<(RemotePolicyModel, String)> {
    connect(
        cfg,
        Remote {
            flag: "--aligner",
            url,
            tokenizer: ("--aligner-tokenizer", cfg.aligner_tokenizer.as_deref()),
            model: cfg.aligner_model.as_deref(),
            api_key: cfg.aligner_api_key.as_ref(),
        },
    )
}
