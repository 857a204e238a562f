//! Issue 9, test 2: maximal lotteries by linear programming.

#![allow(clippy::needless_range_loop)] // matrices indexed as in the formulas

use rand::{Rng, SeedableRng, rngs::StdRng};
use thresh_distortion::lottery::{maximal_lottery, worst_margin};
use thresh_distortion::preference::{UserType, population_preference};

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() < tol)
}

#[test]
fn condorcet_cycle_gives_the_uniform_lottery() {
    // Three voters with cyclic rankings a > b > c, b > c > a, c > a > b.
    let users = vec![
        UserType {
            weight: 1.0 / 3.0,
            utilities: vec![1.0, 0.5, 0.0],
        },
        UserType {
            weight: 1.0 / 3.0,
            utilities: vec![0.0, 1.0, 0.5],
        },
        UserType {
            weight: 1.0 / 3.0,
            utilities: vec![0.5, 0.0, 1.0],
        },
    ];
    for beta in [0.5, 4.0, 30.0] {
        let pref = population_preference(&users, beta);
        let p = maximal_lottery(&pref).unwrap();
        assert!(close(&p, &[1.0 / 3.0; 3], 1e-9), "beta {beta}: {p:?}");
    }
}

#[test]
fn asymmetric_cycle_weights_each_alternative_by_the_opposite_margin() {
    // a beats b by margin x, b beats c by y, c beats a by z: the maximal lottery is ∝ (y, z, x).
    let (x, y, z) = (0.2, 0.4, 0.6);
    let pref = vec![
        vec![0.5, 0.5 + x / 2.0, 0.5 - z / 2.0],
        vec![0.5 - x / 2.0, 0.5, 0.5 + y / 2.0],
        vec![0.5 + z / 2.0, 0.5 - y / 2.0, 0.5],
    ];
    let p = maximal_lottery(&pref).unwrap();
    let s = x + y + z;
    assert!(close(&p, &[y / s, z / s, x / s], 1e-9), "{p:?}");
}

#[test]
fn condorcet_winner_is_the_lottery() {
    // Alternative 1 is the favourite of only a quarter of the population, yet beats every other
    // alternative pairwise.
    let users = vec![
        UserType {
            weight: 0.4,
            utilities: vec![1.0, 0.8, 0.0, 0.1],
        },
        UserType {
            weight: 0.35,
            utilities: vec![0.0, 0.7, 1.0, 0.2],
        },
        UserType {
            weight: 0.25,
            utilities: vec![0.3, 1.0, 0.0, 0.9],
        },
    ];
    let pref = population_preference(&users, 5.0);
    for b in [0, 2, 3] {
        assert!(pref[1][b] > 0.5, "1 must beat {b}: {}", pref[1][b]);
    }
    let p = maximal_lottery(&pref).unwrap();
    assert!(close(&p, &[0.0, 1.0, 0.0, 0.0], 1e-9), "{p:?}");
}

#[test]
fn random_games_satisfy_the_lottery_condition() {
    let mut rng = StdRng::seed_from_u64(11);
    for m in 2..9 {
        for _ in 0..20 {
            let mut pref = vec![vec![0.5; m]; m];
            for a in 0..m {
                for b in a + 1..m {
                    let p: f64 = rng.random();
                    pref[a][b] = p;
                    pref[b][a] = 1.0 - p;
                }
            }
            let p = maximal_lottery(&pref).unwrap();
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert!(p.iter().all(|&v| v >= 0.0));
            assert!(worst_margin(&pref, &p) > -1e-9, "{p:?}");
            // A pure strategy that is not a Condorcet winner fails the condition.
            let loser = (0..m)
                .find(|&a| (0..m).any(|b| pref[b][a] > 0.5 + 1e-9))
                .unwrap();
            let mut pure = vec![0.0; m];
            pure[loser] = 1.0;
            assert!(worst_margin(&pref, &pure) < 0.0);
        }
    }
}
