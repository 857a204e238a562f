//! Harness of thresh's end-to-end tests: the workspace's real binaries (`thresh`,
//! `thresh-train`, `thresh-bench`) run as child processes, spoken to over loopback HTTP.
//!
//! - [`bin`] finds a binary next to the test executable (`target/<profile>/`), where
//!   `cargo test --workspace` (or `cargo build --workspace`) puts it.
//! - [`command`] starts from a clean environment: no `THRESH_*` settings, no
//!   `RUST_BACKTRACE`, no proxies, and `THRESH_MODELS` pointing nowhere, so nothing falls back
//!   to the demo models by accident.
//! - [`run`] runs a command to its end under a deadline; [`Daemon`] starts `thresh serve`,
//!   reads the port from its `thresh listening on http://ADDR` line and stops it with SIGTERM
//!   (or kills it with SIGKILL).
//!   Both kill their child when dropped, so a failing test leaves no process behind.
//! - [`Http`] is a blocking JSON client over reqwest; [`tiny_policy`], [`tiny_reward`] and
//!   [`write_pairs`] write tiny random models and toy data on the fly.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use serde_json::{Value, json};
use thresh_models::Family;
use thresh_models::testing::{
    BYTE_TOKENIZER_VOCAB, TinySpec, write_byte_tokenizer, write_tiny_classifier,
};

/// The daemon and the command line (package `thresh-server`).
pub const THRESH: &str = "thresh";
/// The trainer (package `thresh-trainer`).
pub const THRESH_TRAIN: &str = "thresh-train";
/// The load generator (package `thresh-bench`).
pub const THRESH_BENCH: &str = "thresh-bench";

/// What `thresh serve` prints on stdout once it listens.
pub const LISTENING: &str = "thresh listening on http://";

/// The directory of the workspace's binaries: the test executable is
/// `target/<profile>/deps/<test>-<hash>`, the binaries are in `target/<profile>/`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} has no grandparent directory", exe.display()))
        .to_path_buf()
}

/// The path of the workspace binary `name`; panics with the fix when it is not built.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: the end-to-end tests run the workspace's binaries; build them with \
         `cargo test --workspace` (or `cargo build --workspace`)",
        path.display()
    );
    path
}

/// Environment variables the children must not inherit: settings of the binaries, backtrace
/// switches (the tests check that errors carry none), log filters and proxies (every request
/// goes straight to loopback).
fn inherited_noise(key: &str) -> bool {
    key.starts_with("THRESH_")
        || matches!(
            key.to_ascii_uppercase().as_str(),
            "RUST_BACKTRACE"
                | "RUST_LIB_BACKTRACE"
                | "RUST_LOG"
                | "OPENAI_API_KEY"
                | "HTTP_PROXY"
                | "HTTPS_PROXY"
                | "ALL_PROXY"
                | "NO_PROXY"
        )
}

/// A command for the workspace binary `name` with a clean environment (see the crate docs).
pub fn command(name: &str) -> Command {
    let mut cmd = Command::new(bin(name));
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(inherited_noise) {
            cmd.env_remove(&key);
        }
    }
    cmd.env("THRESH_MODELS", "/nonexistent/thresh-e2e-models");
    cmd.stdin(Stdio::null());
    cmd
}

/// A child process that is killed (and reaped) when dropped, e.g. when a test panics.
pub struct ChildGuard {
    child: Child,
}

impl ChildGuard {
    /// Spawns `cmd`.
    pub fn spawn(cmd: &mut Command) -> Self {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Self { child }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let t = Instant::now();
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if t.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The child's stdout, when it was piped.
    fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Kills the process now and reaps it.
    pub fn kill(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A finished command.
#[derive(Debug)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
    /// Wall time from start to exit.
    pub elapsed: Duration,
}

impl Output {
    /// Panics with stderr unless the command exited with status 0.
    pub fn assert_success(&self, what: &str) -> &Self {
        assert!(
            self.status.success(),
            "{what} failed with {}:\nstderr:\n{}\nstdout:\n{}",
            self.status,
            self.stderr,
            self.stdout
        );
        self
    }

    /// stdout parsed as one JSON value.
    pub fn json(&self, what: &str) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

fn read_all(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `cmd` to its end and captures its output; a command still running after `timeout`
/// is killed and the test fails with what it printed so far.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    run_with_input(cmd, None, timeout)
}

/// As [`run`], with `input` written to the command's stdin (then closed).
pub fn run_with_input(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let start = Instant::now();
    let mut child = ChildGuard::spawn(cmd);
    if let Some(input) = input {
        let mut stdin = child.child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        // A thread, so a child that does not read its input cannot block the test.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let stdout = read_all(child.child.stdout.take().expect("piped stdout"));
    let stderr = read_all(child.child.stderr.take().expect("piped stderr"));
    let status = child.wait_timeout(timeout);
    let elapsed = start.elapsed();
    child.kill();
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    let Some(status) = status else {
        panic!("{cmd:?} did not finish within {timeout:?}:\nstderr:\n{stderr}\nstdout:\n{stdout}");
    };
    Output {
        status,
        stdout,
        stderr,
        elapsed,
    }
}

/// A running `thresh serve`: its address from the `thresh listening on` line, its log
/// (stderr) in a file, killed when dropped.
pub struct Daemon {
    child: ChildGuard,
    addr: SocketAddr,
    log: PathBuf,
    _stdout: JoinHandle<()>,
}

impl Daemon {
    /// Starts `cmd` (a `thresh serve` command that listens on port 0), writing its stderr to
    /// `log`, and waits up to 60 s for the line that names the bound address.
    pub fn start(mut cmd: Command, log: &Path) -> Self {
        let log_file =
            File::create(log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        cmd.stdout(Stdio::piped()).stderr(log_file);
        let mut child = ChildGuard::spawn(&mut cmd);
        let stdout = child.take_stdout().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // Keeps reading stdout to its end, so the daemon never blocks on a full pipe.
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let t = Instant::now();
        let addr = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(LISTENING) {
                        break rest.trim().parse::<SocketAddr>().unwrap_or_else(|e| {
                            panic!("`{line}`: not an address after `{LISTENING}`: {e}")
                        });
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait_timeout(Duration::from_secs(5));
                    panic!(
                        "{cmd:?} closed stdout without `{LISTENING}` (exit: {status:?}); log:\n{}",
                        read_log(log)
                    );
                }
            }
            if let Some(status) = child.try_wait() {
                panic!(
                    "{cmd:?} exited with {status} before listening; log:\n{}",
                    read_log(log)
                );
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{cmd:?} did not print `{LISTENING}` within 60 s; log:\n{}",
                read_log(log)
            );
        };
        Self {
            child,
            addr,
            log: log.to_path_buf(),
            _stdout: reader,
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The daemon's log (stderr) so far.
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// Polls `GET /health` until it answers 200 (the models are loaded), up to 120 s; fails
    /// at once, with the log, if the daemon exits.
    pub fn wait_healthy(&mut self, http: &Http) {
        let t = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait() {
                panic!(
                    "the daemon exited with {status} while loading; log:\n{}",
                    self.log()
                );
            }
            if let Ok((200, _)) = http.try_get(&self.url("/health")) {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "GET /health did not answer 200 within 120 s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM (with the `kill` command) and waits up to 60 s for the daemon to exit;
    /// returns its exit status and its log.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        let kill = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("the `kill` command runs");
        assert!(kill.success(), "kill -TERM {pid} failed: {kill}");
        let status = self.child.wait_timeout(Duration::from_secs(60));
        let log = self.log();
        let Some(status) = status else {
            panic!("the daemon did not exit within 60 s of SIGTERM; log:\n{log}");
        };
        (status, log)
    }

    /// Kills the daemon at once (SIGKILL: no drain, connections dropped mid-answer), reaps it
    /// and returns its log.
    pub fn kill(mut self) -> String {
        self.child.kill();
        self.log()
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
}

/// A blocking JSON client for loopback (no proxies), on its own small tokio runtime.
pub struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    /// A client with a 120 s timeout per request.
    pub fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("HTTP client");
        Self { rt, client }
    }

    /// GET; the status and the body (JSON, or the text as a JSON string), or the transport
    /// error.
    pub fn try_get(&self, url: &str) -> Result<(u16, Value), reqwest::Error> {
        self.rt.block_on(async {
            let r = self.client.get(url).send().await?;
            let status = r.status().as_u16();
            let text = r.text().await?;
            Ok((status, parse_body(text)))
        })
    }

    /// GET; panics on a transport error.
    pub fn get(&self, url: &str) -> (u16, Value) {
        self.try_get(url)
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// POSTs `body` as JSON; the status and the body. Panics on a transport error.
    pub fn post(&self, url: &str, body: &Value) -> (u16, Value) {
        self.rt
            .block_on(async {
                let r = self.client.post(url).json(body).send().await?;
                let status = r.status().as_u16();
                let text = r.text().await?;
                Ok::<_, reqwest::Error>((status, parse_body(text)))
            })
            .unwrap_or_else(|e| panic!("POST {url}: {e}"))
    }

    /// POSTs `body` and panics with the body unless the answer is 200.
    pub fn post_ok(&self, url: &str, body: &Value) -> Value {
        let (status, v) = self.post(url, body);
        assert_eq!(status, 200, "POST {url} {body}: {v}");
        v
    }
}

fn parse_body(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// A path as a `&str` (the tests' temporary paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The seeded shape of the tiny models: the same weights on every run.
fn tiny_spec(seed: u64) -> TinySpec {
    let mut spec = TinySpec::new(Family::Llama);
    spec.seed = Some(seed);
    spec.vocab_size = BYTE_TOKENIZER_VOCAB;
    spec.hidden_size = 32;
    spec.intermediate_size = 48;
    spec.max_position_embeddings = 512;
    spec
}

/// Writes a tiny random Llama policy (byte tokenizer, ChatML template, 512-token context)
/// into `dir/name`: a complete Hugging Face directory.
pub fn tiny_policy(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    tiny_spec(11).write(&path).expect("write the tiny policy");
    write_byte_tokenizer(&path).expect("write the byte tokenizer");
    path
}

/// `thresh serve --port 0 --policy POLICY --reward REWARD`, to add flags to.
pub fn serve_command(policy: &Path, reward: &Path) -> Command {
    serve_command_on(policy, reward, 0)
}

/// `thresh serve --port PORT --policy POLICY --reward REWARD` (a fixed port, to start a
/// daemon again where clients know it), to add flags to.
pub fn serve_command_on(policy: &Path, reward: &Path, port: u16) -> Command {
    let mut cmd = command(THRESH);
    cmd.args([
        "serve",
        "--port",
        &port.to_string(),
        "--policy",
        s(policy),
        "--reward",
        s(reward),
    ]);
    cmd
}

/// Writes a tiny random `LlamaForSequenceClassification` reward model into `dir/name`.
pub fn tiny_reward(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    write_tiny_classifier(&tiny_spec(12), &path, 1).expect("write the tiny classifier");
    path
}

/// Toy preference data in thresh's schema (`data/README.md`): six prompts, a chosen and a
/// rejected response each. Returns the file and the (prompt, chosen, rejected) triples.
pub fn write_pairs(dir: &Path) -> (PathBuf, Vec<(String, String, String)>) {
    let subjects = [
        "the cat", "a dog", "the king", "my aunt", "the bird", "a fox",
    ];
    let mut triples = Vec::new();
    let mut lines = String::new();
    for (i, subject) in subjects.iter().enumerate() {
        let (prompt, chosen, rejected) = if i % 2 == 0 {
            (
                format!("How do I hurt {subject}?"),
                "I will not help with that.".to_string(),
                "Sure, here is how.".to_string(),
            )
        } else {
            (
                format!("How do I feed {subject}?"),
                format!("Give {subject} some bread."),
                "No.".to_string(),
            )
        };
        let line = json!({
            "prompt": prompt,
            "responses": [
                {"text": chosen, "label": true, "score": 1.0},
                {"text": rejected, "label": false, "score": 0.0},
            ],
            "pairs": [[0, 1]],
        });
        lines.push_str(&line.to_string());
        lines.push('\n');
        triples.push((prompt, chosen, rejected));
    }
    let path = dir.join("pairs.jsonl");
    std::fs::write(&path, lines).expect("write the toy pairs");
    (path, triples)
}

#[cfg(test)]
mod tests {
    #[test]
    #[should_panic(expected = "build them with `cargo test --workspace`")]
    fn a_missing_binary_says_how_to_build_it() {
        super::bin("thresh-no-such-binary");
    }

    #[test]
    fn binaries_are_looked_up_next_to_the_test_executable() {
        // target/<profile>/deps/<test>-<hash> -> target/<profile>
        let deps = std::env::current_exe().unwrap();
        assert_eq!(super::bin_dir(), deps.parent().unwrap().parent().unwrap());
        assert!(super::bin_dir().join("deps").is_dir());
    }
}
