//! Issue 9, tests 3-5: the methods on worlds whose answer is known.

use rand::{SeedableRng, rngs::StdRng};
use thresh_distortion::bradley_terry;
use thresh_distortion::population::World;
use thresh_distortion::preference::{
    Comparisons, PairDistribution, UserType, pair_probabilities, population_preference,
};
use thresh_distortion::simulate::simulate;

fn one_type(
    utilities: Vec<f64>,
    reference: Vec<f64>,
    beta: f64,
    kl_budget: Option<f64>,
    comparisons: Option<u64>,
) -> World {
    World {
        reference,
        users: vec![UserType {
            weight: 1.0,
            utilities,
        }],
        beta,
        kl_budget,
        comparisons,
        pairs: PairDistribution::Uniform,
    }
}

fn mixed_world(kl_budget: Option<f64>, comparisons: Option<u64>) -> World {
    World {
        reference: vec![0.1, 0.3, 0.2, 0.25, 0.15],
        users: vec![
            UserType {
                weight: 0.55,
                utilities: vec![1.0, 0.0, 0.4, 0.7, 0.2],
            },
            UserType {
                weight: 0.45,
                utilities: vec![0.0, 1.0, 0.6, 0.1, 0.9],
            },
        ],
        beta: 4.0,
        kl_budget,
        comparisons,
        pairs: PairDistribution::Reference,
    }
}

const U: [f64; 5] = [0.9, 0.1, 0.5, 0.7, 0.3];
const REF: [f64; 5] = [0.1, 0.3, 0.2, 0.25, 0.15];

/// Test 3: one user type, no KL constraint: every method picks the type's favourite, so all
/// coincide exactly.
#[test]
fn one_type_without_kl_all_methods_coincide() {
    for beta in [0.5, 3.0, 20.0] {
        for comparisons in [None, Some(50_000)] {
            let w = one_type(U.to_vec(), REF.to_vec(), beta, None, comparisons);
            let o = simulate(&w, &mut StdRng::seed_from_u64(3)).unwrap();
            assert_eq!(o.rlhf.distortion, 1.0, "beta {beta} T {comparisons:?}");
            assert_eq!(o.nlhf.distortion, 1.0, "beta {beta} T {comparisons:?}");
            assert_eq!(o.benchmark.distortion, 1.0);
        }
    }
}

/// Test 3 under a KL budget. RLHF's Bradley-Terry reward is `beta * u` up to a shift, so its
/// tilt is the benchmark's: distortion 1 up to sampling error. NLHF tilts the reference by its
/// win rate `P(y > pi*)`, a monotone but not affine function of `u`: with two alternatives
/// that is the same policy, with more it stays within a small, beta-dependent margin of it
/// (0.01% at beta 1, under 2% at beta 10 on this instance) -- not sampling error.
#[test]
fn one_type_with_kl_methods_match_the_benchmark() {
    let mut rng = StdRng::seed_from_u64(4);
    for budget in [0.05, 0.3, 1.0] {
        for beta in [1.0, 10.0] {
            let exact = simulate(
                &one_type(U.to_vec(), REF.to_vec(), beta, Some(budget), None),
                &mut rng,
            )
            .unwrap();
            assert!(
                (exact.rlhf.distortion - 1.0).abs() < 1e-9,
                "{}",
                exact.rlhf.distortion
            );
            assert!((exact.rlhf.kl - budget).abs() < 1e-6 && (exact.nlhf.kl - budget).abs() < 1e-6);
            let sampled = simulate(
                &one_type(U.to_vec(), REF.to_vec(), beta, Some(budget), Some(200_000)),
                &mut rng,
            )
            .unwrap();
            assert!(
                (sampled.rlhf.distortion - 1.0).abs() < 1e-3,
                "{}",
                sampled.rlhf.distortion
            );
            let nlhf_margin = if beta <= 1.0 { 1e-4 } else { 0.02 };
            // Sampling error of 200 000 comparisons adds up to 1e-3.
            for (o, noise) in [(&exact, 0.0), (&sampled, 1e-3)] {
                assert!(
                    o.nlhf.distortion >= 1.0 - 1e-9 - noise,
                    "{}",
                    o.nlhf.distortion
                );
                assert!(
                    o.nlhf.distortion < 1.0 + nlhf_margin + noise,
                    "beta {beta} budget {budget}: {}",
                    o.nlhf.distortion
                );
            }
            // With two alternatives NLHF's policy at a given KL is the benchmark's.
            let two = one_type(
                vec![0.8, 0.3],
                vec![0.7, 0.3],
                beta,
                Some(budget.min(0.3)),
                None,
            );
            let o = simulate(&two, &mut rng).unwrap();
            assert!(
                (o.nlhf.distortion - 1.0).abs() < 1e-6,
                "{}",
                o.nlhf.distortion
            );
        }
    }
}

/// Test 4: a KL budget of zero returns the reference, whatever the population.
#[test]
fn zero_budget_returns_the_reference() {
    for comparisons in [None, Some(5_000)] {
        let w = mixed_world(Some(0.0), comparisons);
        let o = simulate(&w, &mut StdRng::seed_from_u64(5)).unwrap();
        for m in [&o.rlhf, &o.nlhf, &o.benchmark] {
            assert_eq!(m.policy, w.reference);
            assert_eq!(m.kl, 0.0);
            assert_eq!(m.distortion, 1.0);
        }
    }
}

/// Test 4: no budget and one user type: each method returns that type's best alternative.
#[test]
fn no_budget_one_type_returns_the_best_alternative() {
    let best = [1.0, 0.0, 0.0, 0.0, 0.0];
    for comparisons in [None, Some(20_000)] {
        let w = one_type(U.to_vec(), REF.to_vec(), 2.0, None, comparisons);
        let o = simulate(&w, &mut StdRng::seed_from_u64(6)).unwrap();
        for m in [&o.rlhf, &o.nlhf, &o.benchmark] {
            for (a, b) in m.policy.iter().zip(&best) {
                assert!((a - b).abs() < 1e-9, "{:?}", m.policy);
            }
        }
    }
}

/// A population where the methods differ: RLHF and NLHF lose utility against the benchmark.
#[test]
fn mixed_population_has_distortion_above_one() {
    let o = simulate(&mixed_world(Some(0.5), None), &mut StdRng::seed_from_u64(7)).unwrap();
    assert!((o.benchmark.kl - 0.5).abs() < 1e-6);
    assert!(o.rlhf.distortion > 1.0 + 1e-6 && o.rlhf.utility < o.benchmark.utility);
    assert!(o.nlhf.distortion >= 1.0 - 1e-12);
    // No method at the same KL beats the benchmark, which is optimal there.
    assert!(o.rlhf.kl <= 0.5 + 1e-6 && o.nlhf.kl <= 0.5 + 1e-6);
}

fn centred(v: &[f64]) -> Vec<f64> {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    v.iter().map(|x| x - mean).collect()
}

/// Test 5: Bradley-Terry maximum likelihood recovers `beta * u` up to a shift.
#[test]
fn bradley_terry_recovers_utilities() {
    let utilities = vec![0.0, 0.15, 0.4, 0.55, 0.8, 1.0];
    let beta = 2.5;
    let users = vec![UserType {
        weight: 1.0,
        utilities: utilities.clone(),
    }];
    let reference = vec![0.3, 0.1, 0.2, 0.15, 0.05, 0.2];
    let truth = centred(&utilities.iter().map(|u| beta * u).collect::<Vec<_>>());
    let mut rng = StdRng::seed_from_u64(8);
    for dist in [PairDistribution::Uniform, PairDistribution::Reference] {
        let pairs = pair_probabilities(dist, &reference);
        // Infinite-sample limit: exact up to the (negligible) ridge.
        let exact = Comparisons::expected(&population_preference(&users, beta), &pairs);
        let r = bradley_terry::fit(&exact.wins, 1e-9);
        for (a, b) in r.iter().zip(&truth) {
            assert!((a - b).abs() < 1e-5, "{dist:?}: {r:?} vs {truth:?}");
        }
        // 300 000 sampled comparisons: within sampling error.
        let sampled = Comparisons::sample(&users, beta, &pairs, 300_000, &mut rng);
        let r = bradley_terry::fit(&sampled.wins, 1.0);
        assert!(r.iter().sum::<f64>().abs() < 1e-9);
        for (a, b) in r.iter().zip(&truth) {
            assert!((a - b).abs() < 0.05, "{dist:?}: {r:?} vs {truth:?}");
        }
    }
}

/// Alternatives never compared keep the mean reward instead of an arbitrary one.
#[test]
fn bradley_terry_leaves_uncompared_alternatives_at_the_mean() {
    let mut wins = vec![vec![0.0; 3]; 3];
    wins[0][1] = 70.0;
    wins[1][0] = 30.0;
    let r = bradley_terry::fit(&wins, 1.0);
    assert!(r[0] > r[1]);
    assert!(r[2].abs() < 1e-9 && (r[0] + r[1]).abs() < 1e-9, "{r:?}");
    // An alternative that won every comparison gets a finite, large reward.
    let mut wins = vec![vec![0.0; 2]; 2];
    wins[0][1] = 50.0;
    let r = bradley_terry::fit(&wins, 1.0);
    assert!(r[0].is_finite() && r[0] - r[1] > 3.0, "{r:?}");
}

/// Nearly indifferent users (utility differences of 1e-6): the margins are tiny, and NLHF's
/// regularisation must shrink with them to spend the budget, instead of stopping at a fixed
/// floor and returning (almost) the reference.
#[test]
fn tiny_margins_still_spend_the_budget() {
    let w = one_type(
        vec![0.0, 1e-6, 3e-6, 0.5e-6],
        vec![0.4, 0.3, 0.2, 0.1],
        1.0,
        Some(1.0),
        None,
    );
    let o = simulate(&w, &mut StdRng::seed_from_u64(9)).unwrap();
    for m in [&o.rlhf, &o.nlhf, &o.benchmark] {
        assert!(m.kl <= 1.0 + 1e-9 && m.kl > 1.0 - 1e-5, "{m:?}");
    }
    assert!((o.nlhf.distortion - 1.0).abs() < 1e-3, "{:?}", o.nlhf);
    assert!(o.nlhf_tau.is_some_and(|t| t < 1e-6), "{:?}", o.nlhf_tau);
}
