//! The settings file through real clap commands: keys become the flags they name, the
//! command line and the environment win over the file, and mistakes are errors.

use std::ffi::OsString;

use clap::{CommandFactory, Parser, Subcommand};
use thresh_settings::{SettingsError, expand};

#[derive(Parser, Debug)]
struct Serve {
    #[arg(long, env = "THRESH_SETTINGS_TEST_CONFIG")]
    config: Option<std::path::PathBuf>,
    #[arg(long)]
    max_queue: Option<usize>,
    #[arg(long, env = "THRESH_SETTINGS_TEST_PORT")]
    port: Option<u16>,
    #[arg(long = "api-key")]
    api_keys: Vec<String>,
    #[arg(long)]
    score_plain: bool,
    #[arg(long)]
    offset: Option<i64>,
    #[arg(long, short = 'n')]
    name: Option<String>,
}

#[derive(Parser, Debug)]
struct Tool {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    Train {
        #[arg(long)]
        steps: Option<u64>,
        #[arg(long)]
        quiet: bool,
    },
}

/// Held by the tests that set, or depend on the absence of, the environment variables above.
static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.toml");
    std::fs::write(&path, text).unwrap();
    let p = path.to_string_lossy().into_owned();
    (dir, p)
}

fn serve(args: &[&str]) -> Result<Serve, String> {
    let argv: Vec<OsString> = std::iter::once("serve")
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect();
    let expanded = expand(&Serve::command(), argv).map_err(|e| e.to_string())?;
    Serve::try_parse_from(expanded).map_err(|e| e.to_string())
}

#[test]
fn keys_become_the_flags_they_name() {
    let (_d, p) = file(
        "max_queue = 3\n\"api_keys\" = [\"a\", \"b\"]\nscore-plain = true\noffset = -2\nname = \"x y\"\n",
    );
    let s = serve(&["--config", &p]).unwrap();
    assert_eq!(s.max_queue, Some(3));
    assert_eq!(s.api_keys, ["a", "b"], "an array repeats the flag");
    assert!(
        s.score_plain,
        "true sets a switch; the long name works as a key"
    );
    assert_eq!(
        s.offset,
        Some(-2),
        "a negative number is a value, not a flag"
    );
    assert_eq!(s.name.as_deref(), Some("x y"));
    let (_d, p) = file("score_plain = false\n");
    assert!(!serve(&[&format!("--config={p}")]).unwrap().score_plain);
}

#[test]
fn the_command_line_replaces_the_files_values() {
    let (_d, p) = file("max_queue = 3\napi_keys = [\"a\", \"b\"]\nname = \"file\"\n");
    let s = serve(&[
        "--max-queue",
        "9",
        "--config",
        &p,
        "--api-key=c",
        "-n",
        "cli",
    ])
    .unwrap();
    assert_eq!(s.max_queue, Some(9));
    assert_eq!(
        s.api_keys,
        ["c"],
        "a list on the command line replaces the file's"
    );
    assert_eq!(s.name.as_deref(), Some("cli"), "short flags count too");
}

#[test]
fn the_environment_wins_over_the_file_and_can_name_it() {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, p) = file("port = 9000\nmax_queue = 4\n");
    unsafe { std::env::set_var("THRESH_SETTINGS_TEST_PORT", "9100") };
    let s = serve(&["--config", &p]).unwrap();
    assert_eq!(s.port, Some(9100));
    assert_eq!(s.max_queue, Some(4));
    unsafe { std::env::set_var("THRESH_SETTINGS_TEST_CONFIG", &p) };
    let s = serve(&[]).unwrap();
    assert_eq!(
        s.max_queue,
        Some(4),
        "the file named by the environment is read"
    );
    unsafe {
        std::env::remove_var("THRESH_SETTINGS_TEST_CONFIG");
        std::env::remove_var("THRESH_SETTINGS_TEST_PORT");
    }
    assert_eq!(serve(&[]).unwrap().max_queue, None, "no file, no settings");
}

#[test]
fn flags_go_after_the_subcommand() {
    let (_d, p) = file("steps = 5\nquiet = true\n");
    let argv = ["tool", "train", "--config", &p].map(OsString::from);
    let expanded = expand(&Tool::command(), argv).unwrap();
    assert_eq!(&expanded[..2], ["tool", "train"].map(OsString::from));
    let Cmd::Train { steps, quiet } = Tool::try_parse_from(expanded).unwrap().command;
    assert_eq!(steps, Some(5));
    assert!(quiet);
}

#[test]
fn mistakes_are_errors_that_name_the_file_and_the_key() {
    let (_d, p) = file("max_qeue = 3\n");
    let e = serve(&["--config", &p]).unwrap_err();
    assert!(e.contains("max_qeue") && e.contains("s.toml"), "{e}");
    let (_d, p) = file("score_plain = 1\n");
    assert!(serve(&["--config", &p]).unwrap_err().contains("switch"));
    let (_d, p) = file("name = { a = 1 }\n");
    assert!(
        serve(&["--config", &p])
            .unwrap_err()
            .contains("not a string")
    );
    let (_d, p) = file("max_queue = \"many\"\n");
    let e = serve(&["--config", &p]).unwrap_err();
    assert!(
        e.contains("--max-queue") && e.contains("many"),
        "clap checks the value: {e}"
    );
    let (_d, p) = file("max_queue = \n");
    assert!(serve(&["--config", &p]).unwrap_err().contains("s.toml"));
    let (_d, p) = file("config = \"other.toml\"\n");
    assert!(serve(&["--config", &p]).unwrap_err().contains("`config`"));
    assert!(
        serve(&["--config", "/nonexistent/x.toml"])
            .unwrap_err()
            .contains("x.toml")
    );
    let e = expand(&Serve::command(), ["serve", "--config"]).unwrap_err();
    assert!(matches!(e, SettingsError::MissingPath));
}

#[test]
fn without_a_file_the_arguments_are_unchanged() {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let argv = ["serve", "--max-queue", "2"].map(OsString::from);
    assert_eq!(expand(&Serve::command(), argv.clone()).unwrap(), argv);
}
