//! `thresh-train collect`: preference data from a running daemon, in the trainer's own
//! schema, so the alignment loop (serve, collect, train, serve) needs no glue.
//!
//! Each prompt gets one request: an aligned one with `return_candidates` (pairs from the
//! ranked, scored candidates: best against worst as in West-of-N, or every pair above a
//! margin), or a plain answer corrected by the daemon's Aligner (`alignment.correct`; the
//! correction is preferred over the answer). The output is appended line by line, each line
//! carrying an `id` made of the prompt's index and a hash of its text, so a rerun skips what
//! is written and completes the rest; a torn last line (an interrupted write) is cut off.

pub mod args;
pub mod client;
pub mod prompts;
pub mod records;

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

pub use args::{CollectArgs, CollectStrategy, PairMode, Source};
use client::{CallError, Daemon};
use prompts::PromptLine;
use records::Outcome;

use crate::error::{Result, TrainError};

/// Most rejected prompts listed one by one in the summary (the rest are counted).
const LISTED_REJECTIONS: usize = 20;

fn config(message: impl Into<String>) -> TrainError {
    TrainError::Config(message.into())
}

/// Refuses settings that would make every request fail, before any is sent.
fn check(a: &CollectArgs) -> Result<()> {
    if a.source == Source::Candidates && a.candidates < 2 {
        return Err(config("--candidates must be at least 2 to rank candidates"));
    }
    if a.concurrency == 0 {
        return Err(config("--concurrency must be at least 1"));
    }
    if a.max_tokens == 0 {
        return Err(config("--max-tokens must be at least 1"));
    }
    if !(a.min_margin.is_finite() && a.min_margin >= 0.0) {
        return Err(config("--min-margin must be a finite number >= 0"));
    }
    if !(a.temperature.is_finite() && a.temperature >= 0.0) {
        return Err(config("--temperature must be a finite number >= 0"));
    }
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        return Err(config("--timeout must be a positive number of seconds"));
    }
    if let Some(alpha) = &a.alpha {
        if a.source != Source::Candidates || a.strategy != CollectStrategy::SpeculativeRejection {
            return Err(config(
                "--alpha applies to --strategy speculative-rejection only",
            ));
        }
        records::alpha_json(alpha).map_err(config)?;
    }
    if a.guarded && a.source != Source::Corrections {
        return Err(config("--guarded applies to --source corrections only"));
    }
    Ok(())
}

/// Reads the ids already in `out`, cutting off a torn last line. A complete line that is
/// not a record of this command (no string `id`) is an error naming it: the file is not
/// ours to overwrite.
fn resume(out: &Path) -> Result<HashSet<String>> {
    let io = |source| TrainError::Io {
        path: out.to_path_buf(),
        source,
    };
    let text = match std::fs::read(out) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(io(e)),
    };
    // Everything after the last newline is a write that did not finish.
    let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < text.len() {
        tracing::warn!(
            bytes = text.len() - complete,
            "{}: cutting off a torn last line",
            out.display()
        );
        let f = OpenOptions::new().write(true).open(out).map_err(io)?;
        f.set_len(complete as u64).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    let mut ids = HashSet::new();
    for (i, raw) in text[..complete].split(|&b| b == b'\n').enumerate() {
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let id = serde_json::from_slice::<Value>(raw)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_string));
        match id {
            Some(id) => {
                ids.insert(id);
            }
            None => {
                return Err(TrainError::Data {
                    path: out.to_path_buf(),
                    line: i + 1,
                    message: "not a record of `thresh-train collect` (no string `id`); \
                              give a new --out"
                        .into(),
                });
            }
        }
    }
    Ok(ids)
}

/// What one worker sends the writer.
struct Done {
    prompt: usize,
    result: std::result::Result<Outcome, CallError>,
}

/// The running totals behind the summary.
#[derive(Default)]
struct Tally {
    written: usize,
    pairs: usize,
    margins: Vec<f64>,
    skipped: BTreeMap<&'static str, usize>,
    rejected: Vec<Value>,
    fatal: Option<String>,
}

impl Tally {
    fn summary(&self, a: &CollectArgs, total: usize, already: usize) -> Value {
        let margin = if self.margins.is_empty() {
            Value::Null
        } else {
            let n = self.margins.len() as f64;
            let min = self.margins.iter().copied().fold(f64::INFINITY, f64::min);
            let max = self
                .margins
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            json!({"mean": self.margins.iter().sum::<f64>() / n, "min": min, "max": max})
        };
        let listed: Vec<&Value> = self.rejected.iter().take(LISTED_REJECTIONS).collect();
        json!({
            "out": a.out,
            "source": match a.source { Source::Candidates => "candidates", Source::Corrections => "corrections" },
            "prompts": total,
            "already_written": already,
            "written": self.written,
            "pairs": self.pairs,
            "margin": margin,
            "skipped": self.skipped,
            "rejected": self.rejected.len(),
            "rejections": listed,
        })
    }
}

/// Runs `collect`; returns its summary (prompts, records written, pairs and their reward
/// margins, skipped prompts by reason, rejected prompts with the daemon's message).
pub fn collect(a: &CollectArgs) -> Result<Value> {
    check(a)?;
    let mut prompts = prompts::read(&a.prompts)?;
    if let Some(limit) = a.limit {
        prompts.truncate(limit);
    }
    let done = resume(&a.out)?;
    let todo: Vec<&PromptLine> = prompts.iter().filter(|p| !done.contains(&p.id)).collect();
    let already = prompts.len() - todo.len();
    let daemon = Daemon::new(
        &a.url,
        a.api_key.clone(),
        Duration::from_secs_f64(a.timeout),
    )
    .map_err(config)?;
    if let Some(parent) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| TrainError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.out)
        .map_err(|source| TrainError::Io {
            path: a.out.clone(),
            source,
        })?;
    tracing::info!(
        prompts = prompts.len(),
        already,
        daemon = daemon.base(),
        "collecting"
    );
    let bar = if a.no_progress {
        ProgressBar::hidden()
    } else {
        progress(todo.len())
    };
    let tally = run_workers(a, &daemon, &todo, &mut file, &bar)?;
    bar.finish_and_clear();
    file.sync_all().map_err(|source| TrainError::Io {
        path: a.out.clone(),
        source,
    })?;
    if let Some(why) = &tally.fatal {
        return Err(TrainError::Daemon(format!(
            "{why}; {} records are in {} ({} written now): rerun the same command to \
             collect the rest",
            already + tally.written,
            a.out.display(),
            tally.written
        )));
    }
    Ok(tally.summary(a, prompts.len(), already))
}

fn progress(len: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} collect {pos}/{len} prompts [{elapsed}] {msg}")
    {
        bar.set_style(style);
    }
    bar
}

/// `--concurrency` workers take the prompts in order; this thread writes each record as
/// one line the moment it arrives. The first daemon failure stops new requests; those in
/// flight still land.
fn run_workers(
    a: &CollectArgs,
    daemon: &Daemon,
    todo: &[&PromptLine],
    file: &mut File,
    bar: &ProgressBar,
) -> Result<Tally> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<Done>();
    let mut tally = Tally::default();
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..a.concurrency.min(todo.len()) {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(p) = todo.get(i) else { break };
                    let result = ask(a, daemon, p);
                    if matches!(result, Err(CallError::Daemon(_))) {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if tx.send(Done { prompt: i, result }).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut write_error = None;
        for d in rx {
            bar.inc(1);
            let p = todo[d.prompt];
            match d.result {
                Ok(Outcome::Record { line, margins }) => {
                    let mut text = line.to_string();
                    text.push('\n');
                    if let Err(source) = file.write_all(text.as_bytes()) {
                        // Stop the workers; what is on disk stays whole lines.
                        stop.store(true, Ordering::Relaxed);
                        write_error.get_or_insert(TrainError::Io {
                            path: a.out.clone(),
                            source,
                        });
                        continue;
                    }
                    tally.written += 1;
                    tally.pairs += line["pairs"].as_array().map_or(0, Vec::len);
                    tally.margins.extend(margins);
                }
                Ok(Outcome::Skipped(why)) => *tally.skipped.entry(why).or_default() += 1,
                Err(CallError::Prompt(why)) => tally.rejected.push(json!({
                    "line": p.line,
                    "error": why,
                })),
                Err(CallError::Daemon(why)) => {
                    tally.fatal.get_or_insert(why);
                }
            }
            bar.set_message(format!("{} written", tally.written));
        }
        write_error.map_or(Ok(()), Err)
    })?;
    Ok(tally)
}

/// One prompt's request and its outcome. An answer the daemon gave but that this command
/// cannot read is the daemon's failure (it is not a thresh daemon, or not set up for the
/// source), not the prompt's.
fn ask(
    a: &CollectArgs,
    daemon: &Daemon,
    p: &PromptLine,
) -> std::result::Result<Outcome, CallError> {
    let body = records::request(a, &p.prompt, a.seed.wrapping_add(p.index as u64));
    let answer = daemon.post("/v1/chat/completions", &body)?;
    let outcome = match a.source {
        Source::Candidates => {
            records::from_candidates(&p.id, &p.prompt, &answer, a.pairs, a.min_margin)
        }
        Source::Corrections => records::from_correction(&p.id, &p.prompt, &answer, a.guarded),
    };
    outcome.map_err(|e| CallError::Daemon(format!("{}: {e}", daemon.base())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_cuts_a_torn_line_and_reads_ids() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pairs.jsonl");
        std::fs::write(
            &out,
            "{\"id\": \"0:a\"}\n\n{\"id\": \"1:b\"}\n{\"id\": \"2:",
        )
        .unwrap();
        let ids = resume(&out).unwrap();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains("0:a") && ids.contains("1:b"));
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "{\"id\": \"0:a\"}\n\n{\"id\": \"1:b\"}\n"
        );
        assert!(resume(&dir.path().join("none.jsonl")).unwrap().is_empty());
        std::fs::write(&out, "{\"prompt\": \"x\"}\n").unwrap();
        let e = resume(&out).unwrap_err().to_string();
        assert!(e.contains(":1:") && e.contains("--out"), "{e}");
    }
}
