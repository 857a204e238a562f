//! The `thresh-train distortion` command end to end: the real binary on real files.

use std::path::Path;
use std::process::Command;

use rand::{SeedableRng, rngs::StdRng};
use thresh_distortion::population;
use thresh_distortion::simulate::simulate;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_thresh-train"))
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/distortion")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.env_remove("THRESH_POPULATION").output().unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn single_world_as_json_and_table() {
    let text = run_ok(bin().args([
        "distortion",
        "--population",
        &example("three-types.yaml"),
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for m in ["rlhf", "nlhf", "benchmark"] {
        let d = v[m]["distortion"].as_f64().unwrap();
        assert!((1.0 - 1e-9..2.0).contains(&d), "{m}: {d}");
        assert_eq!(v[m]["policy"].as_array().unwrap().len(), 5);
        assert!((v[m]["kl"].as_f64().unwrap() - 0.3).abs() < 1e-5);
    }
    // Flags override the file: no KL budget and the infinite-sample limit.
    let text = run_ok(bin().args([
        "distortion",
        "--population",
        &example("three-types.yaml"),
        "--kl-budget",
        "none",
        "--comparisons",
        "exact",
    ]));
    assert!(
        text.starts_with("| method |") && text.contains("| NLHF |"),
        "{text}"
    );
}

#[test]
fn sweep_writes_json_table_and_chart() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_string_lossy().into_owned();
    let table = run_ok(bin().args([
        "distortion",
        "--population",
        &example("majority-minority.yaml"),
        "--sweep",
        "kl=0,0.2,1,none",
        "--out",
        &out,
    ]));
    assert_eq!(table.lines().count(), 6, "{table}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("sweep.json")).unwrap())
            .unwrap();
    assert_eq!(v["sweep"], "kl_budget");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    // Budget zero: everyone plays the reference, distortion exactly 1.
    assert_eq!(rows[0]["rlhf_distortion"].as_f64().unwrap(), 1.0);
    assert_eq!(rows[0]["nlhf_distortion"].as_f64().unwrap(), 1.0);
    assert!(rows[3]["x"].is_null());
    let svg = std::fs::read_to_string(dir.path().join("sweep.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline") && svg.contains("NLHF"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sweep.md")).unwrap(),
        table
    );
}

#[test]
fn search_finds_worlds_that_reproduce_their_distortion() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_string_lossy().into_owned();
    run_ok(bin().args([
        "distortion",
        "--search",
        "--betas",
        "2,6",
        "--restarts",
        "2",
        "--steps",
        "60",
        "--time-limit-secs",
        "20",
        "--seed",
        "5",
        "--kl-budget",
        "0.5",
        "--out",
        &out,
    ]));
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("search.json")).unwrap())
            .unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for r in rows {
        let beta = r["beta"].as_f64().unwrap();
        let method = r["method"].as_str().unwrap();
        let found = r["distortion"].as_f64().unwrap();
        assert!(found > 1.0, "{r}");
        assert_eq!(r["evaluations"].as_u64().unwrap(), 2 * 61);
        // The saved worst world, re-simulated, gives the reported distortion.
        let world =
            population::load(&dir.path().join(format!("worst-{method}-beta{beta}.yaml"))).unwrap();
        assert_eq!(world.kl_budget, Some(0.5));
        let o = simulate(&world, &mut StdRng::seed_from_u64(0)).unwrap();
        let again = if method == "rlhf" {
            o.rlhf.distortion
        } else {
            o.nlhf.distortion
        };
        assert!(
            (again - found).abs() < 1e-9 * found,
            "{method} beta {beta}: {again} vs {found}"
        );
    }
    // Seeded: the same command finds the same worlds.
    let dir2 = tempfile::tempdir().unwrap();
    let out2 = dir2.path().to_string_lossy().into_owned();
    run_ok(bin().args([
        "distortion",
        "--search",
        "--betas",
        "2,6",
        "--restarts",
        "2",
        "--steps",
        "60",
        "--time-limit-secs",
        "20",
        "--seed",
        "5",
        "--kl-budget",
        "0.5",
        "--out",
        &out2,
    ]));
    for name in ["worst-rlhf-beta2.yaml", "worst-nlhf-beta6.yaml"] {
        assert_eq!(
            std::fs::read_to_string(dir.path().join(name)).unwrap(),
            std::fs::read_to_string(dir2.path().join(name)).unwrap()
        );
    }
    assert!(
        std::fs::read_to_string(dir.path().join("search.svg"))
            .unwrap()
            .contains("beta / 2")
    );
}

#[test]
fn bad_input_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "reference: [1.0, 0.0]\nusers:\n  - { weight: 1, utilities: [0.2, 0.5] }\n",
    )
    .unwrap();
    let out = bin()
        .args(["distortion", "--population"])
        .arg(&bad)
        .env_remove("THRESH_POPULATION")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml") && err.contains("full support"),
        "{err}"
    );

    let out = bin()
        .args([
            "distortion",
            "--population",
            &example("three-types.yaml"),
            "--kl-budget",
            "-1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("KL budget -1 must be >= 0"));

    let out = bin()
        .args(["distortion"])
        .env_remove("THRESH_POPULATION")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--population"));
}
