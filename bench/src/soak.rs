//! `thresh-bench soak-report`: reads the samples `scripts/soak.sh` took of a server under a
//! long mixed load (RSS, open file descriptors, the server's request counters) and the load
//! run's result, and judges the run: after warm-up the RSS grows less than a bound, and no
//! request failed except by design.
//!
//! Growth is a trend, not a peak: the median RSS of the last fifth of the samples after
//! warm-up against the median of the first fifth. An allocator that keeps the pages of the
//! largest batch for a while makes single samples swing by tens of MiB either way; a leak
//! moves the medians. The peak over the end of warm-up is reported beside it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::BenchError;
use crate::report::{KindCounts, LoadReport};

/// The schema tag of soak summaries.
pub const SOAK_SCHEMA: &str = "thresh-bench/soak/v1";

/// One row of `samples.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub elapsed_s: f64,
    /// The server's resident set (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// The server's open file descriptors.
    pub fds: u64,
    /// Completion requests the server finished (`thresh_requests_total`).
    pub requests: u64,
    /// Of those, answered with a 4xx status other than 499.
    pub errors_4xx: u64,
    /// Of those, answered with a 5xx status.
    pub errors_5xx: u64,
    /// Of those, recorded as 499 (the client went away).
    pub client_closed: u64,
    /// Jobs the server stopped because the client went away (`thresh_requests_cancelled_total`).
    pub cancelled: u64,
}

/// Reads `samples.csv` (header `elapsed_s,rss_kib,fds,requests,errors_4xx,errors_5xx,
/// client_closed_499,cancelled`; rows without an RSS, taken after the server went away, are
/// skipped).
pub fn read_samples(path: &Path) -> Result<Vec<Sample>, BenchError> {
    let text = std::fs::read_to_string(path).map_err(|cause| BenchError::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    parse_samples(&text).map_err(|(line, message)| BenchError::Dataset {
        path: path.to_path_buf(),
        line,
        message,
    })
}

/// Parses the text of `samples.csv`; an error names its 1-based line.
pub fn parse_samples(text: &str) -> Result<Vec<Sample>, (usize, String)> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim().starts_with("elapsed_s,rss_kib,fds") => {}
        _ => return Err((1, "expected the header elapsed_s,rss_kib,fds,...".into())),
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != 8 {
            return Err((i + 1, format!("expected 8 columns, got {}", cells.len())));
        }
        if cells[1].is_empty() {
            continue;
        }
        let int = |j: usize| -> Result<u64, (usize, String)> {
            cells[j].parse().map_err(|_| {
                (
                    i + 1,
                    format!("column {} is not a count: {:?}", j + 1, cells[j]),
                )
            })
        };
        let elapsed_s: f64 = cells[0]
            .parse()
            .ok()
            .filter(|t: &f64| t.is_finite() && *t >= 0.0)
            .ok_or_else(|| (i + 1, format!("elapsed_s is not a time: {:?}", cells[0])))?;
        out.push(Sample {
            elapsed_s,
            rss_kib: int(1)?,
            fds: int(2)?,
            requests: int(3)?,
            errors_4xx: int(4)?,
            errors_5xx: int(5)?,
            client_closed: int(6)?,
            cancelled: int(7)?,
        });
    }
    if out.is_empty() {
        return Err((1, "no samples".into()));
    }
    Ok(out)
}

/// The median RSS of `samples` (the lower middle one of an even count), KiB.
fn median_rss(samples: &[&Sample]) -> u64 {
    let mut v: Vec<u64> = samples.iter().map(|s| s.rss_kib).collect();
    v.sort_unstable();
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0)
}

/// The verdict of a soak run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakSummary {
    /// [`SOAK_SCHEMA`].
    pub schema: String,
    /// Samples read.
    pub samples: usize,
    /// Elapsed time of the last sample, seconds.
    pub duration_s: f64,
    /// Samples up to this time are warm-up.
    pub warmup_s: f64,
    /// RSS of the last warm-up sample, KiB.
    pub rss_warmup_end_kib: u64,
    /// Largest RSS after warm-up, KiB.
    pub rss_max_after_kib: u64,
    /// RSS of the last sample, KiB.
    pub rss_end_kib: u64,
    /// `(rss_max_after - rss_warmup_end) / rss_warmup_end`, percent (reported, not judged).
    pub rss_peak_over_warmup_pct: f64,
    /// Median RSS of the first fifth of the samples after warm-up, KiB.
    pub rss_first_window_median_kib: u64,
    /// Median RSS of the last fifth of the samples after warm-up, KiB.
    pub rss_last_window_median_kib: u64,
    /// `(last window median - first window median) / first window median`, percent.
    pub rss_growth_pct: f64,
    /// The bound on `rss_growth_pct`.
    pub max_growth_pct: f64,
    /// Fewest open file descriptors seen.
    pub fds_min: u64,
    /// Most open file descriptors seen.
    pub fds_max: u64,
    /// Open file descriptors of the last sample.
    pub fds_end: u64,
    /// Completion requests the server counted by the last sample.
    pub server_requests: u64,
    /// The server's 4xx answers (other than 499) by the last sample.
    pub server_errors_4xx: u64,
    /// The server's 5xx answers by the last sample.
    pub server_errors_5xx: u64,
    /// The server's 499s (client went away) by the last sample.
    pub server_client_closed: u64,
    /// Jobs the server stopped as cancelled by the last sample.
    pub server_cancelled: u64,
    /// Client-side requests sent, from the load result.
    pub sent: usize,
    /// Client-side requests answered in full.
    pub completed: usize,
    /// Client-side requests cancelled by design.
    pub cancelled: usize,
    /// Client-side failures.
    pub failed: usize,
    /// Client-side counts per request kind.
    pub by_kind: std::collections::BTreeMap<String, KindCounts>,
    /// Both criteria hold.
    pub passed: bool,
    /// Why not, when not.
    pub reasons: Vec<String>,
}

impl SoakSummary {
    /// Judges `samples` (warm-up: those at or before `warmup_s`) and the load result.
    pub fn judge(
        samples: &[Sample],
        load: &LoadReport,
        warmup_s: f64,
        max_growth_pct: f64,
    ) -> Result<Self, BenchError> {
        let (first, last) = match (samples.first(), samples.last()) {
            (Some(f), Some(l)) => (f, l),
            _ => return Err(BenchError::Config("no samples to judge".into())),
        };
        let warm = samples
            .iter()
            .rev()
            .find(|s| s.elapsed_s <= warmup_s)
            .unwrap_or(first);
        let after: Vec<&Sample> = samples.iter().filter(|s| s.elapsed_s > warmup_s).collect();
        if after.is_empty() {
            return Err(BenchError::Config(format!(
                "no sample after the {warmup_s} s warm-up: run longer or shorten --warmup-s"
            )));
        }
        let max_after = after
            .iter()
            .map(|s| s.rss_kib)
            .max()
            .unwrap_or(warm.rss_kib);
        let pct = |from: u64, to: u64| {
            if from == 0 {
                0.0
            } else {
                (to as f64 - from as f64) / from as f64 * 100.0
            }
        };
        let peak = pct(warm.rss_kib, max_after);
        let window = after.len().div_ceil(5);
        let first_median = median_rss(&after[..window]);
        let last_median = median_rss(&after[after.len() - window..]);
        let growth = pct(first_median, last_median);
        let mut reasons = Vec::new();
        if growth >= max_growth_pct {
            reasons.push(format!(
                "RSS grew {growth:.2}% after warm-up (median {first_median} KiB over the first \
                 {window} samples -> {last_median} KiB over the last {window}), the bound is \
                 {max_growth_pct}%"
            ));
        }
        if load.requests.failed > 0 {
            reasons.push(format!(
                "{} requests failed (by status: {:?})",
                load.requests.failed, load.failed_by_status
            ));
        }
        if last.errors_4xx + last.errors_5xx > 0 {
            reasons.push(format!(
                "the server answered {} 4xx and {} 5xx",
                last.errors_4xx, last.errors_5xx
            ));
        }
        Ok(SoakSummary {
            schema: SOAK_SCHEMA.into(),
            samples: samples.len(),
            duration_s: last.elapsed_s,
            warmup_s,
            rss_warmup_end_kib: warm.rss_kib,
            rss_max_after_kib: max_after,
            rss_end_kib: last.rss_kib,
            rss_peak_over_warmup_pct: peak,
            rss_first_window_median_kib: first_median,
            rss_last_window_median_kib: last_median,
            rss_growth_pct: growth,
            max_growth_pct,
            fds_min: samples.iter().map(|s| s.fds).min().unwrap_or(0),
            fds_max: samples.iter().map(|s| s.fds).max().unwrap_or(0),
            fds_end: last.fds,
            server_requests: last.requests,
            server_errors_4xx: last.errors_4xx,
            server_errors_5xx: last.errors_5xx,
            server_client_closed: last.client_closed,
            server_cancelled: last.cancelled,
            sent: load.requests.sent,
            completed: load.requests.completed,
            cancelled: load.requests.cancelled,
            failed: load.requests.failed,
            by_kind: load.by_kind.clone(),
            passed: reasons.is_empty(),
            reasons,
        })
    }

    /// The human-readable summary.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let mib = |k: u64| k as f64 / 1024.0;
        let _ = writeln!(
            s,
            "soak: {} samples over {:.0} s",
            self.samples, self.duration_s
        );
        let _ = writeln!(
            s,
            "RSS at end of warm-up ({:.0} s): {:.1} MiB; max after: {:.1} MiB (+{:.2}%); end: {:.1} MiB",
            self.warmup_s,
            mib(self.rss_warmup_end_kib),
            mib(self.rss_max_after_kib),
            self.rss_peak_over_warmup_pct,
            mib(self.rss_end_kib),
        );
        let _ = writeln!(
            s,
            "RSS median, first fifth after warm-up: {:.1} MiB; last fifth: {:.1} MiB; growth {:.2}% (bound {}%)",
            mib(self.rss_first_window_median_kib),
            mib(self.rss_last_window_median_kib),
            self.rss_growth_pct,
            self.max_growth_pct
        );
        let _ = writeln!(
            s,
            "open fds: min {} max {} end {}",
            self.fds_min, self.fds_max, self.fds_end
        );
        let _ = writeln!(
            s,
            "client: sent {} completed {} cancelled (by design) {} failed {}",
            self.sent, self.completed, self.cancelled, self.failed
        );
        for (k, c) in &self.by_kind {
            let _ = writeln!(
                s,
                "  {k:<24} sent {:>5} ok {:>5} cancelled {:>5} failed {:>3} {:?}",
                c.sent, c.ok, c.cancelled, c.failed, c.failed_by_status
            );
        }
        let _ = writeln!(
            s,
            "server: {} completion requests, {} 4xx, {} 5xx, {} 499, {} jobs cancelled",
            self.server_requests,
            self.server_errors_4xx,
            self.server_errors_5xx,
            self.server_client_closed,
            self.server_cancelled
        );
        if self.passed {
            let _ = writeln!(s, "PASS");
        } else {
            for r in &self.reasons {
                let _ = writeln!(s, "FAIL: {r}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RunSettings;

    const CSV: &str =
        "elapsed_s,rss_kib,fds,requests,errors_4xx,errors_5xx,client_closed_499,cancelled
0.0,100000,20,0,0,0,0,0
60.0,150000,24,10,0,0,0,1
120.0,200000,25,20,0,0,0,2
180.0,200000,23,30,0,0,1,3
240.0,204000,26,40,0,0,1,4
300.0,203000,22,50,0,0,2,5
310.0,,0,0,0,0,0,0
";

    fn load(failed: usize) -> LoadReport {
        let settings = RunSettings {
            base_url: "http://x".into(),
            endpoint: "completions".into(),
            model: None,
            dataset: "builtin".into(),
            num_requests: None,
            duration_limit_s: Some(300.0),
            request_rate: Some(0.5),
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
        };
        let mut r = LoadReport::build(settings, &[]);
        r.requests.failed = failed;
        r
    }

    #[test]
    fn samples_parse_and_rows_without_rss_are_skipped() {
        let s = parse_samples(CSV).unwrap();
        assert_eq!(s.len(), 6);
        assert_eq!(s[4].rss_kib, 204000);
        assert_eq!(s[5].client_closed, 2);
        assert_eq!(parse_samples("x\n1,2").unwrap_err().0, 1);
        let e = parse_samples("elapsed_s,rss_kib,fds,a,b,c,d,e\n1,2,3\n").unwrap_err();
        assert_eq!(e.0, 2);
        let e = parse_samples("elapsed_s,rss_kib,fds,a,b,c,d,e\n1,x,3,0,0,0,0,0\n").unwrap_err();
        assert!(e.1.contains("column 2"), "{e:?}");
    }

    #[test]
    fn growth_is_measured_from_the_end_of_warm_up() {
        let s = parse_samples(CSV).unwrap();
        let v = SoakSummary::judge(&s, &load(0), 180.0, 5.0).unwrap();
        assert_eq!(
            (v.rss_warmup_end_kib, v.rss_max_after_kib),
            (200000, 204000)
        );
        assert!((v.rss_peak_over_warmup_pct - 2.0).abs() < 1e-9);
        // Two samples after warm-up: one per window, 204000 then 203000.
        assert_eq!(
            (v.rss_first_window_median_kib, v.rss_last_window_median_kib),
            (204000, 203000)
        );
        assert!((v.rss_growth_pct - (-1000.0 / 2040.0)).abs() < 1e-9);
        assert_eq!((v.fds_min, v.fds_max, v.fds_end), (20, 26, 22));
        assert!(v.passed, "{:?}", v.reasons);
        assert!(v.table().contains("PASS"));
        // Counted from the start instead, the same run would fail (150000 -> 203000).
        let v = SoakSummary::judge(&s, &load(0), 0.0, 5.0).unwrap();
        assert!(
            !v.passed && v.reasons[0].contains("RSS grew"),
            "{:?}",
            v.reasons
        );
        // Warm-up longer than the run: nothing to judge.
        assert!(SoakSummary::judge(&s, &load(0), 1000.0, 5.0).is_err());
    }

    /// `n` samples 10 s apart after a 100 s warm-up, RSS from `rss(i)`.
    fn series(n: usize, rss: impl Fn(usize) -> u64) -> Vec<Sample> {
        (0..n)
            .map(|i| Sample {
                elapsed_s: 100.0 + 10.0 * i as f64,
                rss_kib: rss(i),
                fds: 12,
                requests: i as u64,
                errors_4xx: 0,
                errors_5xx: 0,
                client_closed: 0,
                cancelled: 0,
            })
            .collect()
    }

    #[test]
    fn swings_around_a_level_pass_and_a_steady_rise_fails() {
        // 800 MiB give or take 40 on alternate samples: peaks 10% over the warm-up sample,
        // no trend.
        let swings = series(101, |i| if i % 2 == 0 { 800_000 } else { 840_000 });
        let v = SoakSummary::judge(&swings, &load(0), 100.0, 5.0).unwrap();
        assert!(v.rss_peak_over_warmup_pct > 4.9, "{v:?}");
        assert!(v.rss_growth_pct.abs() < 1e-9 && v.passed, "{:?}", v.reasons);
        // 6% over the run, 60 KiB a sample: the medians of the fifths move 4.8%, and a
        // little more fails.
        let rise = series(101, |i| 1_000_000 + 600 * i as u64);
        let v = SoakSummary::judge(&rise, &load(0), 100.0, 5.0).unwrap();
        assert!(v.passed, "{:?}", v.reasons);
        let rise = series(101, |i| 1_000_000 + 700 * i as u64);
        let v = SoakSummary::judge(&rise, &load(0), 100.0, 5.0).unwrap();
        assert!(!v.passed && v.rss_growth_pct > 5.0, "{v:?}");
    }

    #[test]
    fn failed_requests_and_server_errors_fail_the_run() {
        let mut s = parse_samples(CSV).unwrap();
        let v = SoakSummary::judge(&s, &load(2), 180.0, 5.0).unwrap();
        assert!(!v.passed && v.reasons.iter().any(|r| r.contains("2 requests failed")));
        s.last_mut().unwrap().errors_5xx = 1;
        let v = SoakSummary::judge(&s, &load(0), 180.0, 5.0).unwrap();
        assert!(
            !v.passed
                && v.table()
                    .contains("FAIL: the server answered 0 4xx and 1 5xx")
        );
    }
}
