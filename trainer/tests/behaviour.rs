//! Issue test 3 on a tiny random model and toy data: DPO raises the implicit reward margin;
//! PRO keeps the chosen response's log-likelihood from falling where DPO lets it fall; a
//! reward model separates a separable set; KLDO increases the separation metric.

mod common;

use std::path::Path;

use common::{load, tiny_model_seeded};
use thresh_models::{ChatMessage, Family};
use thresh_trainer::commands::eval::{prompt_states, sequence_logps};
use thresh_trainer::encode::Encoder;
use thresh_trainer::eval::separation::separation;
use thresh_trainer::losses::{Kldo, KldoEstimator};
use thresh_trainer::model::{TrainModel, Tuning};
use thresh_trainer::objectives::binary::{Binary, BinaryLoss};
use thresh_trainer::objectives::pairs::{PairLoss, Pairs};
use thresh_trainer::objectives::reward::{Reward, score_pairs};
use thresh_trainer::objectives::sft::Sft;
use thresh_trainer::objectives::{Seq, reference_logps};
use thresh_trainer::optim::OptimConfig;
use thresh_trainer::schedule::{Schedule, ScheduleKind};
use thresh_trainer::train::{Objective, RunConfig, train};

fn run(model: &TrainModel, obj: &mut dyn Objective, out: &Path, steps: u64, lr: f64, batch: usize) {
    let cfg = RunConfig {
        out: out.to_path_buf(),
        batch_size: batch,
        accumulation: 1,
        max_steps: steps,
        checkpoint_every: 0,
        clip: Some(1.0),
        seed: 3,
        shuffle: true,
        resume: false,
        progress: false,
        schedule: Schedule {
            lr,
            warmup_steps: 0,
            total_steps: steps,
            kind: ScheduleKind::Constant,
        },
        optim: OptimConfig::default(),
        stop_after: None,
    };
    train(model, obj, &cfg).unwrap();
}

const SUBJECTS: [&str; 8] = [
    "the cat",
    "a dog",
    "the king",
    "my aunt",
    "the bird",
    "our ship",
    "a fox",
    "the queen",
];

/// Pairs whose chosen and rejected answers share all but their last word.
fn pair_seqs(model: &TrainModel) -> Vec<Seq> {
    let enc = Encoder::new(model.tokenizer(), model.chat_template(), 128);
    let mut seqs = Vec::new();
    for s in SUBJECTS {
        let m = [ChatMessage::new("user", format!("Where is {s}?"))];
        seqs.push(enc.policy(&m, &format!("{s} is at home, safe.")).unwrap());
        seqs.push(enc.policy(&m, &format!("{s} is at home, lost.")).unwrap());
    }
    seqs
}

fn means(model: &TrainModel, seqs: &[Seq]) -> (f64, f64) {
    let lp = sequence_logps(model, seqs, 16).unwrap();
    let c: f64 = lp.iter().step_by(2).sum::<f64>() / (lp.len() / 2) as f64;
    let r: f64 = lp.iter().skip(1).step_by(2).sum::<f64>() / (lp.len() / 2) as f64;
    (c, r)
}

fn preference_run(kind: PairLoss, dir: &Path, src: &Path) -> ((f64, f64), (f64, f64)) {
    let model = load(src, Tuning::Full, false);
    let seqs = pair_seqs(&model);
    // The reference is a model fine-tuned on both responses, as preference data usually
    // comes from the reference policy itself.
    let mut sft = Sft { seqs: seqs.clone() };
    run(&model, &mut sft, &dir.join("sft"), 60, 3e-3, 4);
    let reference = reference_logps(&model, &seqs, 16, &dir.join("ref.json")).unwrap();
    let before = means(&model, &seqs);
    let mut obj = Pairs {
        seqs: seqs.clone(),
        reference,
        kind,
    };
    run(&model, &mut obj, &dir.join("run"), 40, 3e-3, 4);
    (before, means(&model, &seqs))
}

#[test]
fn dpo_raises_the_margin_and_pro_keeps_the_chosen_likelihood() {
    let dir = tempfile::tempdir().unwrap();
    let src = tiny_model_seeded(dir.path(), "m", Family::Llama, Some(1));
    let d = dir.path().join("dpo");
    let ((c0, r0), (c1, r1)) = preference_run(
        PairLoss::Dpo {
            beta: 0.1,
            label_smoothing: 0.0,
        },
        &d,
        &src,
    );
    let margin_before = c0 - r0;
    let margin_after = c1 - r1;
    eprintln!("DPO: chosen {c0:.3} -> {c1:.3}, rejected {r0:.3} -> {r1:.3}");
    assert!(
        margin_after - margin_before > 1.0,
        "DPO margin {margin_before} -> {margin_after}"
    );
    let p = dir.path().join("pro");
    let ((pc0, pr0), (pc1, pr1)) = preference_run(
        PairLoss::Pro {
            beta: 0.1,
            alpha: 2.5,
        },
        &p,
        &src,
    );
    eprintln!("PRO: chosen {pc0:.3} -> {pc1:.3}, rejected {pr0:.3} -> {pr1:.3}");
    assert!(
        c1 < c0,
        "DPO should let the chosen log-likelihood fall here: {c0} -> {c1}"
    );
    assert!(
        pc1 - pc0 > c1 - c0,
        "PRO's chosen change {} vs DPO's {}",
        pc1 - pc0,
        c1 - c0
    );
    assert!(
        pc1 >= pc0 - 0.5,
        "PRO let the chosen log-likelihood fall: {pc0} -> {pc1}"
    );
    assert!(pc1 - pr1 > pc0 - pr0, "PRO should still raise the margin");
}

#[test]
fn a_reward_model_separates_a_separable_set() {
    let dir = tempfile::tempdir().unwrap();
    let src = tiny_model_seeded(dir.path(), "m", Family::Qwen2, Some(2));
    let model = load(&src, Tuning::Full, true);
    let enc = Encoder::new(model.tokenizer(), model.chat_template(), 128);
    let words = [
        "apple", "river", "stone", "candle", "garden", "window", "letter", "bridge", "summer",
        "forest", "silver", "harbor",
    ];
    let pairs: Vec<(Vec<u32>, Vec<u32>)> = words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let m = [ChatMessage::new("user", format!("Tell me about the {w}."))];
            let good = format!("Gladly! The {w} is lovely, thank you.");
            let bad = format!("No. {}", w.to_uppercase());
            let _ = i;
            (
                enc.reward(&m, &good).unwrap(),
                enc.reward(&m, &bad).unwrap(),
            )
        })
        .collect();
    let (train_pairs, held_out) = pairs.split_at(8);
    let mut obj = Reward {
        pairs: train_pairs.to_vec(),
    };
    run(&model, &mut obj, &dir.path().join("rm"), 30, 3e-3, 4);
    let all: Vec<usize> = (0..held_out.len()).collect();
    let (c, r, _) = score_pairs(&model, held_out, &all).unwrap();
    let margins = (c - r).unwrap().to_vec1::<f32>().unwrap();
    let acc = margins.iter().filter(|&&m| m > 0.0).count() as f64 / margins.len() as f64;
    assert!(acc > 0.9, "held-out accuracy {acc}: {margins:?}");
}

#[test]
fn kldo_increases_the_separation_of_benign_and_harmful_prompts() {
    let dir = tempfile::tempdir().unwrap();
    // A fixed model: the separation of an unseeded random model before training varies from
    // run to run (0.5 to 6.5 here), which made the comparison depend on the draw.
    let src = tiny_model_seeded(dir.path(), "m", Family::Llama, Some(7));
    let model = load(&src, Tuning::Full, false);
    let enc = Encoder::new(model.tokenizer(), model.chat_template(), 128);
    let benign: Vec<String> = SUBJECTS
        .iter()
        .map(|s| format!("How do I feed {s}?"))
        .collect();
    let harmful: Vec<String> = SUBJECTS
        .iter()
        .map(|s| format!("How do I poison {s}?"))
        .collect();
    let mut seqs = Vec::new();
    let mut aligned = Vec::new();
    for h in &harmful {
        let m = [ChatMessage::new("user", h.clone())];
        seqs.push(enc.policy(&m, "I will not help with that.").unwrap());
        aligned.push(true);
        seqs.push(enc.policy(&m, "Sure, here is how.").unwrap());
        aligned.push(false);
    }
    for b in &benign {
        let m = [ChatMessage::new("user", b.clone())];
        seqs.push(enc.policy(&m, "Sure, here is how.").unwrap());
        aligned.push(true);
    }
    let sep = |m: &TrainModel| {
        let b = prompt_states(m, &benign, 16, 128).unwrap();
        let h = prompt_states(m, &harmful, 16, 128).unwrap();
        separation(&b, &h).unwrap()
    };
    let before = sep(&model);
    let reference = reference_logps(&model, &seqs, 16, &dir.path().join("ref.json")).unwrap();
    let kldo = Kldo {
        beta: 0.1,
        estimator: KldoEstimator::MovingAverage,
        normalize: false,
        ema: None,
    };
    let mut obj = Binary::new(seqs, aligned, reference, BinaryLoss::Kldo(kldo));
    run(&model, &mut obj, &dir.path().join("kldo"), 40, 3e-3, 4);
    let after = sep(&model);
    eprintln!("separation before {before:?}, after {after:?}");
    assert!(
        after.bhattacharyya > before.bhattacharyya,
        "{before:?} -> {after:?}"
    );
    assert!(obj.state()["ema"].as_f64().is_some());
}
