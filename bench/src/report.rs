//! The result of a load run: what `--output` writes (schema in `bench/SCHEMA.md`), built
//! from the per-request outcomes, and its table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::Outcome;
use crate::stats::{Summary, rate};

/// The schema tag of load results.
pub const LOAD_SCHEMA: &str = "thresh-bench/load/v1";

/// Settings the run used, echoed into the result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSettings {
    /// Base URL of the target.
    pub base_url: String,
    /// `completions` or `chat`.
    pub endpoint: String,
    /// The `model` sent, if any.
    pub model: Option<String>,
    /// `builtin`, `random` or the JSONL path.
    pub dataset: String,
    /// `--num-requests` (null: bounded by `--duration` only).
    pub num_requests: Option<usize>,
    /// `--duration` in seconds, if given.
    pub duration_limit_s: Option<f64>,
    /// Requests per second (null: infinite, all at once).
    pub request_rate: Option<f64>,
    /// Gamma shape of the arrivals (1: Poisson).
    pub burstiness: f64,
    /// In-flight requests at most (null: unbounded).
    pub max_concurrency: Option<usize>,
    /// `max_tokens` of each request (random datasets: the output length).
    pub max_tokens: usize,
    /// Streamed requests.
    pub stream: bool,
    /// Warm-up requests sent before the measurement.
    pub warmup_requests: usize,
    /// Seed of arrivals, random prompts and request seeds.
    pub seed: u64,
    /// thresh `alignment.strategy` sent, if any.
    pub strategy: Option<String>,
    /// thresh `alignment.candidates` sent, if any.
    pub candidates: Option<usize>,
    /// thresh `alignment.alpha` sent, if any.
    pub alpha: Option<f64>,
    /// `--mix` as `kind=weight,...` (null: a single-kind run).
    #[serde(default)]
    pub mix: Option<String>,
}

/// Requests by fate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Counts {
    /// Requests sent.
    pub sent: usize,
    /// Answered in full.
    pub completed: usize,
    /// Failed (an error status, an error in the stream, or no response).
    pub failed: usize,
    /// Dropped by the client on purpose (`--mix ...,cancel=w`); not failures.
    #[serde(default)]
    pub cancelled: usize,
}

/// The requests of one kind of a `--mix` run, by fate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KindCounts {
    /// Requests of this kind sent.
    pub sent: usize,
    /// Answered in full.
    pub ok: usize,
    /// Dropped by the client on purpose.
    pub cancelled: usize,
    /// Failed.
    pub failed: usize,
    /// Failures per HTTP status (`"none"`: no response).
    pub failed_by_status: BTreeMap<String, usize>,
}

/// One kind of failure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureGroup {
    /// HTTP status (null: no response; 200: an error inside the stream).
    pub status: Option<u16>,
    /// The server's message or the transport error.
    pub error: String,
    /// Requests that failed this way.
    pub count: usize,
}

/// Throughputs over the measured duration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Throughput {
    /// Completed requests per second.
    pub requests_per_s: f64,
    /// Output tokens per second.
    pub output_tokens_per_s: f64,
    /// Prompt plus output tokens per second.
    pub total_tokens_per_s: f64,
}

/// Token totals over completed requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tokens {
    /// Prompt tokens (from `usage`).
    pub prompt: usize,
    /// Output tokens (`usage`, else output chunks).
    pub output: usize,
    /// Completed requests whose response carried `usage`.
    pub requests_with_usage: usize,
}

/// Latency summaries in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latencies {
    /// Time to first token.
    pub ttft: Summary,
    /// Time per output token after the first.
    pub tpot: Summary,
    /// Inter-token latency (gaps between output chunks).
    pub itl: Summary,
    /// End to end.
    pub e2e: Summary,
}

/// What thresh's responses told about alignment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlignmentReport {
    /// Completed requests whose response carried an `alignment` object.
    pub responses: usize,
    /// Responses per strategy name.
    pub strategies: BTreeMap<String, usize>,
    /// Reward of the returned answers.
    pub reward: Summary,
    /// Every numeric field of `alignment.stats`, summarised over responses.
    pub stats: BTreeMap<String, Summary>,
}

/// Completions and output tokens per time bin, for the throughput chart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timeline {
    /// Bin width in seconds.
    pub bin_s: f64,
    /// Output tokens per second in each bin.
    pub output_tokens_per_s: Vec<f64>,
    /// Requests completed in each bin.
    pub completed: Vec<usize>,
}

/// The result of `thresh-bench load`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    /// [`LOAD_SCHEMA`].
    pub schema: String,
    /// The settings.
    pub settings: RunSettings,
    /// Requests by fate.
    pub requests: Counts,
    /// Failures by status code: `"429"`, ..., `"none"` for no response.
    pub failed_by_status: BTreeMap<String, usize>,
    /// Counts per request kind of a `--mix` run (empty otherwise).
    #[serde(default)]
    pub by_kind: BTreeMap<String, KindCounts>,
    /// Failures by status and message.
    pub failures: Vec<FailureGroup>,
    /// From the first request sent to the last answer, in seconds.
    pub duration_s: f64,
    /// Throughputs.
    pub throughput: Throughput,
    /// Token totals.
    pub tokens: Tokens,
    /// Latencies in milliseconds.
    pub latency_ms: Latencies,
    /// From thresh's `alignment` objects; null when no response carried one.
    pub alignment: Option<AlignmentReport>,
    /// Throughput over time.
    pub timeline: Timeline,
}

fn ms(v: impl Iterator<Item = f64>) -> Summary {
    Summary::of(&v.map(|s| s * 1e3).collect::<Vec<_>>())
}

fn alignment(ok: &[&Outcome]) -> Option<AlignmentReport> {
    let with: Vec<&Value> = ok.iter().filter_map(|o| o.alignment.as_ref()).collect();
    let rewards: Vec<f64> = ok.iter().filter_map(|o| o.reward).collect();
    if with.is_empty() && rewards.is_empty() {
        return None;
    }
    let mut strategies = BTreeMap::new();
    let mut fields: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for a in &with {
        let name = a["strategy"].as_str().unwrap_or("unknown").to_string();
        *strategies.entry(name).or_insert(0) += 1;
        if let Some(stats) = a["stats"].as_object() {
            for (k, v) in stats {
                if let Some(x) = v.as_f64() {
                    fields.entry(k.clone()).or_default().push(x);
                }
            }
        }
    }
    Some(AlignmentReport {
        responses: with.len(),
        strategies,
        reward: Summary::of(&rewards),
        stats: fields
            .into_iter()
            .map(|(k, v)| (k, Summary::of(&v)))
            .collect(),
    })
}

fn timeline(ok: &[&Outcome], duration: f64) -> Timeline {
    let bins = 50usize;
    let bin_s = (duration / bins as f64).max(1e-3);
    let n = ((duration / bin_s).ceil() as usize).max(1);
    let mut tokens = vec![0.0f64; n];
    let mut completed = vec![0usize; n];
    let idx = |t: f64| ((t / bin_s) as usize).min(n - 1);
    for o in ok {
        let end = o.sent_at + o.latency;
        completed[idx(end)] += 1;
        if o.chunk_times.is_empty() {
            tokens[idx(end)] += o.output_tokens as f64;
        } else {
            // Spread the request's tokens over its output chunks.
            let per = o.output_tokens as f64 / o.chunk_times.len() as f64;
            for &t in &o.chunk_times {
                tokens[idx(t)] += per;
            }
        }
    }
    Timeline {
        bin_s,
        output_tokens_per_s: tokens.iter().map(|t| t / bin_s).collect(),
        completed,
    }
}

impl LoadReport {
    /// Aggregates the outcomes of the measured requests.
    pub fn build(settings: RunSettings, outcomes: &[Outcome]) -> Self {
        let ok: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| o.failure.is_none() && !o.cancelled)
            .collect();
        let cancelled = outcomes.iter().filter(|o| o.cancelled).count();
        let mut by_kind: BTreeMap<String, KindCounts> = BTreeMap::new();
        for o in outcomes {
            let Some(k) = o.kind else { continue };
            let c = by_kind.entry(k.name().to_string()).or_default();
            c.sent += 1;
            match &o.failure {
                Some(f) => {
                    c.failed += 1;
                    let key = f
                        .status
                        .map_or_else(|| "none".to_string(), |s| s.to_string());
                    *c.failed_by_status.entry(key).or_insert(0) += 1;
                }
                None if o.cancelled => c.cancelled += 1,
                None => c.ok += 1,
            }
        }
        let start = outcomes
            .iter()
            .map(|o| o.sent_at)
            .fold(f64::INFINITY, f64::min);
        let end = outcomes
            .iter()
            .map(|o| o.sent_at + o.latency)
            .fold(0.0f64, f64::max);
        let duration = if outcomes.is_empty() {
            0.0
        } else {
            (end - start.min(end)).max(0.0)
        };
        let mut failed_by_status = BTreeMap::new();
        let mut groups: BTreeMap<(Option<u16>, String), usize> = BTreeMap::new();
        for f in outcomes.iter().filter_map(|o| o.failure.as_ref()) {
            let key = f
                .status
                .map_or_else(|| "none".to_string(), |s| s.to_string());
            *failed_by_status.entry(key).or_insert(0) += 1;
            *groups.entry((f.status, f.message.clone())).or_insert(0) += 1;
        }
        let output: usize = ok.iter().map(|o| o.output_tokens).sum();
        let prompt: usize = ok.iter().filter_map(|o| o.prompt_tokens).sum();
        let completed = ok.len();
        let shifted: Vec<Outcome> = ok
            .iter()
            .map(|o| {
                let mut o = (*o).clone();
                o.sent_at -= start;
                o.chunk_times.iter_mut().for_each(|t| *t -= start);
                o
            })
            .collect();
        let shifted_refs: Vec<&Outcome> = shifted.iter().collect();
        LoadReport {
            schema: LOAD_SCHEMA.into(),
            settings,
            requests: Counts {
                sent: outcomes.len(),
                completed,
                failed: outcomes.len() - completed - cancelled,
                cancelled,
            },
            failed_by_status,
            by_kind,
            failures: groups
                .into_iter()
                .map(|((status, error), count)| FailureGroup {
                    status,
                    error,
                    count,
                })
                .collect(),
            duration_s: duration,
            throughput: Throughput {
                requests_per_s: rate(completed as f64, duration),
                output_tokens_per_s: rate(output as f64, duration),
                total_tokens_per_s: rate((output + prompt) as f64, duration),
            },
            tokens: Tokens {
                prompt,
                output,
                requests_with_usage: ok.iter().filter(|o| o.has_usage).count(),
            },
            latency_ms: Latencies {
                ttft: ms(ok.iter().filter_map(|o| o.ttft)),
                tpot: ms(ok.iter().filter_map(|o| o.tpot())),
                itl: ms(ok.iter().flat_map(|o| o.itl.iter().copied())),
                e2e: ms(ok.iter().map(|o| o.latency)),
            },
            alignment: alignment(&ok),
            timeline: timeline(&shifted_refs, duration),
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let line = "=".repeat(68);
        let _ = writeln!(s, "{line}");
        let _ = writeln!(s, "{:<40}{:>28}", "Target", self.settings.base_url);
        let row = |s: &mut String, k: &str, v: String| {
            let _ = writeln!(s, "{k:<40}{v:>28}");
        };
        row(
            &mut s,
            "Successful requests",
            self.requests.completed.to_string(),
        );
        row(&mut s, "Failed requests", self.requests.failed.to_string());
        for (status, n) in &self.failed_by_status {
            row(&mut s, &format!("  status {status}"), n.to_string());
        }
        if self.requests.cancelled > 0 || !self.by_kind.is_empty() {
            row(
                &mut s,
                "Cancelled by design",
                self.requests.cancelled.to_string(),
            );
        }
        if !self.by_kind.is_empty() {
            let _ = writeln!(
                s,
                "{:<24}{:>8}{:>8}{:>11}{:>8}  failed by status",
                "kind", "sent", "ok", "cancelled", "failed"
            );
            for (k, c) in &self.by_kind {
                let st: Vec<String> = c
                    .failed_by_status
                    .iter()
                    .map(|(s, n)| format!("{s}:{n}"))
                    .collect();
                let _ = writeln!(
                    s,
                    "{:<24}{:>8}{:>8}{:>11}{:>8}  {}",
                    k,
                    c.sent,
                    c.ok,
                    c.cancelled,
                    c.failed,
                    if st.is_empty() {
                        "-".to_string()
                    } else {
                        st.join(" ")
                    }
                );
            }
        }
        row(&mut s, "Duration (s)", format!("{:.2}", self.duration_s));
        row(&mut s, "Output tokens", self.tokens.output.to_string());
        row(
            &mut s,
            "Request throughput (req/s)",
            format!("{:.3}", self.throughput.requests_per_s),
        );
        row(
            &mut s,
            "Output token throughput (tok/s)",
            format!("{:.2}", self.throughput.output_tokens_per_s),
        );
        row(
            &mut s,
            "Total token throughput (tok/s)",
            format!("{:.2}", self.throughput.total_tokens_per_s),
        );
        let _ = writeln!(
            s,
            "{:<20}{:>12}{:>12}{:>12}{:>12}",
            "latency (ms)", "mean", "median", "p90", "p99"
        );
        let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.1}"));
        for (name, sm) in [
            ("TTFT", &self.latency_ms.ttft),
            ("TPOT", &self.latency_ms.tpot),
            ("ITL", &self.latency_ms.itl),
            ("E2E", &self.latency_ms.e2e),
        ] {
            let _ = writeln!(
                s,
                "{:<20}{:>12}{:>12}{:>12}{:>12}",
                name,
                f(sm.mean),
                f(sm.median),
                f(sm.p90),
                f(sm.p99)
            );
        }
        if let Some(a) = &self.alignment {
            let g = |x: Option<f64>| {
                x.map_or("-".to_string(), |v| {
                    if v.abs() >= 1e5 {
                        format!("{v:.3e}")
                    } else {
                        format!("{v:.3}")
                    }
                })
            };
            let _ = writeln!(
                s,
                "alignment ({} responses: {:?})",
                a.responses, a.strategies
            );
            let _ = writeln!(
                s,
                "{:<20}{:>12}{:>12}{:>12}{:>12}",
                "reward",
                g(a.reward.mean),
                g(a.reward.median),
                g(a.reward.p90),
                g(a.reward.p99)
            );
            for (k, sm) in &a.stats {
                let _ = writeln!(
                    s,
                    "{:<20}{:>12}{:>12}{:>12}{:>12}",
                    k,
                    g(sm.mean),
                    g(sm.median),
                    g(sm.p90),
                    g(sm.p99)
                );
            }
        }
        for fg in &self.failures {
            let status = fg
                .status
                .map_or("no response".to_string(), |s| s.to_string());
            let _ = writeln!(s, "failed x{} ({status}): {}", fg.count, fg.error);
        }
        let _ = writeln!(s, "{line}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Failure;

    fn settings() -> RunSettings {
        RunSettings {
            base_url: "http://x".into(),
            endpoint: "completions".into(),
            model: None,
            dataset: "builtin".into(),
            num_requests: Some(4),
            duration_limit_s: None,
            request_rate: None,
            burstiness: 1.0,
            max_concurrency: None,
            max_tokens: 8,
            stream: true,
            warmup_requests: 0,
            seed: 0,
            strategy: None,
            candidates: None,
            alpha: None,
            mix: None,
        }
    }

    fn ok(sent_at: f64, latency: f64, tokens: usize) -> Outcome {
        Outcome {
            sent_at,
            latency,
            ttft: Some(0.5),
            itl: vec![0.25; tokens.saturating_sub(1)],
            chunk_times: Vec::new(),
            output_tokens: tokens,
            prompt_tokens: Some(10),
            has_usage: true,
            reward: Some(tokens as f64),
            alignment: None,
            text: String::new(),
            failure: None,
            kind: None,
            cancelled: false,
        }
    }

    #[test]
    fn throughput_and_latency_on_known_outcomes() {
        let mut bad = ok(1.0, 0.1, 0);
        bad.failure = Some(Failure {
            status: Some(429),
            message: "busy".into(),
        });
        let mut down = ok(1.0, 0.1, 0);
        down.failure = Some(Failure {
            status: None,
            message: "connection failed".into(),
        });
        // Two answers of 3 and 5 tokens between t = 2 s and t = 6 s.
        let outcomes = vec![ok(2.0, 1.0, 3), ok(3.0, 3.0, 5), bad.clone(), bad, down];
        let r = LoadReport::build(settings(), &outcomes);
        assert_eq!(
            (r.requests.sent, r.requests.completed, r.requests.failed),
            (5, 2, 3)
        );
        assert_eq!(r.failed_by_status["429"], 2);
        assert_eq!(r.failed_by_status["none"], 1);
        assert_eq!(r.failures.len(), 2);
        // The run spans from the first send (t = 1) to the last answer (t = 6).
        assert!((r.duration_s - 5.0).abs() < 1e-9);
        assert!((r.throughput.requests_per_s - 0.4).abs() < 1e-9);
        assert!((r.throughput.output_tokens_per_s - 8.0 / 5.0).abs() < 1e-9);
        assert!((r.throughput.total_tokens_per_s - 28.0 / 5.0).abs() < 1e-9);
        assert_eq!(r.latency_ms.e2e.mean, Some(2000.0));
        assert_eq!(r.latency_ms.ttft.median, Some(500.0));
        // TPOT: (1 - 0.5) / 2 = 250 ms and (3 - 0.5) / 4 = 625 ms.
        assert_eq!(r.latency_ms.tpot.mean, Some(437.5));
        assert_eq!(r.latency_ms.itl.count, 6);
        let a = r.alignment.as_ref().unwrap();
        assert_eq!(a.reward.mean, Some(4.0));
        assert_eq!(r.timeline.completed.iter().sum::<usize>(), 2);
        let tokens: f64 = r
            .timeline
            .output_tokens_per_s
            .iter()
            .map(|x| x * r.timeline.bin_s)
            .sum();
        assert!((tokens - 8.0).abs() < 1e-9);
        assert!(r.table().contains("status 429"));
    }

    #[test]
    fn mixed_runs_are_counted_per_kind_and_cancellations_are_not_failures() {
        use crate::mix::RequestKind;
        let with = |kind, cancelled, status: Option<Option<u16>>| {
            let mut o = ok(0.0, 1.0, 2);
            o.kind = Some(kind);
            o.cancelled = cancelled;
            o.failure = status.map(|s| Failure {
                status: s,
                message: "x".into(),
            });
            o
        };
        let outcomes = vec![
            with(RequestKind::Plain, false, None),
            with(RequestKind::Plain, false, Some(Some(503))),
            with(RequestKind::BestOfN, false, None),
            with(RequestKind::Cancel, true, None),
            with(RequestKind::Cancel, true, None),
            with(RequestKind::Cancel, false, Some(None)),
        ];
        let r = LoadReport::build(settings(), &outcomes);
        assert_eq!(
            (
                r.requests.sent,
                r.requests.completed,
                r.requests.failed,
                r.requests.cancelled
            ),
            (6, 2, 2, 2)
        );
        // Cancelled requests are left out of the latencies.
        assert_eq!(r.latency_ms.e2e.count, 2);
        let p = &r.by_kind["plain"];
        assert_eq!((p.sent, p.ok, p.cancelled, p.failed), (1 + 1, 1, 0, 1));
        assert_eq!(p.failed_by_status["503"], 1);
        let c = &r.by_kind["cancel"];
        assert_eq!((c.sent, c.ok, c.cancelled, c.failed), (3, 0, 2, 1));
        assert_eq!(c.failed_by_status["none"], 1);
        assert_eq!(r.by_kind["best-of-n"].ok, 1);
        assert!(!r.by_kind.contains_key("stream"));
        let t = r.table();
        assert!(
            t.contains("Cancelled by design") && t.contains("none:1"),
            "{t}"
        );
    }
}
