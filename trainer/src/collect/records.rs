//! One prompt's request to the daemon, and its answer turned into a line of the trainer's
//! schema (or the reason the prompt gives no pair).

use serde_json::{Value, json};

use super::args::{CollectArgs, CollectStrategy, PairMode, Source};
use crate::data::{Correction, Example, Prompt, Response};

/// A prompt's result.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A line for the output file, and the reward margin of each of its pairs (where both
    /// sides are scored).
    Record {
        /// The schema line, with its `id`.
        line: Value,
        /// Chosen minus rejected reward, per pair.
        margins: Vec<f64>,
    },
    /// No pair: why (a short reason, counted in the summary).
    Skipped(&'static str),
}

/// The skip reasons, as the summary counts them.
pub mod skip {
    /// Every scored candidate has the same reward (or the same text).
    pub const EQUAL: &str = "all candidates have the same reward";
    /// Fewer than two candidates carry a final reward.
    pub const TOO_FEW: &str = "fewer than two scored candidates";
    /// Some pair differs, but by no more than `--min-margin`.
    pub const MARGIN: &str = "no pair's margin exceeds --min-margin";
    /// The Aligner returned the answer unchanged (or nothing).
    pub const UNCHANGED: &str = "the correction leaves the answer unchanged";
    /// `--guarded`: the correction does not score above the answer.
    pub const GUARDED: &str = "the correction does not score above the answer (--guarded)";
}

/// The chat request for `prompt`, sampled with `seed`.
pub fn request(a: &CollectArgs, prompt: &Prompt, seed: u64) -> Value {
    let alignment = match a.source {
        Source::Candidates => {
            let mut al = json!({
                "strategy": a.strategy.wire_name(),
                "candidates": a.candidates,
                "return_candidates": true,
            });
            if a.strategy == CollectStrategy::SpeculativeRejection
                && let Some(alpha) = &a.alpha
            {
                al["alpha"] = alpha_json(alpha).unwrap_or(Value::Null);
            }
            al
        }
        Source::Corrections => json!({"strategy": "none", "correct": true}),
    };
    let mut body = json!({
        "messages": prompt.messages(),
        "max_tokens": a.max_tokens,
        "temperature": a.temperature,
        // The daemon reads the seed as a signed 64-bit integer.
        "seed": seed as i64,
        "alignment": alignment,
    });
    if let Some(m) = &a.model {
        body["model"] = json!(m);
    }
    body
}

/// `--alpha` as the daemon takes it: a number in [0, 1) or `"auto"`.
pub fn alpha_json(alpha: &str) -> Result<Value, String> {
    if alpha == "auto" {
        return Ok(json!("auto"));
    }
    match alpha.parse::<f64>() {
        Ok(x) if (0.0..1.0).contains(&x) => Ok(json!(x)),
        _ => Err(format!(
            "--alpha {alpha:?}: give a number in [0, 1) or `auto`"
        )),
    }
}

/// The schema line for `prompt` with `responses`, `pairs` and an optional correction.
fn line(
    id: &str,
    prompt: &Prompt,
    responses: Vec<Response>,
    pairs: Vec<(usize, usize)>,
    correction: Option<Correction>,
) -> Value {
    let mut v = Example {
        prompt: prompt.clone(),
        responses,
        pairs,
        correction,
    }
    .to_thresh_json();
    v["id"] = json!(id);
    v
}

/// A reward as the daemon reports it: a finite number, or none.
fn reward(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

/// The answer to a candidates request as a line: the scored candidates ranked best first
/// (one response per distinct text, its reward as `score`), and the pairs `mode` takes.
pub fn from_candidates(
    id: &str,
    prompt: &Prompt,
    answer: &Value,
    mode: PairMode,
    min_margin: f64,
) -> Result<Outcome, String> {
    let list = answer["alignment"]["candidates"]
        .as_array()
        .ok_or("the answer has no alignment.candidates (is the daemon a thresh daemon?)")?;
    let mut all: Vec<(String, f64)> = Vec::new();
    for c in list {
        let text = c["text"]
            .as_str()
            .ok_or("a candidate has no text")?
            .to_string();
        // Pruned rows carry no final reward: their answers are partial.
        if let Some(r) = reward(&c["reward"]) {
            all.push((text, r));
        }
    }
    if all.len() < 2 {
        return Ok(Outcome::Skipped(skip::TOO_FEW));
    }
    if all.iter().all(|(_, r)| *r == all[0].1) {
        return Ok(Outcome::Skipped(skip::EQUAL));
    }
    // One response per distinct text (the same text has the same reward).
    let mut scored: Vec<(String, f64)> = Vec::new();
    for (text, r) in all {
        if !scored.iter().any(|(t, _)| *t == text) {
            scored.push((text, r));
        }
    }
    // Best first; equal rewards keep the daemon's row order.
    scored.sort_by(|x, y| y.1.total_cmp(&x.1));
    let (best, worst) = (scored[0].1, scored[scored.len() - 1].1);
    let mut pairs = Vec::new();
    match mode {
        PairMode::BestWorst => {
            if best - worst > min_margin {
                pairs.push((0, scored.len() - 1));
            }
        }
        PairMode::All => {
            for i in 0..scored.len() {
                for j in i + 1..scored.len() {
                    if scored[i].1 - scored[j].1 > min_margin {
                        pairs.push((i, j));
                    }
                }
            }
        }
    }
    if pairs.is_empty() {
        return Ok(Outcome::Skipped(skip::MARGIN));
    }
    let margins = pairs
        .iter()
        .map(|&(c, r)| scored[c].1 - scored[r].1)
        .collect();
    let responses = scored
        .into_iter()
        .map(|(text, r)| Response {
            score: Some(r),
            ..Response::new(text)
        })
        .collect();
    Ok(Outcome::Record {
        line: line(id, prompt, responses, pairs, None),
        margins,
    })
}

/// The answer to a corrections request as a line: the correction preferred over the answer
/// (a pair and an Aligner `correction`), both scored where the daemon scored both.
pub fn from_correction(
    id: &str,
    prompt: &Prompt,
    answer: &Value,
    guarded: bool,
) -> Result<Outcome, String> {
    let k = &answer["choices"][0]["correction"];
    if !k.is_object() {
        return Err(
            "the answer has no choices[0].correction (does the daemon run --aligner?)".into(),
        );
    }
    let original = k["original"]
        .as_str()
        .ok_or("correction.original is missing")?;
    let corrected = k["corrected"]
        .as_str()
        .ok_or("correction.corrected is missing")?;
    if corrected.trim().is_empty() || corrected.trim() == original.trim() {
        return Ok(Outcome::Skipped(skip::UNCHANGED));
    }
    let (o, c) = (
        reward(&k["original_reward"]),
        reward(&k["corrected_reward"]),
    );
    let margin = o.zip(c).map(|(o, c)| c - o);
    if guarded && !margin.is_some_and(|m| m > 0.0) {
        return Ok(Outcome::Skipped(skip::GUARDED));
    }
    // Scores go on both responses or on neither (the schema's scalar rule).
    let both = margin.is_some();
    let responses = vec![
        Response {
            score: c.filter(|_| both),
            ..Response::new(corrected)
        },
        Response {
            score: o.filter(|_| both),
            ..Response::new(original)
        },
    ];
    let correction = Correction {
        answer: original.to_string(),
        corrected: corrected.to_string(),
    };
    Ok(Outcome::Record {
        line: line(id, prompt, responses, vec![(0, 1)], Some(correction)),
        margins: margin.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(rewards: &[(&str, Option<f64>)]) -> Value {
        let list: Vec<Value> = rewards
            .iter()
            .map(|(t, r)| json!({"text": t, "reward": r, "fate": "finished"}))
            .collect();
        json!({"alignment": {"candidates": list}})
    }

    fn prompt() -> Prompt {
        Prompt::Text("q".into())
    }

    #[test]
    fn best_against_worst_ranked_and_scored() {
        let a = cands(&[
            ("b", Some(0.2)),
            ("a", Some(0.9)),
            ("p", None),
            ("c", Some(-0.1)),
        ]);
        let Outcome::Record { line, margins } =
            from_candidates("7", &prompt(), &a, PairMode::BestWorst, 0.0).unwrap()
        else {
            panic!("skipped")
        };
        assert_eq!(
            line,
            json!({"id": "7", "prompt": "q", "responses": [
                {"text": "a", "score": 0.9}, {"text": "b", "score": 0.2},
                {"text": "c", "score": -0.1}], "pairs": [[0, 2]]})
        );
        assert!((margins[0] - 1.0).abs() < 1e-12);
        // The line reads back through the trainer's own parser.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pairs.jsonl");
        std::fs::write(&path, format!("{line}\n")).unwrap();
        let back = crate::data::load(&path, crate::data::Format::Thresh).unwrap();
        assert_eq!(back[0].pairs, vec![(0, 2)]);
        assert_eq!(back[0].responses[0].score, Some(0.9));
    }

    #[test]
    fn every_pair_above_the_margin() {
        let a = cands(&[("a", Some(1.0)), ("b", Some(0.5)), ("c", Some(0.45))]);
        let Outcome::Record { line, margins } =
            from_candidates("0", &prompt(), &a, PairMode::All, 0.1).unwrap()
        else {
            panic!("skipped")
        };
        assert_eq!(line["pairs"], json!([[0, 1], [0, 2]]));
        assert_eq!(margins.len(), 2);
        assert_eq!(
            from_candidates("0", &prompt(), &a, PairMode::BestWorst, 0.6).unwrap(),
            Outcome::Skipped(skip::MARGIN)
        );
    }

    #[test]
    fn ties_and_survivors() {
        let tie = cands(&[("a", Some(0.5)), ("b", Some(0.5))]);
        assert_eq!(
            from_candidates("0", &prompt(), &tie, PairMode::BestWorst, 0.0).unwrap(),
            Outcome::Skipped(skip::EQUAL)
        );
        // Greedy candidates: the same text, so the same reward.
        let same = cands(&[("a", Some(0.5)), ("a", Some(0.5)), ("b", None)]);
        assert_eq!(
            from_candidates("0", &prompt(), &same, PairMode::BestWorst, 0.0).unwrap(),
            Outcome::Skipped(skip::EQUAL)
        );
        let survivor = cands(&[("a", Some(0.5)), ("b", None), ("c", None)]);
        assert_eq!(
            from_candidates("0", &prompt(), &survivor, PairMode::BestWorst, 0.0).unwrap(),
            Outcome::Skipped(skip::TOO_FEW)
        );
        // A repeated text is one response.
        let twice = cands(&[("a", Some(0.9)), ("a", Some(0.9)), ("b", Some(0.1))]);
        let Outcome::Record { line, .. } =
            from_candidates("0", &prompt(), &twice, PairMode::All, 0.0).unwrap()
        else {
            panic!("skipped")
        };
        assert_eq!(line["responses"].as_array().unwrap().len(), 2, "{line}");
        assert!(from_candidates("0", &prompt(), &json!({}), PairMode::All, 0.0).is_err());
    }

    fn corrected(orig: &str, o: Option<f64>, corr: &str, c: Option<f64>) -> Value {
        json!({"choices": [{"correction": {"original": orig, "original_reward": o,
            "corrected": corr, "corrected_reward": c, "returned": "corrected"}}]})
    }

    #[test]
    fn corrections_follow_guarded() {
        let worse = corrected("ans", Some(0.5), "fixed", Some(0.1));
        let Outcome::Record { line, margins } =
            from_correction("1", &prompt(), &worse, false).unwrap()
        else {
            panic!("skipped")
        };
        assert_eq!(line["pairs"], json!([[0, 1]]));
        assert_eq!(line["responses"][0]["text"], "fixed");
        assert_eq!(
            line["correction"],
            json!({"answer": "ans", "corrected": "fixed"})
        );
        assert!((margins[0] + 0.4).abs() < 1e-12);
        assert_eq!(
            from_correction("1", &prompt(), &worse, true).unwrap(),
            Outcome::Skipped(skip::GUARDED)
        );
        let better = corrected("ans", Some(0.1), "fixed", Some(0.5));
        assert!(matches!(
            from_correction("1", &prompt(), &better, true).unwrap(),
            Outcome::Record { .. }
        ));
        let same = corrected("ans", Some(0.1), " ans ", Some(0.1));
        assert_eq!(
            from_correction("1", &prompt(), &same, false).unwrap(),
            Outcome::Skipped(skip::UNCHANGED)
        );
        // An unscored correction: no scores on either side, and --guarded refuses it.
        let unscored = corrected("ans", Some(0.1), "fixed", None);
        let Outcome::Record { line, .. } =
            from_correction("1", &prompt(), &unscored, false).unwrap()
        else {
            panic!("skipped")
        };
        assert!(line["responses"][0].get("score").is_none(), "{line}");
        assert!(line["responses"][1].get("score").is_none(), "{line}");
        assert_eq!(
            from_correction("1", &prompt(), &unscored, true).unwrap(),
            Outcome::Skipped(skip::GUARDED)
        );
    }

    #[test]
    fn alphas() {
        assert_eq!(alpha_json("auto").unwrap(), json!("auto"));
        assert_eq!(alpha_json("0.5").unwrap(), json!(0.5));
        assert!(alpha_json("1").is_err());
        assert!(alpha_json("x").is_err());
    }
}
