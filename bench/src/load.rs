//! `thresh-bench load`: sends a workload at the given arrival rate and concurrency, and
//! stops by itself after `num_requests` or `duration`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::arrivals::Arrivals;
use crate::client::{self, Outcome, RequestParams, Target};
use crate::dataset::WorkItem;
use crate::error::BenchError;
use crate::mix::{MixConfig, RequestKind};
use crate::report::{LoadReport, RunSettings};

/// Everything a load run needs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The server.
    pub target: Target,
    /// Shape of every request.
    pub params: RequestParams,
    /// The workload, cycled in order.
    pub items: Vec<WorkItem>,
    /// A name for the workload (echoed in the result).
    pub dataset_name: String,
    /// Stop after this many requests.
    pub num_requests: Option<usize>,
    /// Stop sending after this long.
    pub duration: Option<Duration>,
    /// Requests per second (infinite: all at once).
    pub request_rate: f64,
    /// Gamma shape of the gaps.
    pub burstiness: f64,
    /// In-flight requests at most.
    pub max_concurrency: Option<usize>,
    /// Unmeasured requests first.
    pub warmup_requests: usize,
    /// Seed of arrivals and of each request's `seed` (`seed + i`).
    pub seed: u64,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Draw a progress bar.
    pub progress: bool,
    /// A mix of request kinds (`None`: every request is shaped by `params`).
    pub mix: Option<MixConfig>,
}

/// Checks that something answers HTTP at the target (any status will do) and returns the
/// first model id from `/v1/models` if the server lists one.
pub async fn preflight(
    client: &reqwest::Client,
    target: &Target,
) -> Result<Option<String>, BenchError> {
    let url = format!("{}/v1/models", target.base_url);
    let mut req = client.get(&url).timeout(Duration::from_secs(30));
    if let Some(k) = &target.api_key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.map_err(|e| BenchError::Unreachable {
        url: target.base_url.clone(),
        reason: client::describe(&e),
    })?;
    if !resp.status().is_success() {
        return Ok(None);
    }
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    Ok(v["data"][0]["id"].as_str().map(str::to_string))
}

fn settings(cfg: &LoadConfig) -> RunSettings {
    RunSettings {
        base_url: cfg.target.base_url.clone(),
        endpoint: match cfg.target.endpoint {
            client::Endpoint::Completions => "completions".into(),
            client::Endpoint::Chat => "chat".into(),
        },
        model: cfg.target.model.clone(),
        dataset: cfg.dataset_name.clone(),
        num_requests: cfg.num_requests,
        duration_limit_s: cfg.duration.map(|d| d.as_secs_f64()),
        request_rate: cfg.request_rate.is_finite().then_some(cfg.request_rate),
        burstiness: cfg.burstiness,
        max_concurrency: cfg.max_concurrency,
        max_tokens: cfg.params.max_tokens,
        stream: cfg.params.stream,
        warmup_requests: cfg.warmup_requests,
        seed: cfg.seed,
        strategy: cfg.params.alignment.strategy.clone(),
        candidates: cfg.params.alignment.candidates,
        alpha: cfg.params.alignment.alpha,
        mix: cfg.mix.as_ref().map(|m| m.mix.to_string()),
    }
}

/// A finished load run: the aggregate and every measured request.
#[derive(Debug, Clone)]
pub struct LoadRun {
    /// The aggregate written by `--output`.
    pub report: LoadReport,
    /// Each measured request, in sending order.
    pub outcomes: Vec<Outcome>,
}

/// Runs the workload and aggregates the result. Fails only when the run cannot start (bad
/// settings, a server that does not answer at all); failed requests are counted instead.
pub async fn run_load(mut cfg: LoadConfig) -> Result<LoadRun, BenchError> {
    if cfg.num_requests.is_none() && cfg.duration.is_none() {
        return Err(BenchError::Config(
            "give --num-requests or --duration, so that the run ends".into(),
        ));
    }
    if cfg.num_requests == Some(0) || cfg.max_concurrency == Some(0) {
        return Err(BenchError::Config(
            "--num-requests and --max-concurrency must be at least 1".into(),
        ));
    }
    if cfg.items.is_empty() {
        return Err(BenchError::Config("the workload holds no prompts".into()));
    }
    let mut arrivals = Arrivals::new(cfg.request_rate, cfg.burstiness, cfg.seed)?;
    // Every body is built (and so checked) before anything is sent.
    for item in &cfg.items {
        client::body(&cfg.target, item, &cfg.params, None)?;
    }
    if let Some(m) = &cfg.mix {
        if m.candidates == 0 || !(m.alpha.is_finite() && (0.0..1.0).contains(&m.alpha)) {
            return Err(BenchError::Config(
                "--mix: candidates must be at least 1 and alpha in [0, 1)".into(),
            ));
        }
        if m.cancel_within.is_zero() {
            return Err(BenchError::Config(
                "--cancel-within must be positive".into(),
            ));
        }
    }
    // Kinds and cancellation times come from their own seeded stream, so a mix does not
    // change the arrival times.
    let mut kinds_rng = StdRng::seed_from_u64(cfg.seed ^ 0x6d69_785f_6b69_6e64);
    let http = client::http_client(cfg.timeout)?;
    let listed = preflight(&http, &cfg.target).await?;
    if cfg.target.model.is_none() {
        cfg.target.model = listed;
    }
    let cfg = Arc::new(cfg);
    let warm_start = Instant::now();
    for i in 0..cfg.warmup_requests {
        let item = &cfg.items[i % cfg.items.len()];
        let b = client::body(
            &cfg.target,
            item,
            &cfg.params,
            Some(cfg.seed.wrapping_sub(1 + i as u64)),
        )?;
        client::send(&http, &cfg.target, &b, warm_start).await;
    }
    let bar = if cfg.progress {
        let b = match cfg.num_requests {
            Some(n) => ProgressBar::new(n as u64),
            None => ProgressBar::new_spinner(),
        };
        b.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} requests {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let limit = cfg.max_concurrency.unwrap_or(Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(limit));
    let start = Instant::now();
    let deadline = cfg
        .duration
        .map(|d| tokio::time::Instant::from_std(start + d));
    let mut tasks = Vec::new();
    let mut next_at = 0.0f64;
    let mut i = 0usize;
    loop {
        if cfg.num_requests.is_some_and(|n| i >= n) {
            break;
        }
        let at = tokio::time::Instant::from_std(start + Duration::from_secs_f64(next_at));
        let wait = async {
            tokio::time::sleep_until(at).await;
            permits.clone().acquire_owned().await
        };
        let permit = match deadline {
            Some(d) => tokio::select! {
                p = wait => p,
                _ = tokio::time::sleep_until(d) => break,
            },
            None => wait.await,
        };
        let Ok(permit) = permit else { break };
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            break;
        }
        let item = cfg.items[i % cfg.items.len()].clone();
        let (kind, params) = match &cfg.mix {
            Some(m) => {
                let k = m.mix.draw(&mut kinds_rng);
                (Some(k), m.params_for(k, &cfg.params))
            }
            None => (None, cfg.params.clone()),
        };
        let cancel_within = match (&cfg.mix, kind) {
            (Some(m), Some(RequestKind::Cancel)) => {
                Some(m.cancel_within.mul_f64(kinds_rng.random_range(0.05..1.0)))
            }
            _ => None,
        };
        let body = client::body(
            &cfg.target,
            &item,
            &params,
            Some(cfg.seed.wrapping_add(i as u64)),
        )?;
        let (http, cfg2, bar2) = (http.clone(), cfg.clone(), bar.clone());
        tasks.push(tokio::spawn(async move {
            let mut o = match cancel_within {
                Some(w) => client::send_cancelled(&http, &cfg2.target, &body, start, w).await,
                None => client::send(&http, &cfg2.target, &body, start).await,
            };
            o.kind = kind;
            drop(permit);
            bar2.inc(1);
            if o.failure.is_some() {
                bar2.set_message("(some failed)");
            }
            o
        }));
        i += 1;
        next_at += arrivals.next_gap();
    }
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            Ok(o) => outcomes.push(o),
            Err(e) => {
                return Err(BenchError::Client(format!("a request task failed: {e}")));
            }
        }
    }
    bar.finish_and_clear();
    Ok(LoadRun {
        report: LoadReport::build(settings(&cfg), &outcomes),
        outcomes,
    })
}
