//! Aligner prompt templates, rendered exactly as the released models were trained on them.

use std::path::Path;

use crate::error::{AlignerError, Result};

/// How a (question, answer) pair becomes the corrector's prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlignerTemplate {
    /// The format of the released `aligner-7b-v1.0`:
    /// `BEGINNING OF CONVERSATION: USER: Edit the following Question-Answer pair to make it more
    /// helpful and harmless: {question} | {answer} ASSISTANT:`
    V1,
    /// The Aligner repository's current format:
    /// `BEGINNING OF CONVERSATION: USER: ##Question: {question}\n##Answer: {answer}\n##Correction:  ASSISTANT:`
    /// (two spaces before `ASSISTANT:`, as upstream has it).
    Current,
    /// A user-supplied string holding `{question}` and `{answer}` once each.
    Custom(String),
}

const V1: &str = "BEGINNING OF CONVERSATION: USER: Edit the following Question-Answer pair to make it more helpful and harmless: {question} | {answer} ASSISTANT:";
const CURRENT: &str = "BEGINNING OF CONVERSATION: USER: ##Question: {question}\n##Answer: {answer}\n##Correction:  ASSISTANT:";

impl AlignerTemplate {
    /// Parses `v1` (or `v1.0`), `current`, or a custom template string.
    pub fn parse(spec: &str) -> Result<Self> {
        match spec.trim().to_ascii_lowercase().as_str() {
            "v1" | "v1.0" => Ok(Self::V1),
            "current" | "v2" => Ok(Self::Current),
            _ => {
                for key in ["{question}", "{answer}"] {
                    let n = spec.matches(key).count();
                    if n != 1 {
                        return Err(AlignerError::InvalidInput(format!(
                            "aligner template must contain {key} exactly once (found {n}); or use \
                             `v1` or `current`"
                        )));
                    }
                }
                Ok(Self::Custom(spec.to_string()))
            }
        }
    }

    /// The template that suits a corrector at `path`: `v1` for the released v1.0 checkpoints
    /// (their directory or file name says `v1.0`), the current format otherwise. A file
    /// `aligner_template.txt` in the model directory overrides both.
    pub fn detect(path: &Path) -> Result<Self> {
        let dir = if path.is_dir() {
            Some(path)
        } else {
            path.parent()
        };
        if let Some(dir) = dir {
            let custom = dir.join("aligner_template.txt");
            if custom.is_file() {
                let text = std::fs::read_to_string(&custom).map_err(|e| {
                    AlignerError::InvalidInput(format!("{}: {e}", custom.display()))
                })?;
                return Self::parse(text.trim_end_matches('\n'));
            }
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        Ok(if name.contains("v1.0") || name.contains("v1_0") {
            Self::V1
        } else {
            Self::Current
        })
    }

    fn pattern(&self) -> &str {
        match self {
            Self::V1 => V1,
            Self::Current => CURRENT,
            Self::Custom(s) => s,
        }
    }

    /// Renders the prompt. Placeholders are substituted in one pass, so braces inside the
    /// question or answer are kept verbatim.
    pub fn render(&self, question: &str, answer: &str) -> String {
        let p = self.pattern();
        let (qi, ai) = match (p.find("{question}"), p.find("{answer}")) {
            (Some(q), Some(a)) => (q, a),
            _ => return p.to_string(),
        };
        let mut out = String::with_capacity(p.len() + question.len() + answer.len());
        let (first, first_len, first_val, second, second_len, second_val) = if qi < ai {
            (qi, 10, question, ai, 8, answer)
        } else {
            (ai, 8, answer, qi, 10, question)
        };
        out.push_str(&p[..first]);
        out.push_str(first_val);
        out.push_str(&p[first + first_len..second]);
        out.push_str(second_val);
        out.push_str(&p[second + second_len..]);
        out
    }

    /// A short name for responses and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::Current => "current",
            Self::Custom(_) => "custom",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_template_exactly() {
        assert_eq!(
            AlignerTemplate::V1.render("What is 2+2?", "5"),
            "BEGINNING OF CONVERSATION: USER: Edit the following Question-Answer pair to make it \
             more helpful and harmless: What is 2+2? | 5 ASSISTANT:"
        );
        assert_eq!(
            AlignerTemplate::Current.render("What is 2+2?", "5"),
            "BEGINNING OF CONVERSATION: USER: ##Question: What is 2+2?\n##Answer: 5\n##Correction:  ASSISTANT:"
        );
        let custom = AlignerTemplate::parse("A={answer};Q={question}!").unwrap();
        assert_eq!(custom.render("q {answer}", "a"), "A=a;Q=q {answer}!");
    }

    #[test]
    fn parses_names_and_rejects_bad_templates() {
        assert_eq!(AlignerTemplate::parse("v1.0").unwrap(), AlignerTemplate::V1);
        assert_eq!(
            AlignerTemplate::parse("current").unwrap(),
            AlignerTemplate::Current
        );
        for bad in [
            "no placeholders",
            "{question} only",
            "{question}{answer}{answer}",
        ] {
            assert!(AlignerTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn detects_from_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("aligner-7b-v1.0");
        std::fs::create_dir(&v1).unwrap();
        assert_eq!(AlignerTemplate::detect(&v1).unwrap(), AlignerTemplate::V1);
        let cur = dir.path().join("aligner-2b");
        std::fs::create_dir(&cur).unwrap();
        assert_eq!(
            AlignerTemplate::detect(&cur).unwrap(),
            AlignerTemplate::Current
        );
        std::fs::write(
            cur.join("aligner_template.txt"),
            "Q:{question} A:{answer}\n",
        )
        .unwrap();
        assert_eq!(
            AlignerTemplate::detect(&cur).unwrap().render("x", "y"),
            "Q:x A:y"
        );
    }
}
