//! `thresh serve`'s settings: flags over the TOML file over the defaults, checked values,
//! and a clear message when the demo models are missing.

use std::time::Duration;

use clap::{CommandFactory, Parser};
use thresh_server::serve::{LogFormat, ServeArgs};

/// `thresh serve`'s arguments as the binary reads them: the settings file expanded into
/// flags, then clap.
#[derive(Parser)]
struct Serve {
    #[command(flatten)]
    args: ServeArgs,
}

fn parse(argv: &[&str]) -> ServeArgs {
    let argv = std::iter::once("serve").chain(argv.iter().copied());
    let expanded = thresh_settings::expand(&Serve::command(), argv).unwrap();
    Serve::try_parse_from(expanded).unwrap().args
}

fn tiny_paths() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (p, r) = (dir.path().join("p"), dir.path().join("r"));
    std::fs::create_dir_all(&p).unwrap();
    std::fs::create_dir_all(&r).unwrap();
    (dir, p, r)
}

#[test]
fn flags_override_the_file_which_overrides_defaults() {
    let (dir, p, r) = tiny_paths();
    let file = dir.path().join("thresh.toml");
    std::fs::write(
        &file,
        format!(
            "policy = {:?}\nreward = {:?}\nmax_queue = 3\nport = 9000\napi_keys = [\"a\", \"b\"]\nlog_format = \"json\"\nrequest_timeout = 7\nscore_plain = true\n",
            p.display().to_string(),
            r.display().to_string()
        ),
    )
    .unwrap();
    let file = file.to_string_lossy();
    let cfg = parse(&["--config", &file, "--port", "9100"])
        .resolve()
        .unwrap();
    assert_eq!(cfg.policy, p);
    assert_eq!(cfg.max_queue, 3);
    assert_eq!(cfg.addr.port(), 9100, "the flag wins over the file");
    assert_eq!(
        cfg.addr.ip().to_string(),
        "127.0.0.1",
        "loopback by default"
    );
    assert_eq!(cfg.api_keys, ["a", "b"]);
    assert_eq!(cfg.log_format, LogFormat::Json);
    assert_eq!(cfg.request_timeout, Duration::from_secs(7));
    assert_eq!(cfg.max_n, 64);
    assert_eq!(cfg.kv_budget_tokens, 65536);
    assert!(cfg.score_plain, "the file turns plain scoring on");
    let cfg = parse(&["--api-key", "c", &format!("--config={file}")])
        .resolve()
        .unwrap();
    assert_eq!(
        cfg.api_keys,
        ["c"],
        "keys on the command line replace the file's"
    );
    assert_eq!(cfg.addr.port(), 9000);
    let defaults = ServeArgs {
        policy: Some(p.clone()),
        reward: Some(r.clone()),
        ..Default::default()
    };
    assert!(!defaults.resolve().unwrap().score_plain, "off by default");
}

#[test]
fn bad_values_are_rejected_with_the_flag_named() {
    let (_dir, p, r) = tiny_paths();
    let base = || ServeArgs {
        policy: Some(p.clone()),
        reward: Some(r.clone()),
        ..Default::default()
    };
    let err = |a: ServeArgs| a.resolve().unwrap_err().to_string();
    assert!(
        err(ServeArgs {
            max_queue: Some(0),
            ..base()
        })
        .contains("--max-queue")
    );
    assert!(
        err(ServeArgs {
            device: Some("tpu".into()),
            ..base()
        })
        .contains("--device")
    );
    assert!(
        err(ServeArgs {
            device: Some("cuda:0".into()),
            ..base()
        })
        .contains("CUDA")
    );
    assert!(
        err(ServeArgs {
            dtype: Some("f8".into()),
            ..base()
        })
        .contains("--dtype")
    );
    assert!(
        err(ServeArgs {
            log_format: Some("xml".into()),
            ..base()
        })
        .contains("--log-format")
    );
    assert!(
        err(ServeArgs {
            weights: Some("q1".into()),
            ..base()
        })
        .contains("weight format")
    );
    assert!(
        err(ServeArgs {
            policy: Some("/no/such/model".into()),
            ..base()
        })
        .contains("--policy")
    );
}

#[test]
fn missing_demo_models_say_how_to_fetch_them() {
    // The binary resolves the demo models under $THRESH_MODELS.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_thresh"))
        .arg("serve")
        .env("THRESH_MODELS", "/nonexistent-thresh-models")
        .env_remove("THRESH_POLICY")
        .env_remove("THRESH_REWARD")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bash scripts/fetch-models.sh"), "{stderr}");
}

#[test]
fn the_binary_reads_its_settings_file_and_names_a_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("thresh.toml");
    std::fs::write(&file, "max_queue = 4\nmax_qeue = 3\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_thresh"))
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("max_qeue") && stderr.contains("thresh.toml"),
        "{stderr}"
    );
    // A value the flag rejects is clap's error, naming the flag.
    std::fs::write(&file, "max_queue = \"many\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_thresh"))
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--max-queue"), "{stderr}");
}

#[test]
fn connection_and_token_limits_have_defaults_and_flags() {
    let (_dir, p, r) = tiny_paths();
    let (p, r) = (p.to_string_lossy(), r.to_string_lossy());
    let cfg = parse(&["--policy", &p, "--reward", &r]).resolve().unwrap();
    assert_eq!(cfg.max_connections, 1024);
    assert_eq!(cfg.header_timeout, Duration::from_secs(30));
    assert_eq!(cfg.body_timeout, Duration::from_secs(30));
    assert_eq!(cfg.tokens, thresh_server::serve::TokenLimits::default());
    assert_eq!(cfg.tokens.default_chat_max_tokens, 512);
    assert_eq!(cfg.tokens.default_completion_max_tokens, 16);
    let cfg = parse(&[
        "--policy",
        &p,
        "--reward",
        &r,
        "--max-connections=8",
        "--body-timeout=5",
        "--max-input-tokens=100",
        "--max-tokens-limit=50",
        "--default-chat-max-tokens=64",
    ])
    .resolve()
    .unwrap();
    assert_eq!(cfg.max_connections, 8);
    assert_eq!(cfg.body_timeout, Duration::from_secs(5));
    assert_eq!(cfg.tokens.max_input_tokens, Some(100));
    assert_eq!(cfg.tokens.max_tokens_limit, Some(50));
    assert_eq!(cfg.tokens.default_chat_max_tokens, 64);
    for flag in [
        "--max-connections=0",
        "--header-timeout=0",
        "--max-tokens-limit=0",
    ] {
        let e = parse(&["--policy", &p, "--reward", &r, flag])
            .resolve()
            .unwrap_err()
            .to_string();
        let name = flag.split('=').next().unwrap();
        assert!(e.contains(name), "{flag}: {e}");
    }
}

#[test]
fn a_reward_api_key_needs_a_remote_reward() {
    let (_dir, p, r) = tiny_paths();
    let (p, r) = (p.to_string_lossy(), r.to_string_lossy());
    let e = parse(&["--policy", &p, "--reward", &r, "--reward-api-key", "k"])
        .resolve()
        .unwrap_err()
        .to_string();
    assert!(e.contains("--reward-api-key") && !e.contains(" k "), "{e}");
}

#[test]
fn a_remote_policy_takes_a_tokenizer_and_the_remote_flags_need_a_remote_policy() {
    let (_dir, p, r) = tiny_paths();
    let (p, r) = (p.to_string_lossy(), r.to_string_lossy());
    let err = |args: &[&str]| parse(args).resolve().unwrap_err().to_string();
    // Without --policy-tokenizer, the server's own tokenizer is asked at start-up.
    let cfg = parse(&["--policy", "http://127.0.0.1:9/v1", "--reward", &r])
        .resolve()
        .unwrap();
    assert!(cfg.policy_tokenizer.is_none());
    let e = err(&[
        "--policy",
        "http://127.0.0.1:9/v1",
        "--policy-tokenizer",
        "/no/such/dir",
        "--reward",
        &r,
    ]);
    assert!(e.contains("--policy-tokenizer /no/such/dir"), "{e}");
    // A remote policy with its tokenizer, and `extra` flags.
    let remote = |extra: &[&str]| {
        let mut args = vec![
            "--policy",
            "http://127.0.0.1:9/v1",
            "--policy-tokenizer",
            &p,
            "--reward",
            &r,
        ];
        args.extend_from_slice(extra);
        parse(&args).resolve()
    };
    let cfg = remote(&[]).unwrap();
    assert_eq!(cfg.remote_policy(), Some("http://127.0.0.1:9/v1"));
    for flag in ["--policy-model", "--policy-api-key", "--policy-tokenizer"] {
        let e = err(&["--policy", &p, "--reward", &r, flag, &p]);
        assert!(
            e.contains(flag) && e.contains("remote policy"),
            "{flag}: {e}"
        );
    }
    let e = err(&[
        "--policy",
        &p,
        "--reward",
        &r,
        "--policy-max-in-flight",
        "4",
    ]);
    assert!(
        e.contains("--policy-max-in-flight") && e.contains("remote policy"),
        "{e}"
    );
    let limit = |n: &str| remote(&["--policy-max-in-flight", n]);
    assert_eq!(limit("4").unwrap().policy_max_in_flight, Some(4));
    let e = limit("0").unwrap_err().to_string();
    assert!(e.contains("policy-max-in-flight"), "{e}");
}

#[test]
fn a_remote_aligner_needs_its_tokenizer_and_the_remote_aligner_flags_need_it() {
    let (_dir, p, r) = tiny_paths();
    let (p, r) = (p.to_string_lossy(), r.to_string_lossy());
    let err = |args: &[&str]| parse(args).resolve().unwrap_err().to_string();
    let at = "http://127.0.0.1:9/v1";
    let e = err(&["--policy", &p, "--reward", &r, "--aligner", at]);
    assert!(
        e.contains("--aligner-tokenizer") && e.contains("--aligner-template") && e.contains(at),
        "{e}"
    );
    // With its template named, the server's own tokenizer is used.
    let cfg = parse(&[
        "--policy",
        &p,
        "--reward",
        &r,
        "--aligner",
        at,
        "--aligner-template",
        "current",
    ])
    .resolve()
    .unwrap();
    assert!(cfg.aligner_tokenizer.is_none());
    let cfg = parse(&[
        "--policy",
        &p,
        "--reward",
        &r,
        "--aligner",
        at,
        "--aligner-tokenizer",
        &p,
        "--aligner-model",
        "aligner-7b",
    ])
    .resolve()
    .unwrap();
    assert_eq!(cfg.aligner_model.as_deref(), Some("aligner-7b"));
    for flag in [
        "--aligner-model",
        "--aligner-tokenizer",
        "--aligner-api-key",
    ] {
        // A local aligner (a path), or none at all.
        for aligner in [&["--aligner", &p][..], &[]] {
            let mut args = vec!["--policy", &p, "--reward", &r, flag, &p];
            args.extend_from_slice(aligner);
            let e = err(&args);
            assert!(
                e.contains(flag) && e.contains("remote aligner"),
                "{flag}: {e}"
            );
        }
    }
    let e = err(&[
        "--policy",
        &p,
        "--reward",
        &r,
        "--aligner",
        at,
        "--aligner-tokenizer",
        "/no/such/dir",
    ]);
    assert!(e.contains("--aligner-tokenizer /no/such/dir"), "{e}");
}
