//! Checks a JSON result against the tables of `bench/SCHEMA.md`: every documented path has
//! its type wherever it occurs, and every field written is documented.

use std::collections::BTreeMap;

use serde_json::Value;

/// The `path -> type` rows of the section headed `## \`{schema}\``.
pub fn documented(schema: &str) -> BTreeMap<String, String> {
    let doc = include_str!("../../SCHEMA.md");
    let head = format!("## `{schema}`");
    let start = doc
        .find(&head)
        .unwrap_or_else(|| panic!("no section {head}"));
    let section = &doc[start + head.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let rows: BTreeMap<String, String> = section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let path = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((path.to_string(), cells.get(2)?.to_string()))
        })
        .collect();
    assert!(rows.len() > 10, "the {schema} table is too short");
    rows
}

fn has_type(v: &Value, ty: &str) -> bool {
    let (ty, nullable) = match ty.strip_suffix('?') {
        Some(t) => (t, true),
        None => (ty, false),
    };
    if v.is_null() {
        return nullable;
    }
    match ty {
        "string" => v.is_string(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "summary" => {
            let Some(o) = v.as_object() else { return false };
            let keys: Vec<&str> = o.keys().map(String::as_str).collect();
            let mut expected = vec!["count", "mean", "median", "p90", "p99", "min", "max"];
            expected.sort();
            let mut got = keys.clone();
            got.sort();
            got == expected
                && o["count"].is_u64()
                && expected
                    .iter()
                    .filter(|k| **k != "count")
                    .all(|k| o[*k].is_number() || o[*k].is_null())
        }
        other => panic!("unknown type {other} in SCHEMA.md"),
    }
}

/// Every (normalised path, value) in `v`: array elements as `[]`, children of documented maps
/// as `.*`; summaries are leaves.
fn walk<'a>(
    v: &'a Value,
    path: String,
    rows: &BTreeMap<String, String>,
    out: &mut Vec<(String, &'a Value)>,
) {
    if !path.is_empty() {
        out.push((path.clone(), v));
    }
    if rows.get(&path).is_some_and(|t| t.starts_with("summary")) {
        return;
    }
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::Object(o) => {
            let map = rows.contains_key(&join("*"));
            for (k, child) in o {
                let p = if map { join("*") } else { join(k) };
                walk(child, p, rows, out);
            }
        }
        Value::Array(a) => {
            for child in a {
                walk(child, format!("{path}[]"), rows, out);
            }
        }
        _ => {}
    }
}

/// Asserts that `v` follows the documented schema `schema`; returns the documented paths
/// that occurred (so callers can ask that optional parts were exercised).
pub fn check(v: &Value, schema: &str) -> Vec<String> {
    assert_eq!(v["schema"], schema);
    let rows = documented(schema);
    let mut seen = Vec::new();
    walk(v, String::new(), &rows, &mut seen);
    for (path, value) in &seen {
        let ty = rows
            .get(path)
            .unwrap_or_else(|| panic!("{path} is written but not documented in SCHEMA.md"));
        assert!(has_type(value, ty), "{path} should be {ty}, got {value}");
    }
    // Every documented path outside arrays, maps and null parents is present.
    for path in rows.keys() {
        if path.contains("[]") || path.contains('*') {
            continue;
        }
        let parent_null = seen
            .iter()
            .any(|(p, val)| val.is_null() && path.starts_with(&format!("{p}.")));
        if parent_null {
            continue;
        }
        assert!(
            seen.iter().any(|(p, _)| p == path),
            "{path} is documented but missing from the output"
        );
    }
    let mut paths: Vec<String> = seen.into_iter().map(|(p, _)| p).collect();
    paths.dedup();
    paths
}
