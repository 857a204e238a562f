//! Population files: the examples load, invalid worlds are rejected with a clear error that
//! names the file and the problem, and a saved world reads back unchanged.

use std::path::{Path, PathBuf};

use thresh_distortion::DistortionError;
use thresh_distortion::population::{self, Generator, PopulationFile};
use thresh_distortion::preference::PairDistribution;
use thresh_distortion::sweep::SweepAxis;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/distortion")
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn error_of(name: &str, text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, name, text);
    let e = population::load(&p).unwrap_err().to_string();
    assert!(e.contains(name), "error does not name the file: {e}");
    e
}

#[test]
fn examples_load() {
    let w = population::load(&examples().join("three-types.yaml")).unwrap();
    assert_eq!(w.alternatives(), 5);
    assert_eq!(w.users.len(), 3);
    assert_eq!(w.comparisons, Some(20_000));
    assert_eq!(w.pairs, PairDistribution::Reference);
    assert_eq!(w.kl_budget, Some(0.3));
    let w = population::load(&examples().join("condorcet-cycle.json")).unwrap();
    assert_eq!(w.reference, vec![1.0 / 3.0; 3]);
    assert!(w.users.iter().all(|u| (u.weight - 1.0 / 3.0).abs() < 1e-12));
    assert_eq!(w.kl_budget, None);
    let w = population::load(&examples().join("majority-minority.yaml")).unwrap();
    assert_eq!(w.users[0].weight, 0.6);
    assert_eq!(w.users[0].utilities, vec![1.0, 0.8, 0.0, 0.0]);
    assert_eq!(w.users[1].utilities, vec![0.0, 1.0, 0.0, 0.0]);
}

#[test]
fn utilities_outside_the_unit_interval_are_rejected() {
    let e = error_of(
        "bad-utility.yaml",
        "users:\n  - { weight: 1, utilities: [0.2, 0.5] }\n  - { weight: 1, utilities: [0.1, 1.3] }\n",
    );
    assert!(
        e.contains("users[1].utilities[1] = 1.3 is outside [0, 1]"),
        "{e}"
    );
    let e = error_of(
        "neg.json",
        r#"{"users": [{"weight": 1, "utilities": [-0.1, 0.5]}]}"#,
    );
    assert!(
        e.contains("users[0].utilities[0] = -0.1 is outside [0, 1]"),
        "{e}"
    );
}

#[test]
fn reference_without_full_support_is_rejected() {
    let e = error_of(
        "no-support.yaml",
        "reference: [0.5, 0.5, 0.0]\nusers:\n  - { weight: 1, utilities: [0.2, 0.5, 1.0] }\n",
    );
    assert!(
        e.contains("reference[2] = 0") && e.contains("full support"),
        "{e}"
    );
    let e = error_of(
        "short-ref.yaml",
        "reference: [0.5, 0.5]\nusers:\n  - { weight: 1, utilities: [0.2, 0.5, 1.0] }\n",
    );
    assert!(
        e.contains("reference has 2 entries but there are 3 alternatives"),
        "{e}"
    );
    let e = error_of(
        "sum.yaml",
        "reference: [0.5, 0.6]\nusers:\n  - { weight: 1, utilities: [0.2, 0.5] }\n",
    );
    assert!(e.contains("reference sums to 1.1"), "{e}");
}

#[test]
fn negative_budget_and_other_bad_settings_are_rejected() {
    let users = "users:\n  - { weight: 1, utilities: [0.2, 0.5] }\n";
    let e = error_of("budget.yaml", &format!("kl_budget: -0.1\n{users}"));
    assert!(
        e.contains("kl_budget = -0.1 must be a finite number >= 0"),
        "{e}"
    );
    let e = error_of("beta.yaml", &format!("beta: 0\n{users}"));
    assert!(e.contains("beta = 0 must be positive"), "{e}");
    let e = error_of(
        "weights.yaml",
        "users:\n  - { weight: 0, utilities: [0.2, 0.5] }\n",
    );
    assert!(e.contains("users[0].weight = 0 must be positive"), "{e}");
    let e = error_of(
        "ragged.yaml",
        "users:\n  - { weight: 1, utilities: [0.2, 0.5] }\n  - { weight: 1, utilities: [0.2] }\n",
    );
    assert!(
        e.contains("users[1] has 1 utilities but users[0] has 2"),
        "{e}"
    );
    let e = error_of("empty.yaml", "beta: 2\n");
    assert!(e.contains("no population"), "{e}");
    let e = error_of(
        "both.yaml",
        &format!("{users}generate: {{ kind: random, alternatives: 3, users: 2, seed: 1 }}\n"),
    );
    assert!(e.contains("not both"), "{e}");
    let e = error_of(
        "gen.yaml",
        "generate: { kind: majority_minority, alternatives: 3, majority_weight: 1.5, gap: 0.1 }\n",
    );
    assert!(e.contains("majority_weight = 1.5 is outside (0, 1)"), "{e}");
}

#[test]
fn syntax_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "broken.json",
        "{\n  \"beta\": 2,\n  \"users\": [ oops ]\n}\n",
    );
    match population::load(&p).unwrap_err() {
        DistortionError::Data { path, line, .. } => {
            assert_eq!(path, p);
            assert_eq!(line, 3);
        }
        e => panic!("expected a data error, got {e}"),
    }
    let p = write(&dir, "unknown.yaml", "beta: 2\nbudget: 0.1\nusers: []\n");
    let e = population::load(&p).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, DistortionError::Data { line: 2, .. }), "{text}");
    assert!(
        text.contains("unknown field `budget`") && text.contains("unknown.yaml"),
        "{text}"
    );
    let p = write(&dir, "missing.yaml", "");
    std::fs::remove_file(&p).unwrap();
    assert!(matches!(
        population::load(&p).unwrap_err(),
        DistortionError::Io { .. }
    ));
}

#[test]
fn saved_worlds_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = PopulationFile {
        generate: Some(Generator::Random {
            alternatives: 4,
            users: 3,
            seed: 9,
        }),
        kl_budget: Some(0.25),
        beta: Some(3.0),
        pairs: Some(PairDistribution::Reference),
        ..PopulationFile::default()
    };
    let world = file.into_world(Path::new("generated")).unwrap();
    assert_eq!(world.users.len(), 3);
    assert!((world.users.iter().map(|u| u.weight).sum::<f64>() - 1.0).abs() < 1e-12);
    let p = dir.path().join("world.yaml");
    population::save(&world, &p).unwrap();
    assert_eq!(population::load(&p).unwrap(), world);
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn sweep_axes_parse() {
    assert_eq!(
        "beta=1,2.5".parse::<SweepAxis>().unwrap(),
        SweepAxis::Beta(vec![1.0, 2.5])
    );
    assert_eq!(
        "kl=0,0.5,none".parse::<SweepAxis>().unwrap(),
        SweepAxis::KlBudget(vec![Some(0.0), Some(0.5), None])
    );
    assert_eq!(
        "comparisons=100,exact".parse::<SweepAxis>().unwrap(),
        SweepAxis::Comparisons(vec![Some(100), None])
    );
    assert_eq!(
        "pairs=uniform,reference".parse::<SweepAxis>().unwrap(),
        SweepAxis::Pairs(vec![PairDistribution::Uniform, PairDistribution::Reference])
    );
    for bad in [
        "beta",
        "beta=-1",
        "kl=-0.5",
        "comparisons=0",
        "pairs=random",
        "gamma=1",
        "beta=",
    ] {
        assert!(bad.parse::<SweepAxis>().is_err(), "{bad}");
    }
}
