//! `thresh-bench load` against a started `thresh serve`: every request accounted for, the
//! result in the layout `bench/SCHEMA.md` documents, the daemon's own counters agreeing; and
//! against the same address once the daemon has stopped: a clear refusal and no result file.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use thresh_e2e::{
    Daemon, Http, THRESH_BENCH, Value, command, run, s, serve_command, tiny_policy, tiny_reward,
};

const SCHEMA_MD: &str = include_str!("../../../bench/SCHEMA.md");
const SCHEMA: &str = "thresh-bench/load/v1";
const REQUESTS: u64 = 6;

/// The top-level rows (`path` without `.` or `[`) of SCHEMA.md's `thresh-bench/load/v1`
/// table, with their types.
fn documented_top_level() -> BTreeMap<String, String> {
    let head = format!("## `{SCHEMA}`");
    let start = SCHEMA_MD
        .find(&head)
        .unwrap_or_else(|| panic!("bench/SCHEMA.md has no section {head}"));
    let section = &SCHEMA_MD[start + head.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let rows: BTreeMap<String, String> = section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let path = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let ty = cells.get(2)?;
            (!path.contains(['.', '['])).then(|| (path.to_string(), ty.to_string()))
        })
        .collect();
    assert!(
        rows.len() >= 8 && rows.contains_key("schema"),
        "too few top-level rows in {head}: {rows:?}"
    );
    rows
}

fn has_type(v: &Value, ty: &str) -> bool {
    let (ty, nullable) = ty.strip_suffix('?').map_or((ty, false), |t| (t, true));
    match ty {
        _ if v.is_null() => nullable,
        "string" => v.is_string(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        other => panic!("type `{other}` of a top-level row in bench/SCHEMA.md"),
    }
}

fn bench(base_url: &str, output: &std::path::Path) -> thresh_e2e::Output {
    run(
        command(THRESH_BENCH).args([
            "load",
            "--base-url",
            base_url,
            "--num-requests",
            &REQUESTS.to_string(),
            "--max-concurrency",
            "2",
            "--max-tokens",
            "8",
            "--output",
            s(output),
            "--no-progress",
        ]),
        Duration::from_secs(180),
    )
}

/// The sum of a Prometheus counter over the label sets whose line contains every filter.
fn metric(page: &str, name: &str, filters: &[&str]) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_load_run_counts_every_request_in_the_documented_layout_and_a_stopped_daemon_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policy = tiny_policy(dir.path(), "policy");
    let reward = tiny_reward(dir.path(), "reward");
    let cmd = serve_command(&policy, &reward);
    let http = Http::new();
    let mut d = Daemon::start(cmd, &dir.path().join("serve.log"));
    d.wait_healthy(&http);
    let base = d.base_url();

    let output = dir.path().join("load.json");
    let out = bench(&base, &output);
    out.assert_success("thresh-bench load");
    let text = std::fs::read_to_string(&output)
        .unwrap_or_else(|e| panic!("--output {}: {e}", output.display()));
    let r: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));

    assert_eq!(r["schema"], SCHEMA, "{r:#}");
    let rows = documented_top_level();
    let keys: BTreeSet<&String> = r.as_object().expect("a JSON object").keys().collect();
    assert_eq!(
        keys,
        rows.keys().collect::<BTreeSet<_>>(),
        "top-level keys against bench/SCHEMA.md"
    );
    for (key, ty) in &rows {
        assert!(has_type(&r[key], ty), "`{key}` should be {ty}: {}", r[key]);
    }
    let req = &r["requests"];
    let (sent, completed, failed) = (
        req["sent"].as_u64().unwrap(),
        req["completed"].as_u64().unwrap(),
        req["failed"].as_u64().unwrap(),
    );
    assert_eq!(sent, REQUESTS, "{req}");
    assert_eq!(completed + failed, sent, "{req}");
    assert_eq!(failed, 0, "a healthy daemon: {}", r["failures"]);
    let settings = &r["settings"];
    assert_eq!(settings["base_url"], base.as_str(), "{settings}");
    assert_eq!(settings["num_requests"], REQUESTS, "{settings}");
    assert_eq!(settings["max_concurrency"], 2, "{settings}");
    assert_eq!(settings["max_tokens"], 8, "{settings}");
    let (_, models) = http.get(&d.url("/v1/models"));
    assert_eq!(
        settings["model"], models["data"][0]["id"],
        "the policy's id"
    );
    let output_tokens = r["tokens"]["output"].as_u64().unwrap();
    assert!(
        (1..=REQUESTS * 8).contains(&output_tokens),
        "1..={} output tokens, got {output_tokens}",
        REQUESTS * 8
    );
    assert_eq!(
        r["latency_ms"]["e2e"]["count"], REQUESTS,
        "{}",
        r["latency_ms"]
    );
    // The daemon counted the same requests.
    let (_, page) = http.get(&d.url("/metrics"));
    let page = page.as_str().expect("the metrics page as text");
    let served = metric(
        page,
        "thresh_requests_total",
        &["route=\"/v1/completions\"", "status=\"200\""],
    );
    assert_eq!(served, REQUESTS as f64, "thresh_requests_total:\n{page}");

    let addr = d.addr();
    let (status, log) = d.terminate();
    assert_eq!(status.code(), Some(0), "log:\n{log}");

    // Nothing listens there now.
    let empty = dir.path().join("after-stop");
    std::fs::create_dir(&empty).unwrap();
    let output = empty.join("load.json");
    let out = bench(&base, &output);
    assert!(
        !out.status.success(),
        "a stopped daemon must fail the run: {}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("cannot connect to {base}")),
        "stderr must name the address {addr}:\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(
        !output.exists(),
        "no result file for a run that did not start"
    );
    let left: Vec<_> = std::fs::read_dir(&empty).unwrap().collect();
    assert!(left.is_empty(), "nothing written next to it: {left:?}");
}
