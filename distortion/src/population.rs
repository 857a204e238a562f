//! Population files (YAML or JSON): the tabular world a simulation runs in, and its checks.
//!
//! ```yaml
//! reference: [0.4, 0.3, 0.2, 0.1]   # optional; uniform when absent; must have full support
//! kl_budget: 0.5                   # optional; absent or null: no KL constraint; must be >= 0
//! beta: 4.0                        # Bradley-Terry temperature (optional, default 1)
//! comparisons: 10000               # optional; absent: the infinite-sample limit
//! pairs: reference                 # uniform (default) or reference
//! users:                           # explicit user types ...
//!   - { weight: 0.6, utilities: [1.0, 0.0, 0.5, 0.2] }
//!   - { weight: 0.4, utilities: [0.0, 1.0, 0.5, 0.2] }
//! # ... or a generated population instead of `users`:
//! # generate: { kind: majority_minority, alternatives: 4, majority_weight: 0.6, gap: 0.1 }
//! # generate: { kind: random, alternatives: 5, users: 20, seed: 7 }
//! ```

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use super::preference::{PairDistribution, UserType};
use crate::{DistortionError, Result};

/// A generated population.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Generator {
    /// Two types. The majority (share `majority_weight`) gives alternative 0 utility 1 and
    /// alternative 1 utility `1 - gap`; the minority gives alternative 0 utility 0 and
    /// alternative 1 utility 1; every other alternative is worth 0 to both.
    MajorityMinority {
        /// Number of alternatives (at least 2).
        alternatives: usize,
        /// Share of the majority type, in `(0, 1)`.
        majority_weight: f64,
        /// How much less the majority likes alternative 1 than alternative 0, in `[0, 1]`.
        gap: f64,
    },
    /// `users` types with independent uniform utilities and uniformly drawn, normalised shares.
    Random {
        /// Number of alternatives (at least 2).
        alternatives: usize,
        /// Number of user types (at least 1).
        users: usize,
        /// Seed of the generator.
        seed: u64,
    },
}

/// A population file as written on disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulationFile {
    /// Reference policy; uniform when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Vec<f64>>,
    /// KL budget; absent means no KL constraint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl_budget: Option<f64>,
    /// Bradley-Terry temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    /// Number of comparisons; absent means the infinite-sample limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparisons: Option<u64>,
    /// How comparison pairs are drawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairs: Option<PairDistribution>,
    /// Explicit user types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<UserType>>,
    /// A generated population (instead of `users`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<Generator>,
}

/// A validated tabular world.
#[derive(Debug, Clone, PartialEq)]
pub struct World {
    /// Reference policy, full support, sums to one.
    pub reference: Vec<f64>,
    /// User types; shares sum to one, utilities in `[0, 1]`.
    pub users: Vec<UserType>,
    /// Bradley-Terry temperature (`> 0`).
    pub beta: f64,
    /// KL budget (`>= 0`), or `None` for no KL constraint.
    pub kl_budget: Option<f64>,
    /// Number of comparisons, or `None` for the infinite-sample limit.
    pub comparisons: Option<u64>,
    /// How comparison pairs are drawn.
    pub pairs: PairDistribution,
}

impl World {
    /// Number of alternatives.
    pub fn alternatives(&self) -> usize {
        self.reference.len()
    }

    /// The world as a population file (explicit users), for writing back to disk.
    pub fn to_file(&self) -> PopulationFile {
        PopulationFile {
            reference: Some(self.reference.clone()),
            kl_budget: self.kl_budget,
            beta: Some(self.beta),
            comparisons: self.comparisons,
            pairs: Some(self.pairs),
            users: Some(self.users.clone()),
            generate: None,
        }
    }
}

fn generate(g: &Generator) -> std::result::Result<Vec<UserType>, String> {
    match *g {
        Generator::MajorityMinority {
            alternatives,
            majority_weight,
            gap,
        } => {
            if alternatives < 2 {
                return Err("generate.alternatives must be at least 2".into());
            }
            if !(majority_weight > 0.0 && majority_weight < 1.0) {
                return Err(format!(
                    "generate.majority_weight = {majority_weight} is outside (0, 1)"
                ));
            }
            if !(0.0..=1.0).contains(&gap) {
                return Err(format!("generate.gap = {gap} is outside [0, 1]"));
            }
            let mut major = vec![0.0; alternatives];
            major[0] = 1.0;
            major[1] = 1.0 - gap;
            let mut minor = vec![0.0; alternatives];
            minor[1] = 1.0;
            Ok(vec![
                UserType {
                    weight: majority_weight,
                    utilities: major,
                },
                UserType {
                    weight: 1.0 - majority_weight,
                    utilities: minor,
                },
            ])
        }
        Generator::Random {
            alternatives,
            users,
            seed,
        } => {
            if alternatives < 2 {
                return Err("generate.alternatives must be at least 2".into());
            }
            if users == 0 {
                return Err("generate.users must be at least 1".into());
            }
            let mut rng = StdRng::seed_from_u64(seed);
            Ok((0..users)
                .map(|_| UserType {
                    weight: rng.random::<f64>() + 1e-3,
                    utilities: (0..alternatives).map(|_| rng.random::<f64>()).collect(),
                })
                .collect())
        }
    }
}

impl PopulationFile {
    /// Reads a population file; `.json` files are parsed as JSON, anything else as YAML.
    /// Syntax errors name the file and line.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| DistortionError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        if is_json {
            serde_json::from_str(&text).map_err(|e| DistortionError::Data {
                path: path.to_path_buf(),
                line: e.line(),
                message: e.to_string(),
            })
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| DistortionError::Data {
                path: path.to_path_buf(),
                line: e.location().map_or(0, |l| l.line()),
                message: e.to_string(),
            })
        }
    }

    /// Checks the file and builds the world it describes. `path` only labels errors.
    pub fn into_world(self, path: &Path) -> Result<World> {
        self.validate()
            .map_err(|message| DistortionError::Population {
                path: path.to_path_buf(),
                message,
            })
    }

    fn validate(self) -> std::result::Result<World, String> {
        let mut users = match (self.users, &self.generate) {
            (Some(_), Some(_)) => return Err("give either `users` or `generate`, not both".into()),
            (None, None) => return Err("no population: give `users` or `generate`".into()),
            (Some(users), None) => users,
            (None, Some(g)) => generate(g)?,
        };
        if users.is_empty() {
            return Err("`users` is empty".into());
        }
        let m = users[0].utilities.len();
        if m < 2 {
            return Err(format!(
                "users[0] has {m} utilities; at least 2 alternatives are needed"
            ));
        }
        for (i, u) in users.iter().enumerate() {
            if u.utilities.len() != m {
                return Err(format!(
                    "users[{i}] has {} utilities but users[0] has {m}",
                    u.utilities.len()
                ));
            }
            if !(u.weight.is_finite() && u.weight > 0.0) {
                return Err(format!("users[{i}].weight = {} must be positive", u.weight));
            }
            for (a, &v) in u.utilities.iter().enumerate() {
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!("users[{i}].utilities[{a}] = {v} is outside [0, 1]"));
                }
            }
        }
        // Shares are normalised; ones that already sum to one (up to rounding) are kept as
        // written, so that a saved world reads back bit for bit.
        let total: f64 = users.iter().map(|u| u.weight).sum();
        if (total - 1.0).abs() > 1e-12 {
            for u in &mut users {
                u.weight /= total;
            }
        }
        let reference = match self.reference {
            None => vec![1.0 / m as f64; m],
            Some(r) => {
                if r.len() != m {
                    return Err(format!(
                        "reference has {} entries but there are {m} alternatives",
                        r.len()
                    ));
                }
                for (a, &v) in r.iter().enumerate() {
                    if !(v.is_finite() && v > 0.0) {
                        return Err(format!(
                            "reference[{a}] = {v}: the reference policy must give every alternative positive probability (full support)"
                        ));
                    }
                }
                let s: f64 = r.iter().sum();
                if (s - 1.0).abs() > 1e-6 {
                    return Err(format!("reference sums to {s}, not 1"));
                }
                if (s - 1.0).abs() > 1e-12 {
                    r.iter().map(|v| v / s).collect()
                } else {
                    r
                }
            }
        };
        if let Some(b) = self.kl_budget
            && !(b.is_finite() && b >= 0.0)
        {
            return Err(format!("kl_budget = {b} must be a finite number >= 0"));
        }
        let beta = self.beta.unwrap_or(1.0);
        if !(beta.is_finite() && beta > 0.0) {
            return Err(format!("beta = {beta} must be positive"));
        }
        if self.comparisons == Some(0) {
            return Err("comparisons = 0: give a positive count, or leave it out for the infinite-sample limit".into());
        }
        Ok(World {
            reference,
            users,
            beta,
            kl_budget: self.kl_budget,
            comparisons: self.comparisons,
            pairs: self.pairs.unwrap_or(PairDistribution::Uniform),
        })
    }
}

/// Reads and validates a population file.
pub fn load(path: &Path) -> Result<World> {
    PopulationFile::read(path)?.into_world(path)
}

/// Writes a world as a YAML population file, through a temporary file and a rename.
pub fn save(world: &World, path: &Path) -> Result<()> {
    let text = serde_yaml_ng::to_string(&world.to_file())
        .map_err(|e| DistortionError::Config(format!("cannot encode population: {e}")))?;
    write_atomic(path, text.as_bytes())
}

/// Writes `bytes` to `path` by way of a temporary file in the same folder and a rename, so
/// that readers never see a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| DistortionError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp: PathBuf = path.to_path_buf();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tmp.set_file_name(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
