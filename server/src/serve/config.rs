//! `thresh serve`'s settings: command-line flags, each also settable through a `THRESH_*`
//! environment variable and a TOML file (`--config`, read by [`thresh_settings::expand`]
//! before the flags are parsed: flags, then the environment, then the file, then defaults).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use thresh_models::{DType, Device, GgmlDType};
use thresh_reward::ApiKey;

use crate::models_dir::{default_policy, default_reward};

/// Arguments of `thresh serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below, keyed by their names (`max_queue = 32`,
    /// `api_keys = ["a", "b"]`); flags and the environment win over it.
    #[arg(long, env = "THRESH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Policy model: Hugging Face directory or .gguf file (default: the demo SmolLM2), or
    /// the URL of an OpenAI-compatible server that runs it (`http://HOST:PORT[/v1]`: vLLM,
    /// thresh) with `--policy-tokenizer`.
    #[arg(long, env = "THRESH_POLICY")]
    pub policy: Option<PathBuf>,
    /// With a remote policy: its tokenizer and chat template (a Hugging Face directory or
    /// .gguf file of the same model; its weights are not loaded).
    #[arg(long, env = "THRESH_POLICY_TOKENIZER")]
    pub policy_tokenizer: Option<PathBuf>,
    /// With a remote policy: the model to ask for (default: the server's first model).
    #[arg(long, env = "THRESH_POLICY_MODEL")]
    pub policy_model: Option<String>,
    /// With a remote policy: the bearer token to send it; never logged.
    #[arg(long, env = "THRESH_POLICY_API_KEY")]
    pub policy_api_key: Option<ApiKey>,
    /// With a remote policy: seconds to wait at start-up for a server that is not up yet
    /// (refused, or still loading) before giving up (default 600).
    #[arg(long, env = "THRESH_POLICY_STARTUP_TIMEOUT")]
    pub policy_startup_timeout: Option<u64>,
    /// With a remote policy: seconds between health checks (`GET /v1/models`) of the
    /// replicas left out after a failure, each taken back once it answers (one down at
    /// start-up once it also passes the start-up check; default 2; 0: no checks, a failed
    /// replica is tried again after 5 s).
    #[arg(long, env = "THRESH_POLICY_HEALTH_INTERVAL")]
    pub policy_health_interval: Option<u64>,
    /// With a remote policy: generation requests out to each replica at once at most. A
    /// request whose replica (the one its prompt hashes to) is full goes to the next one with
    /// room, or waits for a slot while all are full (default: no limit).
    #[arg(long, env = "THRESH_POLICY_MAX_IN_FLIGHT")]
    pub policy_max_in_flight: Option<usize>,
    /// Reward model directory (default: the demo all-MiniLM-L6-v2 relevance reward).
    #[arg(long, env = "THRESH_REWARD")]
    pub reward: Option<PathBuf>,
    /// Head of sentence-embedding reward models: `relevance` or a linear head file.
    #[arg(long, env = "THRESH_REWARD_HEAD")]
    pub reward_head: Option<String>,
    /// Bearer token sent to a remote reward server (`--reward http://...`); never logged.
    #[arg(long, env = "THRESH_REWARD_API_KEY")]
    pub reward_api_key: Option<ApiKey>,
    /// Aligner corrector model (HF directory or .gguf file), served on POST /correct, or the
    /// URL of an OpenAI-compatible server that runs it (`http://HOST:PORT[/v1]`: vLLM,
    /// thresh) with `--aligner-tokenizer`.
    #[arg(long, env = "THRESH_ALIGNER")]
    pub aligner: Option<PathBuf>,
    /// With a remote aligner: its tokenizer (a Hugging Face directory or .gguf file of the
    /// same model; its weights are not loaded); its name also picks the template.
    #[arg(long, env = "THRESH_ALIGNER_TOKENIZER")]
    pub aligner_tokenizer: Option<PathBuf>,
    /// With a remote aligner: the model to ask for (default: the server's first model).
    #[arg(long, env = "THRESH_ALIGNER_MODEL")]
    pub aligner_model: Option<String>,
    /// With a remote aligner: the bearer token to send it; never logged.
    #[arg(long, env = "THRESH_ALIGNER_API_KEY")]
    pub aligner_api_key: Option<ApiKey>,
    /// Aligner prompt template: v1, current, or a string with {question} and {answer}
    /// (default: detected from the aligner's path).
    #[arg(long, env = "THRESH_ALIGNER_TEMPLATE")]
    pub aligner_template: Option<String>,
    /// Device: cpu, cuda:N or metal.
    #[arg(long, env = "THRESH_DEVICE")]
    pub device: Option<String>,
    /// Weight dtype: auto, f32, f16 or bf16.
    #[arg(long, env = "THRESH_DTYPE")]
    pub dtype: Option<String>,
    /// Weight format of the policy on the CPU: auto, dense, q8_0, q4_0, q4k, q6k.
    #[arg(long, env = "THRESH_WEIGHTS")]
    pub weights: Option<String>,
    /// Address to listen on (default 127.0.0.1).
    #[arg(long, env = "THRESH_HOST")]
    pub host: Option<IpAddr>,
    /// Port to listen on (default 8080; 0 picks a free one).
    #[arg(long, env = "THRESH_PORT")]
    pub port: Option<u16>,
    /// Accepted API key (repeatable; comma-separated in the environment). None: no auth.
    #[arg(long = "api-key", env = "THRESH_API_KEY", value_delimiter = ',')]
    pub api_keys: Vec<String>,
    /// Requests waiting for the engine at most; more are answered 429 (default 64).
    #[arg(long, env = "THRESH_MAX_QUEUE")]
    pub max_queue: Option<usize>,
    /// Requests decoded together: their decode steps run as one batched decoder pass
    /// (default 8; 1 runs requests one after another).
    #[arg(long, env = "THRESH_MAX_BATCH_REQUESTS")]
    pub max_batch_requests: Option<usize>,
    /// Largest `n`, `best_of` and `alignment.candidates` (default 64).
    #[arg(long, env = "THRESH_MAX_N")]
    pub max_n: Option<usize>,
    /// KV tokens one request may hold at once, over all its rows (default 65536).
    #[arg(long, env = "THRESH_KV_BUDGET_TOKENS")]
    pub kv_budget_tokens: Option<usize>,
    /// Largest request body in bytes (default 1 MiB).
    #[arg(long, env = "THRESH_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Seconds a request may take before it is cancelled and answered 504 (default 600).
    #[arg(long, env = "THRESH_REQUEST_TIMEOUT")]
    pub request_timeout: Option<u64>,
    /// MiB of prompt keys and values kept for reuse by later requests that start with the
    /// same tokens (default 256; 0 turns prefix caching off).
    #[arg(long, env = "THRESH_PREFIX_CACHE_MB")]
    pub prefix_cache_mb: Option<usize>,
    /// Score plain (strategy `none`) answers with the reward model unless the request says
    /// otherwise (`alignment.score`). Off by default: plain requests then cost what they cost
    /// in any other server.
    #[arg(long, env = "THRESH_SCORE_PLAIN")]
    pub score_plain: bool,
    /// Connections open at once at most; more wait in the listen backlog (default 1024).
    #[arg(long, env = "THRESH_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a connection gets to send a request's headers, counted from when it starts
    /// waiting for them, so also the idle keep-alive timeout (default 30).
    #[arg(long, env = "THRESH_HEADER_TIMEOUT")]
    pub header_timeout: Option<u64>,
    /// Seconds a client gets to send a request's body; slower ones get 408 (default 30).
    #[arg(long, env = "THRESH_BODY_TIMEOUT")]
    pub body_timeout: Option<u64>,
    /// Longest prompt in tokens (default: the policy's context less one); longer ones get 400.
    #[arg(long, env = "THRESH_MAX_INPUT_TOKENS")]
    pub max_input_tokens: Option<usize>,
    /// Largest `max_tokens` a request may ask for (default: what the context leaves).
    #[arg(long, env = "THRESH_MAX_TOKENS_LIMIT")]
    pub max_tokens_limit: Option<usize>,
    /// `max_tokens` of a chat request that gives none (default 512; at most what the context
    /// and `--max-tokens-limit` leave).
    #[arg(long, env = "THRESH_DEFAULT_CHAT_MAX_TOKENS")]
    pub default_chat_max_tokens: Option<usize>,
    /// `max_tokens` of a completions request that gives none (default 16, as OpenAI's).
    #[arg(long, env = "THRESH_DEFAULT_COMPLETION_MAX_TOKENS")]
    pub default_completion_max_tokens: Option<usize>,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM (default 30).
    #[arg(long, env = "THRESH_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<u64>,
    /// Log format: text or json.
    #[arg(long, env = "THRESH_LOG_FORMAT")]
    pub log_format: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The operator's limits on tokens per request, and the `max_tokens` of requests that give
/// none. Each is also bounded by the policy's context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLimits {
    /// Longest prompt (`None`: the context less one).
    pub max_input_tokens: Option<usize>,
    /// Largest `max_tokens` (`None`: what the context leaves).
    pub max_tokens_limit: Option<usize>,
    /// `max_tokens` of a chat request without one.
    pub default_chat_max_tokens: usize,
    /// `max_tokens` of a completions request without one.
    pub default_completion_max_tokens: usize,
}

impl Default for TokenLimits {
    fn default() -> Self {
        Self {
            max_input_tokens: None,
            max_tokens_limit: None,
            default_chat_max_tokens: 512,
            default_completion_max_tokens: 16,
        }
    }
}

/// Resolved settings of the daemon.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Policy model path.
    pub policy: PathBuf,
    /// Reward model path.
    pub reward: PathBuf,
    /// A remote policy's tokenizer and chat template.
    pub policy_tokenizer: Option<PathBuf>,
    /// A remote policy's model name.
    pub policy_model: Option<String>,
    /// A remote policy's bearer token.
    pub policy_api_key: Option<ApiKey>,
    /// How long to wait for a remote policy at start-up.
    pub policy_startup_timeout: Duration,
    /// Between health checks of a remote policy's failed replicas (zero: none).
    pub policy_health_interval: Duration,
    /// Generation requests out to each replica of a remote policy at once at most.
    pub policy_max_in_flight: Option<usize>,
    /// Reward head for sentence encoders.
    pub reward_head: Option<String>,
    /// Bearer token of a remote reward server.
    pub reward_api_key: Option<ApiKey>,
    /// Aligner corrector path, or the URL of the server that runs it.
    pub aligner: Option<PathBuf>,
    /// A remote aligner's tokenizer.
    pub aligner_tokenizer: Option<PathBuf>,
    /// A remote aligner's model name.
    pub aligner_model: Option<String>,
    /// A remote aligner's bearer token.
    pub aligner_api_key: Option<ApiKey>,
    /// Aligner template name or string; detected from the path when absent.
    pub aligner_template: Option<String>,
    /// Where the models run.
    pub device: Device,
    /// Weight dtype (`None`: the device's default).
    pub dtype: Option<DType>,
    /// Weight format of the policy (`auto`, `dense`, or a GGML type name).
    pub weights: String,
    /// Listening address.
    pub addr: SocketAddr,
    /// Accepted API keys; empty disables authentication.
    pub api_keys: Vec<String>,
    /// Queue capacity.
    pub max_queue: usize,
    /// Requests the engine decodes together.
    pub max_batch_requests: usize,
    /// Largest n / candidates.
    pub max_n: usize,
    /// KV token budget of one request.
    pub kv_budget_tokens: usize,
    /// Largest body.
    pub max_body_bytes: usize,
    /// Per-request deadline.
    pub request_timeout: Duration,
    /// Drain deadline at shutdown.
    pub shutdown_timeout: Duration,
    /// Most open connections.
    pub max_connections: usize,
    /// Deadline for a request's headers (and an idle keep-alive connection).
    pub header_timeout: Duration,
    /// Deadline for a request's body.
    pub body_timeout: Duration,
    /// Operator limits on tokens per request.
    pub tokens: TokenLimits,
    /// Score plain answers unless the request says otherwise.
    pub score_plain: bool,
    /// MiB of the prompt prefix cache.
    pub prefix_cache_mb: usize,
    /// Log format.
    pub log_format: LogFormat,
}

impl ServeConfig {
    /// Settings for the given models with every other setting at its default (port 0).
    pub fn for_models(policy: PathBuf, reward: PathBuf) -> Self {
        Self {
            policy,
            reward,
            reward_head: None,
            reward_api_key: None,
            policy_tokenizer: None,
            policy_model: None,
            policy_api_key: None,
            policy_startup_timeout: Duration::from_secs(600),
            policy_health_interval: Duration::from_secs(2),
            policy_max_in_flight: None,
            aligner: None,
            aligner_tokenizer: None,
            aligner_model: None,
            aligner_api_key: None,
            aligner_template: None,
            device: Device::Cpu,
            dtype: None,
            weights: "auto".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_keys: Vec::new(),
            max_queue: 64,
            max_batch_requests: 8,
            max_n: 64,
            kv_budget_tokens: 65536,
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(600),
            shutdown_timeout: Duration::from_secs(30),
            max_connections: 1024,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            tokens: TokenLimits::default(),
            score_plain: false,
            prefix_cache_mb: 256,
            log_format: LogFormat::Text,
        }
    }

    /// The remote policy's URL, when `--policy` is one.
    pub fn remote_policy(&self) -> Option<&str> {
        thresh_reward::remote_url(&self.policy)
    }

    /// The weight quantisation the policy loads with.
    pub fn quant(&self) -> anyhow::Result<Option<GgmlDType>> {
        if self.remote_policy().is_some() {
            return Ok(None);
        }
        Ok(thresh_models::parse_quant(
            &self.weights,
            &self.policy.to_string_lossy(),
        )?)
    }
}

/// Parses `cpu`, `cuda`, `cuda:N` or `metal` into a device ([`thresh_models::parse_device`]),
/// with a clear error where this build lacks the backend.
pub fn parse_device(s: &str) -> anyhow::Result<Device> {
    thresh_models::parse_device(s).map_err(|e| anyhow::anyhow!("--device: {e}"))
}

/// Parses `auto`, `f32`, `f16` or `bf16`.
pub fn parse_dtype(s: &str) -> anyhow::Result<Option<DType>> {
    match s.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(None),
        "f32" | "float32" => Ok(Some(DType::F32)),
        "f16" | "float16" => Ok(Some(DType::F16)),
        "bf16" | "bfloat16" => Ok(Some(DType::BF16)),
        other => anyhow::bail!("--dtype {other}: expected auto, f32, f16 or bf16"),
    }
}

/// Checks the flags of a model (`--policy`, `--aligner`) that may run on a server: one named
/// by its `url` may have `--WHAT-tokenizer`, which must exist (without it, the server's own
/// tokenizer is used); that flag and each of `remote_only` that is given are only for one on
/// a server.
fn check_remote(
    what: &str,
    url: Option<&str>,
    tokenizer: Option<&std::path::Path>,
    remote_only: &[(bool, &str)],
) -> anyhow::Result<()> {
    let tokenizer_flag = format!("--{what}-tokenizer");
    match (url, tokenizer) {
        (Some(_), Some(t)) if !t.exists() => {
            anyhow::bail!(
                "{tokenizer_flag} {}: no such file or directory",
                t.display()
            )
        }
        _ => {}
    }
    let given = std::iter::once((tokenizer.is_some(), tokenizer_flag.as_str()))
        .chain(remote_only.iter().copied());
    for (given, flag) in given {
        if given && url.is_none() {
            anyhow::bail!("{flag} is for a remote {what} (--{what} http://...)");
        }
    }
    Ok(())
}

impl ServeArgs {
    /// Fills in the defaults and checks every value (the settings file is already among the
    /// flags: [`thresh_settings::expand`]).
    pub fn resolve(self) -> anyhow::Result<ServeConfig> {
        let policy_given = self.policy.clone();
        let reward_given = self.reward.clone();
        let policy = policy_given.clone().unwrap_or_else(default_policy);
        let reward = reward_given.clone().unwrap_or_else(default_reward);
        for (given, path, what, flag) in [
            (&policy_given, &policy, "policy", "--policy"),
            (&reward_given, &reward, "reward model", "--reward"),
        ] {
            if thresh_reward::remote_url(path).is_none() && !path.exists() {
                if given.is_none() {
                    anyhow::bail!(
                        "the demo {what} {} is missing: run `bash scripts/fetch-models.sh` (or pass {flag})",
                        path.display()
                    );
                }
                anyhow::bail!("{flag} {}: no such file or directory", path.display());
            }
        }
        check_remote(
            "policy",
            thresh_reward::remote_url(&policy),
            self.policy_tokenizer.as_deref(),
            &[
                (self.policy_model.is_some(), "--policy-model"),
                (self.policy_api_key.is_some(), "--policy-api-key"),
                (
                    self.policy_startup_timeout.is_some(),
                    "--policy-startup-timeout",
                ),
                (
                    self.policy_health_interval.is_some(),
                    "--policy-health-interval",
                ),
                (
                    self.policy_max_in_flight.is_some(),
                    "--policy-max-in-flight",
                ),
            ],
        )?;
        if let Some(url) = self.aligner.as_deref().and_then(thresh_reward::remote_url)
            && self.aligner_tokenizer.is_none()
            && self.aligner_template.is_none()
        {
            anyhow::bail!(
                "--aligner {url} is a server: give --aligner-tokenizer PATH (the model's Hugging \
                 Face directory or .gguf file) or --aligner-template NAME, so thresh knows its \
                 prompt format"
            );
        }
        check_remote(
            "aligner",
            self.aligner.as_deref().and_then(thresh_reward::remote_url),
            self.aligner_tokenizer.as_deref(),
            &[
                (self.aligner_model.is_some(), "--aligner-model"),
                (self.aligner_api_key.is_some(), "--aligner-api-key"),
            ],
        )?;
        if self.reward_api_key.is_some() && thresh_reward::remote_url(&reward).is_none() {
            anyhow::bail!(
                "--reward-api-key is for a remote reward server (--reward http://...), not {}",
                reward.display()
            );
        }
        let device = parse_device(self.device.as_deref().unwrap_or("cpu"))?;
        let dtype = parse_dtype(self.dtype.as_deref().unwrap_or("auto"))?;
        let log_format = match self.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => anyhow::bail!("--log-format {other}: expected text or json"),
        };
        let host = self.host.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let port = self.port.unwrap_or(8080);
        let mut api_keys = self.api_keys;
        api_keys.retain(|k| !k.is_empty());
        let positive = |name: &str, v: usize| -> anyhow::Result<usize> {
            if v == 0 {
                anyhow::bail!("--{name} must be at least 1");
            }
            Ok(v)
        };
        let seconds = |name: &str, v: u64| -> anyhow::Result<Duration> {
            Ok(Duration::from_secs(positive(name, v as usize)? as u64))
        };
        // The defaults live in `ServeConfig::for_models`; a flag replaces one.
        let d = ServeConfig::for_models(policy, reward);
        let t = d.tokens;
        let tokens = TokenLimits {
            max_input_tokens: match self.max_input_tokens {
                Some(v) => Some(positive("max-input-tokens", v)?),
                None => t.max_input_tokens,
            },
            max_tokens_limit: match self.max_tokens_limit {
                Some(v) => Some(positive("max-tokens-limit", v)?),
                None => t.max_tokens_limit,
            },
            default_chat_max_tokens: positive(
                "default-chat-max-tokens",
                self.default_chat_max_tokens
                    .unwrap_or(t.default_chat_max_tokens),
            )?,
            default_completion_max_tokens: positive(
                "default-completion-max-tokens",
                self.default_completion_max_tokens
                    .unwrap_or(t.default_completion_max_tokens),
            )?,
        };
        let cfg = ServeConfig {
            reward_head: self.reward_head,
            reward_api_key: self.reward_api_key,
            policy_tokenizer: self.policy_tokenizer,
            policy_model: self.policy_model,
            policy_api_key: self.policy_api_key,
            policy_startup_timeout: self
                .policy_startup_timeout
                .map_or(d.policy_startup_timeout, Duration::from_secs),
            policy_health_interval: self
                .policy_health_interval
                .map_or(d.policy_health_interval, Duration::from_secs),
            policy_max_in_flight: self
                .policy_max_in_flight
                .map(|n| positive("policy-max-in-flight", n))
                .transpose()?,
            aligner: self.aligner,
            aligner_tokenizer: self.aligner_tokenizer,
            aligner_model: self.aligner_model,
            aligner_api_key: self.aligner_api_key,
            aligner_template: self.aligner_template,
            device,
            dtype,
            weights: self.weights.unwrap_or_else(|| d.weights.clone()),
            addr: SocketAddr::new(host, port),
            api_keys,
            max_queue: positive("max-queue", self.max_queue.unwrap_or(d.max_queue))?,
            max_batch_requests: positive(
                "max-batch-requests",
                self.max_batch_requests.unwrap_or(d.max_batch_requests),
            )?,
            max_n: positive("max-n", self.max_n.unwrap_or(d.max_n))?,
            kv_budget_tokens: positive(
                "kv-budget-tokens",
                self.kv_budget_tokens.unwrap_or(d.kv_budget_tokens),
            )?,
            max_body_bytes: positive(
                "max-body-bytes",
                self.max_body_bytes.unwrap_or(d.max_body_bytes),
            )?,
            request_timeout: match self.request_timeout {
                Some(v) => seconds("request-timeout", v)?,
                None => d.request_timeout,
            },
            shutdown_timeout: self
                .shutdown_timeout
                .map_or(d.shutdown_timeout, Duration::from_secs),
            max_connections: positive(
                "max-connections",
                self.max_connections.unwrap_or(d.max_connections),
            )?,
            header_timeout: match self.header_timeout {
                Some(v) => seconds("header-timeout", v)?,
                None => d.header_timeout,
            },
            body_timeout: match self.body_timeout {
                Some(v) => seconds("body-timeout", v)?,
                None => d.body_timeout,
            },
            tokens,
            score_plain: self.score_plain,
            prefix_cache_mb: self.prefix_cache_mb.unwrap_or(d.prefix_cache_mb),
            log_format,
            ..d
        };
        cfg.quant()?;
        Ok(cfg)
    }
}
