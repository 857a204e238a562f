//! Connecting to models served elsewhere (`--policy http://...`, `--aligner http://...`):
//! the tokenizer thresh renders and counts prompts with (the files `--policy-tokenizer`
//! names, or else the server's own `/tokenize` and `/detokenize`), a probe that waits for the
//! server to come up, the start-up check of every replica
//! ([`thresh_decoding::remote::RemotePolicy::check_fleet`]: model, engine, context,
//! capabilities), and health checks of the replicas left out later.

use std::path::Path;
use std::sync::Arc;

use thresh_decoding::remote::{PolicyCodec, RemotePolicy, ServerTokenizer};
use thresh_models::{ChatTemplate, Tokenizer};
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
    /// Generation requests out to each replica at most.
    max_in_flight: Option<usize>,
}

/// The tokenizer thresh uses for a remote model: its files, or what the server says of its
/// own (read before the start-up check, which needs a prompt's ids).
enum Source {
    Files(Box<thresh_models::TokenizerFiles>),
    Server(ServerTokenizer),
}

/// Connects to the server (or fleet) in `r`: the client, with the model named, its tokenizer
/// (files, or the server's), the context (the server's `max_model_len` where smaller than the
/// tokenizer configuration's), and the model's name.
fn connect(cfg: &ServeConfig, r: Remote<'_>) -> anyhow::Result<(RemotePolicyModel, String)> {
    let (flag, url) = (r.flag, r.url);
    let (tokenizer_flag, tokenizer) = r.tokenizer;
    let files = tokenizer
        .map(|t| {
            thresh_models::load_tokenizer(&t.to_string_lossy())
                .map_err(|e| anyhow::anyhow!("{tokenizer_flag} {}: {e}", t.display()))
        })
        .transpose()?;
    let mut client = RemotePolicy::new(url)
        .map_err(|e| anyhow::anyhow!("{flag} {url}: {e}"))?
        .with_timeout(cfg.request_timeout);
    if let Some(m) = r.model {
        client = client.with_model(m);
    }
    if let Some(k) = r.api_key {
        client = client.with_api_key(k.clone());
    }
    if let Some(n) = r.max_in_flight {
        client = client.with_max_in_flight(n);
    }
    let server = client
        .probe_waiting(cfg.policy_startup_timeout)
        .map_err(|e| anyhow::anyhow!("{flag} {url}: {e}"))?;
    if r.model.is_none() {
        client = client.with_model(server.model.clone());
    }
    let source = match files {
        Some(f) => Source::Files(Box::new(f)),
        None => Source::Server(client.server_tokenizer().map_err(|e| {
            anyhow::anyhow!(
                "{flag} {url}: no {tokenizer_flag} given, and the server's own tokenizer cannot \
                 be used ({e}): give {tokenizer_flag} PATH (the model's Hugging Face directory \
                 or .gguf file)"
            )
        })?),
    };
    let probe = match &source {
        Source::Files(f) => f.tokenizer.encode("Hello", false).ok(),
        Source::Server(_) => client.tokenize("Hello", false).ok(),
    }
    .filter(|ids| !ids.is_empty())
    .unwrap_or_else(|| vec![0]);
    // Each replica now: it serves that model, on the same engine, with every capability.
    let server = client
        .check_fleet(&probe)
        .map_err(|e| anyhow::anyhow!("{flag} {url}: {e}"))?;
    if !cfg.policy_health_interval.is_zero() {
        client = client.with_health_checks(cfg.policy_health_interval);
    }
    let client = Arc::new(client);
    let (tokenizer, chat_template, vocab_size, own) = match source {
        Source::Files(f) => {
            let f = *f;
            (
                f.tokenizer,
                f.chat_template,
                Some(f.config.vocab_size),
                Some(f.config.max_position_embeddings),
            )
        }
        Source::Server(info) => server_side(&client, info)
            .map_err(|e| anyhow::anyhow!("{flag} {url}: the server's tokenizer: {e}"))?,
    };
    let context = match (server.max_model_len, own) {
        (Some(m), Some(o)) => m.min(o),
        (Some(c), None) | (None, Some(c)) => c,
        (None, None) => anyhow::bail!(
            "{flag} {url}: the server does not say its context: give {tokenizer_flag} PATH"
        ),
    };
    tracing::info!(
        flag, url, model = %server.model, context, engine = ?server.engine,
        tokenizer = if tokenizer.is_remote() { "the server's" } else { "files" },
        "remote model"
    );
    Ok((
        RemotePolicyModel {
            client,
            tokenizer,
            chat_template,
            vocab_size,
            context,
        },
        server.model,
    ))
}

/// The tokenizer that runs on `client`'s servers and the chat template they told of.
type ServerSide = (
    Tokenizer,
    Option<ChatTemplate>,
    Option<usize>,
    Option<usize>,
);

/// [`ServerSide`] from what the server said of its tokenizer.
fn server_side(client: &Arc<RemotePolicy>, info: ServerTokenizer) -> anyhow::Result<ServerSide> {
    let (bos, eos) = (info.bos_token.clone(), info.eos_token.clone());
    let template = info
        .chat_template
        .as_deref()
        .map(|t| {
            ChatTemplate::new(
                t,
                bos.as_deref().unwrap_or(""),
                eos.as_deref().unwrap_or(""),
            )
        })
        .transpose()?;
    let tokenizer = Tokenizer::remote(
        Arc::new(PolicyCodec::new(client.clone())),
        bos,
        eos,
        info.eos_ids,
        info.special_ids,
        info.vocab_size,
    )?;
    Ok((tokenizer, template, info.vocab_size, info.context))
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
            max_in_flight: cfg.policy_max_in_flight,
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
            max_in_flight: None,
        },
    )
}
