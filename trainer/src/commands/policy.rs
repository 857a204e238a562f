//! `dpo`, `pro`, `kldo` and `rdro`: policies trained against a frozen reference, whose
//! log-probabilities are computed once with the starting model and cached in the output
//! directory (a resumed run reads them back rather than using the moved model).

use serde_json::Value;

use super::{ensure_out, load_data, load_model, reference_cache, train_and_save};
use crate::cli::{
    CommonArgs, DpoArgs, DpoLoss, Estimator, Feedback, KldoArgs, ProArgs, RdroArgs, Reduction,
};
use crate::data::{self, Example};
use crate::encode::Encoder;
use crate::error::{Result, TrainError};
use crate::losses::{Kldo, KldoEstimator, RdroReduction};
use crate::model::TrainModel;
use crate::objectives::binary::{Binary, BinaryLoss};
use crate::objectives::pairs::{PairLoss, Pairs};
use crate::objectives::scalar::ScalarPro;
use crate::objectives::{Seq, reference_logps};

/// Chosen/rejected sequences interleaved (`2 i`, `2 i + 1`) with their reference values.
fn pair_objective(
    c: &CommonArgs,
    model: &TrainModel,
    examples: &[Example],
    kind: PairLoss,
) -> Result<Pairs> {
    let enc = Encoder::for_model(model, c.max_len);
    let mut seqs = Vec::new();
    for p in data::pairs(examples)? {
        let msgs = p.prompt.messages();
        seqs.push(enc.policy(&msgs, &p.chosen)?);
        seqs.push(enc.policy(&msgs, &p.rejected)?);
    }
    let reference = reference_logps(model, &seqs, c.batch_size * 2, &reference_cache(c)?)?;
    Ok(Pairs {
        seqs,
        reference,
        kind,
    })
}

/// Binary-feedback sequences and reference values; with `mismatched`, also each prompt with
/// the next example's response (KTO's KL estimate).
fn binary_objective(
    c: &CommonArgs,
    model: &TrainModel,
    examples: &[Example],
    kind: BinaryLoss,
    mismatched: bool,
) -> Result<Binary> {
    let enc = Encoder::for_model(model, c.max_len);
    let records = data::binary(examples)?;
    let mut seqs: Vec<Seq> = Vec::new();
    let mut desired = Vec::new();
    for r in &records {
        seqs.push(enc.policy(&r.prompt.messages(), &r.response)?);
        desired.push(r.desired);
    }
    let mut mism: Vec<Seq> = Vec::new();
    if mismatched {
        let n = records.len();
        for (i, r) in records.iter().enumerate() {
            let other = &records[(i + 1) % n];
            mism.push(enc.policy(&r.prompt.messages(), &other.response)?);
        }
    }
    let mut all = seqs.clone();
    all.extend(mism.iter().cloned());
    let reference = reference_logps(model, &all, c.batch_size * 2, &reference_cache(c)?)?;
    let (own, other) = reference.split_at(seqs.len());
    let mut obj = Binary::new(seqs, desired, own.to_vec(), kind);
    obj.mismatched = mism;
    obj.mismatched_reference = other.to_vec();
    Ok(obj)
}

/// `thresh-train dpo --loss dpo|ipo|kto`.
pub fn dpo(a: &DpoArgs) -> Result<Value> {
    let c = &a.common;
    let examples = load_data(&c.data, &c.format)?;
    let model = load_model(c, false)?;
    ensure_out(c)?;
    match a.loss {
        DpoLoss::Dpo | DpoLoss::Ipo => {
            let kind = if a.loss == DpoLoss::Dpo {
                PairLoss::Dpo {
                    beta: a.beta,
                    label_smoothing: a.label_smoothing,
                }
            } else {
                PairLoss::Ipo { beta: a.beta }
            };
            let mut obj = pair_objective(c, &model, &examples, kind)?;
            train_and_save(c, &model, &mut obj, true)
        }
        DpoLoss::Kto => {
            let kind = BinaryLoss::Kto {
                beta: a.beta,
                lambda_d: a.lambda_d,
                lambda_u: a.lambda_u,
            };
            let mut obj = binary_objective(c, &model, &examples, kind, true)?;
            train_and_save(c, &model, &mut obj, true)
        }
    }
}

/// `thresh-train pro`: pairwise, binary or scalar feedback.
pub fn pro(a: &ProArgs) -> Result<Value> {
    let c = &a.common;
    let examples = load_data(&c.data, &c.format)?;
    let feedback = match a.feedback {
        Feedback::Auto if examples.iter().any(|e| !e.pairs.is_empty()) => Feedback::Pairwise,
        Feedback::Auto
            if examples
                .iter()
                .any(|e| e.responses.iter().filter(|r| r.score.is_some()).count() >= 2) =>
        {
            Feedback::Scalar
        }
        Feedback::Auto => Feedback::Binary,
        f => f,
    };
    let model = load_model(c, false)?;
    ensure_out(c)?;
    match feedback {
        Feedback::Pairwise | Feedback::Auto => {
            let kind = PairLoss::Pro {
                beta: a.beta,
                alpha: a.alpha,
            };
            let mut obj = pair_objective(c, &model, &examples, kind)?;
            train_and_save(c, &model, &mut obj, true)
        }
        Feedback::Binary => {
            let kind = BinaryLoss::Pro {
                beta: a.beta,
                alpha: a.alpha,
            };
            let mut obj = binary_objective(c, &model, &examples, kind, false)?;
            train_and_save(c, &model, &mut obj, true)
        }
        Feedback::Scalar => {
            let records = data::scalar(&examples)?;
            let n = records.iter().map(|r| r.responses.len()).min().unwrap_or(0);
            if n < 2 || records.iter().any(|r| r.responses.len() != n) {
                return Err(TrainError::Config(
                    "scalar feedback needs the same number (at least two) of scored responses for every prompt".into(),
                ));
            }
            let enc = Encoder::for_model(&model, c.max_len);
            let mut seqs = Vec::new();
            let mut scores = Vec::new();
            for r in &records {
                let msgs = r.prompt.messages();
                for (text, s) in r.responses.iter().zip(&r.scores) {
                    seqs.push(enc.policy(&msgs, text)?);
                    scores.push(*s);
                }
            }
            let reference = reference_logps(&model, &seqs, c.batch_size * n, &reference_cache(c)?)?;
            let mut obj = ScalarPro {
                seqs,
                scores,
                reference,
                n,
                beta: a.beta,
                alpha: a.alpha,
            };
            train_and_save(c, &model, &mut obj, true)
        }
    }
}

/// `thresh-train kldo`: aligned responses (label true) against unaligned (label false),
/// batches half and half.
pub fn kldo(a: &KldoArgs) -> Result<Value> {
    let c = &a.common;
    let examples = load_data(&c.data, &c.format)?;
    let model = load_model(c, false)?;
    ensure_out(c)?;
    let kldo = Kldo {
        beta: a.beta,
        estimator: match a.estimator {
            Estimator::Ma => KldoEstimator::MovingAverage,
            Estimator::Biased => KldoEstimator::Biased,
            Estimator::FDiv => KldoEstimator::FDivergence,
        },
        normalize: a.normalize,
        ema: None,
    };
    let mut obj = binary_objective(c, &model, &examples, BinaryLoss::Kldo(kldo), false)?;
    if obj.desired.iter().all(|&d| d) || obj.desired.iter().all(|&d| !d) {
        return Err(TrainError::NoExamples(
            "KLDO needs both aligned (label true) and unaligned (label false) responses".into(),
        ));
    }
    train_and_save(c, &model, &mut obj, true)
}

/// `thresh-train rdro`: alpha defaults to the fraction of preferred responses.
pub fn rdro(a: &RdroArgs) -> Result<Value> {
    let c = &a.common;
    let examples = load_data(&c.data, &c.format)?;
    let model = load_model(c, false)?;
    ensure_out(c)?;
    let records = data::binary(&examples)?;
    let measured =
        records.iter().filter(|r| r.desired).count() as f64 / records.len().max(1) as f64;
    let kind = BinaryLoss::Rdro {
        alpha: a.alpha.unwrap_or(measured),
        reduction: match a.reduction {
            Reduction::Pooled => RdroReduction::Pooled,
            Reduction::PerClass => RdroReduction::PerClass,
        },
    };
    let mut obj = binary_objective(c, &model, &examples, kind, false)?;
    train_and_save(c, &model, &mut obj, true)
}
