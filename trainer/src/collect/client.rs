//! The daemon's HTTP client for `collect`: one JSON POST with retries on the daemon's
//! transient refusals, and each failure sorted into the prompt's fault or the daemon's.

use std::time::Duration;

use serde_json::Value;

/// Largest answer body read (candidates' texts of a large request fit many times over).
const MAX_BODY: u64 = 64 << 20;
/// Tries per request on 429, 503 and connection errors.
const TRIES: u32 = 5;
/// The first wait between tries; it doubles each time (0.25 s, 0.5 s, ... 2 s).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Why a request brought no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The daemon refused this prompt (400, 413, 422...): the prompt is skipped and counted.
    Prompt(String),
    /// The daemon is down, refuses the key, has no such route, or fails: collection stops.
    Daemon(String),
}

/// A daemon at a base URL.
pub struct Daemon {
    agent: ureq::Agent,
    base: String,
    key: Option<String>,
}

/// `http://host:port`, `http://host:port/` and `http://host:port/v1` all name the daemon.
pub fn base_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("--url {url:?} must start with http:// or https://"))?;
    if rest.split(['/', '?', '#']).next().unwrap_or("").is_empty() {
        return Err(format!("--url {url:?} has no host"));
    }
    Ok(url.strip_suffix("/v1").unwrap_or(url).to_string())
}

impl Daemon {
    /// A client of the daemon at `url` whose requests end within `timeout`.
    pub fn new(url: &str, key: Option<String>, timeout: Duration) -> Result<Self, String> {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Ok(Self {
            agent,
            base: base_url(url)?,
            key,
        })
    }

    /// The daemon's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// POSTs `body` to `path` (`/v1/chat/completions`) and returns the JSON answer.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        let url = format!("{}{path}", self.base);
        let mut wait = FIRST_BACKOFF;
        let mut last = String::new();
        for attempt in 0..TRIES {
            if attempt > 0 {
                std::thread::sleep(wait);
                wait *= 2;
            }
            match self.once(&url, body) {
                Ok(v) => return Ok(v),
                Err(Attempt::Retry(why)) => last = why,
                Err(Attempt::Fail(e)) => return Err(e),
            }
        }
        Err(CallError::Daemon(format!(
            "POST {url}: {last} (after {TRIES} tries)"
        )))
    }

    fn once(&self, url: &str, body: &Value) -> Result<Value, Attempt> {
        let mut request = self
            .agent
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json");
        if let Some(key) = &self.key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let mut response = request.send(body.to_string()).map_err(|e| match e {
            ureq::Error::Timeout(_) => Attempt::Fail(CallError::Daemon(format!(
                "POST {url}: no answer within the timeout (--timeout)"
            ))),
            e => Attempt::Retry(format!("cannot reach the daemon: {e}")),
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map_err(|e| Attempt::Retry(format!("reading the answer: {e}")))?;
        let message = || error_message(&text);
        match status {
            200..=299 => serde_json::from_str(&text).map_err(|e| {
                Attempt::Fail(CallError::Daemon(format!(
                    "POST {url}: the answer is not JSON: {e}"
                )))
            }),
            429 | 503 => Err(Attempt::Retry(format!("HTTP {status}: {}", message()))),
            401 | 403 => Err(Attempt::Fail(CallError::Daemon(format!(
                "POST {url}: HTTP {status}: {} (pass the daemon's key with --api-key)",
                message()
            )))),
            404 | 405 => Err(Attempt::Fail(CallError::Daemon(format!(
                "POST {url}: HTTP {status}: {} (is --url a thresh daemon?)",
                message()
            )))),
            400..=499 => Err(Attempt::Fail(CallError::Prompt(format!(
                "HTTP {status}: {}",
                message()
            )))),
            _ => Err(Attempt::Fail(CallError::Daemon(format!(
                "POST {url}: HTTP {status}: {}",
                message()
            )))),
        }
    }
}

/// One try's failure.
enum Attempt {
    /// Worth another try after a wait.
    Retry(String),
    /// Final.
    Fail(CallError),
}

/// OpenAI's `error.message` where the body has one, else the body's start.
fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(base_url("http://h:1").unwrap(), "http://h:1");
        assert_eq!(base_url("http://h:1/").unwrap(), "http://h:1");
        assert_eq!(base_url("http://h:1/v1/").unwrap(), "http://h:1");
        assert!(base_url("h:1").unwrap_err().contains("http://"));
        assert!(base_url("http:///v1").unwrap_err().contains("no host"));
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(r#"{"error": {"message": "too long", "type": "x"}}"#),
            "too long"
        );
        assert_eq!(error_message("plain"), "plain");
    }
}
