//! Metrics as JSON lines, a progress bar, and the process's peak memory.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::{Result, TrainError};

/// An append-only `metrics.jsonl`: one object per optimiser step.
pub struct MetricsLog {
    file: File,
    path: PathBuf,
}

impl MetricsLog {
    /// Opens `path`: truncated for a new run; for a run resumed at `resumed_at`, lines of
    /// later steps (written after the checkpoint, before the interruption) are dropped.
    pub fn open(path: &Path, resumed_at: Option<u64>) -> Result<Self> {
        let io = |e| TrainError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        match resumed_at {
            None => {
                File::create(path).map_err(io)?;
            }
            Some(step) => {
                // A missing file resumes empty; an unreadable one is an error rather than
                // being overwritten. A torn last line (even mid-character) is dropped.
                let bytes = match std::fs::read(path) {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(io(e)),
                };
                let kept: String = String::from_utf8_lossy(&bytes)
                    .lines()
                    .filter(|l| {
                        serde_json::from_str::<serde_json::Value>(l)
                            .ok()
                            .and_then(|v| v["step"].as_u64())
                            .is_some_and(|s| s <= step)
                    })
                    .map(|l| format!("{l}\n"))
                    .collect();
                crate::model::save::write_atomic(path, kept.as_bytes())?;
            }
        }
        let file = OpenOptions::new().append(true).open(path).map_err(io)?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Flushes the lines written so far to the disk (`fsync`).
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| TrainError::Io {
            path: self.path.clone(),
            source: e,
        })
    }

    /// Appends one step's values as one line (one `write` call, so a kill leaves at most
    /// the last line torn, which a resume drops).
    pub fn write(
        &mut self,
        step: u64,
        elapsed_s: f64,
        values: &BTreeMap<String, f64>,
    ) -> Result<()> {
        let mut obj = serde_json::Map::new();
        obj.insert("step".into(), step.into());
        obj.insert("elapsed_s".into(), elapsed_s.into());
        for (k, v) in values {
            obj.insert(k.clone(), serde_json::json!(v));
        }
        let mut line = serde_json::Value::Object(obj).to_string();
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| TrainError::Io {
                path: self.path.clone(),
                source: e,
            })
    }
}

/// A progress bar over `total` steps starting at `at`; hidden when `visible` is false.
pub fn progress_bar(total: u64, at: u64, visible: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(total),
        if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len}, eta {eta} {msg}")
    {
        bar.set_style(style);
    }
    bar.set_position(at);
    bar
}

/// Peak resident memory of this process in bytes (`VmHWM` of `/proc/self/status`), where
/// the platform reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
