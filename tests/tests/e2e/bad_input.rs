//! Bad input to the binaries (an unknown flag, a missing model path, a settings file with an
//! unknown key): each exits non-zero at once with a message on stderr that names what is
//! wrong, and no panic or backtrace (with `RUST_BACKTRACE` unset, as `command` leaves it).

use std::process::Command;
use std::time::Duration;

use thresh_e2e::{
    THRESH, THRESH_BENCH, THRESH_TRAIN, command, run, s, tiny_policy, tiny_reward, write_pairs,
};

/// A refusal must come this fast: nothing is loaded before the input is checked.
const QUICK: Duration = Duration::from_secs(20);

/// How the message is laid out.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// `Error: ...` on exactly one line, and nothing else on stderr.
    OneLine,
    /// clap's refusal: `error: ...` on the first line, then only its usage block.
    Clap,
    /// An `Error: ` line, the names anywhere in stderr (anyhow's `Caused by:` chain, or the
    /// log lines of a daemon that had started loading).
    Anywhere,
}

fn refused(what: &str, cmd: &mut Command, names: &[&str], shape: Shape) {
    let out = run(cmd, Duration::from_secs(60));
    let stderr = &out.stderr;
    assert!(
        !out.status.success(),
        "{what}: must fail, exited {}; stderr:\n{stderr}",
        out.status
    );
    assert!(
        out.elapsed < QUICK,
        "{what}: took {:?} to refuse; stderr:\n{stderr}",
        out.elapsed
    );
    for bad in ["panicked", "Stack backtrace", "RUST_BACKTRACE"] {
        assert!(
            !stderr.contains(bad),
            "{what}: stderr must not contain `{bad}`:\n{stderr}"
        );
    }
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let message = match shape {
        Shape::OneLine => {
            assert_eq!(lines.len(), 1, "{what}: one line on stderr:\n{stderr}");
            assert!(lines[0].starts_with("Error: "), "{what}: {stderr}");
            lines[0].to_string()
        }
        Shape::Clap => {
            let first = lines.first().copied().unwrap_or_default();
            assert!(first.starts_with("error: "), "{what}: {stderr}");
            for l in &lines[1..] {
                assert!(
                    l.starts_with("Usage: ")
                        || l.starts_with("For more information")
                        || l.trim_start().starts_with("tip: "),
                    "{what}: only clap's usage block after the error line, got `{l}`:\n{stderr}"
                );
            }
            first.to_string()
        }
        Shape::Anywhere => {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with("Error: ") || l.starts_with("error: ")),
                "{what}: an `Error: ` line on stderr:\n{stderr}"
            );
            stderr.clone()
        }
    };
    for name in names {
        assert!(
            message.contains(name),
            "{what}: the message must name `{name}`:\n{stderr}"
        );
    }
}

#[test]
fn unknown_flags_are_refused_by_name() {
    refused(
        "thresh serve --no-such-flag",
        command(THRESH).args(["serve", "--no-such-flag"]),
        &["--no-such-flag"],
        Shape::Clap,
    );
    refused(
        "thresh generate --max-tokns",
        command(THRESH).args(["generate", "--prompt", "hi", "--max-tokns", "3"]),
        &["--max-tokns"],
        Shape::Clap,
    );
    refused(
        "thresh-train dpo --lora-rnak",
        command(THRESH_TRAIN).args(["dpo", "--lora-rnak", "2"]),
        &["--lora-rnak"],
        Shape::Clap,
    );
    refused(
        "thresh-bench load --num-requets",
        command(THRESH_BENCH).args(["load", "--num-requets", "3"]),
        &["--num-requets"],
        Shape::Clap,
    );
}

#[test]
fn a_missing_model_path_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let reward = tiny_reward(dir.path(), "reward");
    let missing = dir.path().join("no-such-policy.gguf");
    refused(
        "thresh serve --policy MISSING",
        command(THRESH).args([
            "serve",
            "--port",
            "0",
            "--policy",
            s(&missing),
            "--reward",
            s(&reward),
        ]),
        &["--policy", s(&missing)],
        Shape::OneLine,
    );
    let missing_reward = dir.path().join("no-such-reward");
    let policy = tiny_policy(dir.path(), "policy");
    refused(
        "thresh serve --reward MISSING",
        command(THRESH).args([
            "serve",
            "--port",
            "0",
            "--policy",
            s(&policy),
            "--reward",
            s(&missing_reward),
        ]),
        &["--reward", s(&missing_reward)],
        Shape::OneLine,
    );
    // A file that exists but is no model: the daemon has bound its port and logs; loading
    // fails in the background and the process exits with the error last.
    let (pairs, _) = write_pairs(dir.path());
    refused(
        "thresh serve --policy NOT-A-MODEL",
        command(THRESH).args([
            "serve",
            "--port",
            "0",
            "--policy",
            s(&pairs),
            "--reward",
            s(&reward),
        ]),
        &[s(&pairs)],
        Shape::Anywhere,
    );
    refused(
        "thresh-train sft --model MISSING",
        command(THRESH_TRAIN).args([
            "sft",
            "--no-progress",
            "--model",
            s(&missing),
            "--data",
            s(&pairs),
            "--out",
            s(&dir.path().join("out")),
        ]),
        &[s(&missing)],
        Shape::OneLine,
    );
    let missing_data = dir.path().join("no-such-prompts.jsonl");
    refused(
        "thresh-bench load --dataset MISSING",
        command(THRESH_BENCH).args([
            "load",
            "--no-progress",
            "--num-requests",
            "1",
            "--base-url",
            &format!("http://127.0.0.1:{}", thresh_e2e::closed_port()),
            "--dataset",
            s(&missing_data),
        ]),
        &[s(&missing_data)],
        Shape::Anywhere,
    );
}

#[test]
fn an_unknown_settings_key_is_named_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let policy = tiny_policy(dir.path(), "policy");
    let reward = tiny_reward(dir.path(), "reward");
    let toml = dir.path().join("thresh.toml");
    std::fs::write(
        &toml,
        format!(
            "policy = {:?}\nreward = {:?}\nport = 0\nmax_qeue = 8\n",
            s(&policy),
            s(&reward)
        ),
    )
    .unwrap();
    refused(
        "thresh serve --config (max_qeue)",
        command(THRESH).args(["serve", "--config", s(&toml)]),
        &["max_qeue", s(&toml)],
        Shape::OneLine,
    );
    // THRESH_CONFIG names the file as well.
    refused(
        "THRESH_CONFIG=FILE thresh serve (max_qeue)",
        command(THRESH).arg("serve").env("THRESH_CONFIG", &toml),
        &["max_qeue", s(&toml)],
        Shape::OneLine,
    );
    let (pairs, _) = write_pairs(dir.path());
    let run_toml = dir.path().join("run.toml");
    std::fs::write(
        &run_toml,
        format!(
            "model = {:?}\ndata = {:?}\nout = {:?}\nmax_stpes = 2\n",
            s(&policy),
            s(&pairs),
            s(&dir.path().join("out"))
        ),
    )
    .unwrap();
    // The same one-line message as thresh serve's.
    refused(
        "thresh-train sft --config (max_stpes)",
        command(THRESH_TRAIN).args(["sft", "--no-progress", "--config", s(&run_toml)]),
        &["max_stpes", s(&run_toml)],
        Shape::OneLine,
    );
}
