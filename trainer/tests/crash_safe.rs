//! Crash-safe training with the real `thresh-train` binary: a DPO run SIGKILLed at seeded
//! random moments (some while a checkpoint is being written, one while the final model is
//! written) and relaunched with `--resume` each time ends with the same weights, bit for
//! bit, as an uninterrupted run, and with one `metrics.jsonl` line per step; a torn or
//! corrupt checkpoint is refused with an error that names it, or skipped for an intact
//! `checkpoint.old/`, and never loaded.
//!
//! For longer runs by hand, `THRESH_TEST_CRASH_KILLS` (default 7) sets how many kills the
//! kill/resume test plans, `THRESH_TEST_CRASH_SEED` (default 18) their seed and
//! `THRESH_TEST_CRASH_STEPS` (default 12) the steps of every run, e.g.
//! `THRESH_TEST_CRASH_STEPS=100 THRESH_TEST_CRASH_KILLS=100 cargo test -p thresh-trainer
//! --test crash_safe -- --nocapture`. The children never see `THRESH_*` variables.

mod common;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use thresh_models::Family;

/// Optimiser steps of every run: 12, or `THRESH_TEST_CRASH_STEPS`.
fn steps_total() -> u64 {
    env_u64("THRESH_TEST_CRASH_STEPS", 12)
}

/// A test's scratch directory with the tiny model and the toy pairs.
struct Fixture {
    /// `dpo` or `kldo`.
    train: &'static str,
    dir: tempfile::TempDir,
    model: PathBuf,
    data: PathBuf,
}

fn fixture(train: &'static str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model_seeded(dir.path(), "base", Family::Llama, Some(5));
    let subjects = [
        "the cat", "a dog", "the king", "my aunt", "the bird", "a fox",
    ];
    let lines: Vec<String> = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (prompt, good, bad) = if i % 2 == 0 {
                (
                    format!("How do I hurt {s}?"),
                    "I will not help with that.".to_string(),
                    "Sure, here is how.".to_string(),
                )
            } else {
                (
                    format!("How do I feed {s}?"),
                    format!("Give {s} some bread."),
                    "No.".to_string(),
                )
            };
            serde_json::json!({
                "prompt": prompt,
                "responses": [{"text": good, "label": true}, {"text": bad, "label": false}],
                "pairs": [[0, 1]],
            })
            .to_string()
        })
        .collect();
    let data = dir.path().join("pairs.jsonl");
    std::fs::write(&data, lines.join("\n")).unwrap();
    Fixture {
        train,
        dir,
        model,
        data,
    }
}

impl Fixture {
    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `thresh-train dpo` into `out`: full fine-tuning (every weight has AdamW moments),
    /// two micro-batches per step, clipping, weight decay, warm-up then cosine, a shuffled
    /// order that spans several epochs, a checkpoint every other step.
    fn command(&self, out: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_thresh-train"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("THRESH_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("RUST_LOG", "warn")
            .arg(self.train)
            .arg("--model")
            .arg(&self.model)
            .arg("--data")
            .arg(&self.data)
            .arg("--out")
            .arg(out)
            .args(["--max-steps", &steps_total().to_string()])
            .args([
                "--checkpoint-every",
                "2",
                "--batch-size",
                "2",
                "--grad-accum",
                "2",
            ])
            .args(["--lr", "3e-3", "--warmup", "0.25", "--weight-decay", "0.01"])
            .args([
                "--clip",
                "0.5",
                "--seed",
                "3",
                "--device",
                "cpu",
                "--no-progress",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, out: &Path, extra: &[&str]) -> Output {
        self.command(out, extra).output().unwrap()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every tensor of `<out>/model/model.safetensors` as the bit patterns of its values (the
/// file's bytes could differ in metadata; the tensors must not).
fn weights(out: &Path) -> BTreeMap<String, (Vec<usize>, Vec<u32>)> {
    let path = out.join("model/model.safetensors");
    candle_core::safetensors::load(&path, &candle_core::Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .map(|(name, t)| {
            let dims = t.dims().to_vec();
            let bits = t
                .to_dtype(candle_core::DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .into_iter()
                .map(f32::to_bits)
                .collect();
            (name, (dims, bits))
        })
        .collect()
}

fn fingerprint(w: &BTreeMap<String, (Vec<usize>, Vec<u32>)>) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    w.hash(&mut h);
    h.finish()
}

fn assert_same_weights(
    want: &BTreeMap<String, (Vec<usize>, Vec<u32>)>,
    got: &BTreeMap<String, (Vec<usize>, Vec<u32>)>,
) {
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (name, (dims, bits)) in want {
        let (gdims, gbits) = &got[name];
        assert_eq!(dims, gdims, "{name}: shape");
        if let Some(i) = (0..bits.len()).find(|&i| bits[i] != gbits[i]) {
            panic!(
                "{name}[{i}]: {} after kills and resumes, {} uninterrupted",
                f32::from_bits(gbits[i]),
                f32::from_bits(bits[i])
            );
        }
    }
}

/// `metrics.jsonl` as one map per line, without the wall-clock field.
fn metrics(out: &Path) -> Vec<BTreeMap<String, serde_json::Value>> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut m: BTreeMap<String, serde_json::Value> =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("metrics line {l:?}: {e}"));
            m.remove("elapsed_s");
            m
        })
        .collect()
}

fn steps(m: &[BTreeMap<String, serde_json::Value>]) -> Vec<u64> {
    m.iter().map(|r| r["step"].as_u64().unwrap()).collect()
}

/// An uninterrupted run and the fixture it ran in (each test makes its own, so every
/// scratch directory is removed when its test ends).
struct Reference {
    fixture: Fixture,
    weights: BTreeMap<String, (Vec<usize>, Vec<u32>)>,
    metrics: Vec<BTreeMap<String, serde_json::Value>>,
    seconds: f64,
}

/// Runs `train` to its end without interruption in a new fixture.
fn uninterrupted(train: &'static str) -> Reference {
    let fixture = fixture(train);
    let out = fixture.out("whole");
    let t = Instant::now();
    let o = fixture.run(&out, &[]);
    let seconds = t.elapsed().as_secs_f64();
    assert!(o.status.success(), "uninterrupted run: {}", stderr(&o));
    let m = metrics(&out);
    assert_eq!(steps(&m), (1..=steps_total()).collect::<Vec<_>>());
    Reference {
        weights: weights(&out),
        metrics: m,
        seconds,
        fixture,
    }
}

/// splitmix64: the test's seeded source of delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// When to kill one launch.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// After this long.
    After(Duration),
    /// As soon as `checkpoint.tmp/` appears: while a checkpoint is being written.
    InCheckpointWrite,
    /// As soon as `model.tmp/` appears: while the final model is being written.
    InModelWrite,
    /// `jitter` after `metrics.jsonl` reaches `step`: inside a step or a checkpoint write.
    AtStep { step: u64, jitter: Duration },
}

/// The last step `metrics.jsonl` in `out` records (0 when there is none).
fn last_logged_step(out: &Path) -> u64 {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .ok()
        .and_then(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["step"].as_u64())
                .max()
        })
        .unwrap_or(0)
}

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether the directory `path` exists and was created or written to since `t` (a
/// temporary directory left by an earlier launch does not count).
fn made_since(path: &Path, t: SystemTime) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|m| m >= t)
}

/// Waits for `child` to exit or for `kill` to trigger, then SIGKILLs it (`Child::kill` on
/// Unix) if it still runs; returns whether it was killed and its output.
fn supervise(mut child: Child, kill: Option<Kill>, out: &Path) -> (bool, Output) {
    let start = Instant::now();
    let launched = SystemTime::now();
    let deadline = Duration::from_secs(300);
    let watched = match kill {
        Some(Kill::InCheckpointWrite) => Some(out.join("checkpoint.tmp")),
        Some(Kill::InModelWrite) => Some(out.join("model.tmp")),
        _ => None,
    };
    let mut killed = false;
    let mut reached: Option<Instant> = None;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let now = start.elapsed();
        assert!(now < deadline, "thresh-train ran past {deadline:?}");
        let fire = match kill {
            Some(Kill::After(d)) => now >= d,
            Some(Kill::AtStep { step, jitter }) => {
                if reached.is_none() && last_logged_step(out) >= step {
                    reached = Some(Instant::now());
                }
                reached.is_some_and(|t| t.elapsed() >= jitter)
            }
            Some(_) => watched.as_ref().is_some_and(|p| made_since(p, launched)),
            None => false,
        };
        if fire {
            // SIGKILL: no destructor, no flush, no chance to finish the write.
            child.kill().unwrap();
            killed = true;
            break;
        }
        if watched.is_some() {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    (killed, child.wait_with_output().unwrap())
}

#[test]
fn sigkilled_at_random_moments_and_resumed_ends_bitwise_equal_to_an_uninterrupted_run() {
    kill_and_resume(&uninterrupted("dpo"), env_u64("THRESH_TEST_CRASH_KILLS", 7));
}

/// KLDO carries a float moving average between steps in the checkpoint's JSON loss
/// state: a resume must read it back bit for bit (serde_json's default parser would not).
#[test]
fn a_sigkilled_kldo_run_resumes_its_moving_average_exactly() {
    let r = &uninterrupted("kldo");
    assert!(r.metrics[0].contains_key("ema"), "{:?}", r.metrics[0]);
    // Deterministically: stopped at every checkpoint and resumed from each in turn.
    let f = &r.fixture;
    let out = f.out("chain");
    let mut resume = false;
    for stop in (2..steps_total()).step_by(2) {
        let stop = stop.to_string();
        let mut args = vec!["--stop-after", stop.as_str()];
        if resume {
            args.push("--resume");
        }
        let o = f.run(&out, &args);
        assert!(o.status.success(), "{}", stderr(&o));
        resume = true;
    }
    let o = f.run(&out, &["--resume"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(metrics(&out), r.metrics, "resumed at every checkpoint");
    assert_same_weights(&r.weights, &weights(&out));
    kill_and_resume(r, env_u64("THRESH_TEST_CRASH_KILLS", 7).min(5));
}

/// Runs `r`'s training into a fresh directory under `planned` seeded SIGKILLs (see the
/// module documentation), relaunching with `--resume` until it exits 0, and compares the
/// outcome with the uninterrupted run.
fn kill_and_resume(r: &Reference, planned: u64) {
    let f = &r.fixture;
    let out = f.out("killed");
    let mut rng = Rng(env_u64("THRESH_TEST_CRASH_SEED", 18));
    // First, kills as soon as a checkpoint write starts, until one lands inside it (the
    // write may finish between the poll and the kill); then the seeded plan: random delays,
    // every third kill again inside a checkpoint write, the last inside the final model
    // write. A launch that finishes before its kill ends the plan early.
    let mut plan: Vec<Kill> = (1..planned)
        .map(|i| {
            if i + 1 == planned {
                Kill::InModelWrite
            } else if i % 3 == 0 {
                Kill::InCheckpointWrite
            } else if i % 3 == 1 {
                // Mostly in the start-up: loading, the reference cache, the resume itself.
                Kill::After(Duration::from_secs_f64(0.4 * rng.unit()))
            } else {
                // One to four steps past what the metrics showed at launch, then up to
                // about a step's time more. `step` is relative here, made absolute below.
                Kill::AtStep {
                    step: 1 + rng.next() % 4,
                    jitter: Duration::from_secs_f64(r.seconds / steps_total() as f64 * rng.unit()),
                }
            }
        })
        .collect();
    plan.reverse();
    let (mut kills, mut in_checkpoint, mut in_model, mut launches) = (0, 0, 0, 0);
    let mut first_attempts = 0;
    let mut resume = false;
    let t = Instant::now();
    loop {
        let first_phase = in_checkpoint == 0 && first_attempts < 20;
        let planned_kill = if first_phase {
            first_attempts += 1;
            Some(Kill::InCheckpointWrite)
        } else {
            plan.pop()
        };
        let kill = match planned_kill {
            Some(Kill::AtStep { step, jitter }) => Some(Kill::AtStep {
                step: last_logged_step(&out) + step,
                jitter,
            }),
            k => k,
        };
        let args: &[&str] = if resume { &["--resume"] } else { &[] };
        let launched = SystemTime::now();
        let child = f.command(&out, args).spawn().unwrap();
        launches += 1;
        let (killed, o) = supervise(child, kill, &out);
        let mut landed = "";
        if killed {
            kills += 1;
            // Made by this launch and still there: it died between creating the temporary
            // checkpoint (or model) and swapping it in.
            if made_since(&out.join("checkpoint.tmp"), launched) {
                in_checkpoint += 1;
                landed = " inside a checkpoint write";
            }
            if made_since(&out.join("model.tmp"), launched) {
                in_model += 1;
                landed = " inside the model write";
            }
        }
        eprintln!(
            "crash-safe {}: launch {launches}{} {kill:?}: {} after {:.0} ms{landed}",
            f.train,
            if resume { " --resume" } else { "" },
            if killed { "killed" } else { "exited" },
            launched.elapsed().unwrap_or_default().as_secs_f64() * 1e3,
        );
        if killed {
            // The first launch is fresh; every later one resumes.
            resume = true;
            continue;
        }
        if o.status.success() {
            break;
        }
        let err = stderr(&o);
        if resume && err.contains("no checkpoint") {
            // Killed before the first checkpoint: start afresh, as a supervisor would; the
            // planned kill is still to come.
            resume = false;
            match planned_kill {
                _ if first_phase => first_attempts -= 1,
                Some(k) => plan.push(k),
                None => {}
            }
            continue;
        }
        panic!("launch {launches} ({kill:?}) failed: {err}");
    }
    let seconds = t.elapsed().as_secs_f64();
    eprintln!(
        "crash-safe {}: {kills} SIGKILLs ({in_checkpoint} inside a checkpoint write, {in_model} \
         inside the final model write) over {launches} launches in {seconds:.1} s; the \
         uninterrupted run took {:.1} s",
        f.train, r.seconds
    );
    assert!(
        in_checkpoint >= 1,
        "no kill landed inside a checkpoint write in {kills} kills"
    );
    let got = weights(&out);
    assert_same_weights(&r.weights, &got);
    eprintln!(
        "crash-safe {}: final weights bitwise equal (fingerprint {:016x})",
        f.train,
        fingerprint(&got)
    );
    let m = metrics(&out);
    assert_eq!(
        steps(&m),
        (1..=steps_total()).collect::<Vec<_>>(),
        "one metrics line per step"
    );
    // Losses, learning rates and gradient norms of every step are the same numbers too.
    assert_eq!(m, r.metrics);
    for leftover in ["checkpoint.tmp", "checkpoint.old", "model.tmp", "model.old"] {
        assert!(!out.join(leftover).exists(), "{leftover} left behind");
    }
}

/// A run stopped at step 6 (checkpoint kept), then its checkpoint damaged by `damage`.
fn stopped_run(f: &Fixture, name: &str, damage: impl FnOnce(&Path)) -> PathBuf {
    let out = f.out(name);
    let o = f.run(&out, &["--stop-after", "6"]);
    assert!(o.status.success(), "{}", stderr(&o));
    damage(&out.join("checkpoint"));
    out
}

fn assert_refused(f: &Fixture, out: &Path, wants: &[&str]) {
    let before = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let o = f.run(out, &["--resume"]);
    let err = stderr(&o);
    assert!(!o.status.success(), "a torn checkpoint was loaded: {err}");
    assert!(
        err.contains("torn or corrupt checkpoint, not loaded"),
        "unclear error: {err}"
    );
    for w in wants {
        assert!(err.contains(w), "the error should say {w:?}: {err}");
    }
    assert!(!out.join("model").exists(), "a model was written");
    assert_eq!(
        std::fs::read_to_string(out.join("metrics.jsonl")).unwrap(),
        before,
        "a refused resume must leave the metrics alone"
    );
}

#[test]
fn a_truncated_tensor_file_is_refused() {
    let f = fixture("dpo");
    let out = stopped_run(&f, "truncated", |ckpt| {
        let path = ckpt.join("tensors.safetensors");
        let len = std::fs::metadata(&path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len / 2).unwrap();
    });
    assert_refused(
        &f,
        &out,
        &["tensors.safetensors", "bytes, the manifest says"],
    );
}

#[test]
fn a_flipped_bit_in_the_tensors_is_refused() {
    let f = fixture("dpo");
    let out = stopped_run(&f, "flipped", |ckpt| {
        let path = ckpt.join("tensors.safetensors");
        let mut bytes = std::fs::read(&path).unwrap();
        let i = bytes.len() - 100;
        bytes[i] ^= 0x04;
        std::fs::write(&path, bytes).unwrap();
    });
    assert_refused(&f, &out, &["tensors.safetensors", "CRC-32"]);
}

#[test]
fn a_damaged_manifest_is_refused() {
    let f = fixture("dpo");
    let out = stopped_run(&f, "manifest", |ckpt| {
        let path = ckpt.join("state.json");
        let text = std::fs::read(&path).unwrap();
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    });
    assert_refused(&f, &out, &["state.json", "not valid JSON"]);
    // A checkpoint without its state.json was never completed.
    let out = stopped_run(&f, "no-manifest", |ckpt| {
        std::fs::remove_file(ckpt.join("state.json")).unwrap();
    });
    assert_refused(&f, &out, &["state.json is missing"]);
}

#[test]
fn a_torn_checkpoint_falls_back_to_an_intact_previous_one_and_still_ends_bitwise_equal() {
    let r = &uninterrupted("dpo");
    let f = &r.fixture;
    let out = f.out("fallback");
    let o = f.run(&out, &["--stop-after", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let step4 = f.out("fallback-step4");
    std::fs::rename(out.join("checkpoint"), &step4).unwrap();
    std::fs::create_dir(out.join("checkpoint")).unwrap();
    for name in ["state.json", "tensors.safetensors"] {
        std::fs::copy(step4.join(name), out.join("checkpoint").join(name)).unwrap();
    }
    let o = f.run(&out, &["--resume", "--stop-after", "8"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Step 8's checkpoint is torn; step 4's is where an interrupted swap leaves it.
    std::fs::rename(&step4, out.join("checkpoint.old")).unwrap();
    let tensors = out.join("checkpoint/tensors.safetensors");
    let len = std::fs::metadata(&tensors).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&tensors)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let o = f.run(&out, &["--resume"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("torn or corrupt checkpoint") && err.contains("checkpoint.old instead"),
        "the fallback should be reported: {err}"
    );
    assert!(
        out.join("checkpoint.torn/tensors.safetensors").exists(),
        "the torn checkpoint should be kept aside for inspection"
    );
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["steps_this_run"], steps_total() - 4, "{summary}");
    assert_same_weights(&r.weights, &weights(&out));
    let m = metrics(&out);
    assert_eq!(steps(&m), (1..=steps_total()).collect::<Vec<_>>());
    assert_eq!(m, r.metrics);
}
