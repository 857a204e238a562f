//! Grouping token sequences into right-padded batches under a token budget.

use crate::error::Result;
use crate::input::Scored;

/// Cuts `ids` to at most `max_len` tokens, dropping from the front so that the end of the
/// response is kept. Returns whether anything was dropped.
pub fn truncate_front(ids: &mut Vec<u32>, max_len: usize) -> bool {
    if ids.len() > max_len {
        ids.drain(..ids.len() - max_len);
        true
    } else {
        false
    }
}

/// Splits sequence indices into batches whose padded size (rows x longest row) stays within
/// `budget` tokens; sequences are taken in length order so that padding stays small. A
/// sequence longer than the budget gets a batch of its own.
pub fn plan(lengths: &[usize], budget: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (lengths[i], i));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        let longest = current
            .iter()
            .map(|&j| lengths[j])
            .max()
            .unwrap_or(0)
            .max(lengths[i]);
        if !current.is_empty() && (current.len() + 1) * longest > budget {
            batches.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Right-pads `rows` with `pad` to a `(rows, longest)` grid, returned flat with the longest
/// length.
pub fn pad_right(rows: &[&[u32]], pad: u32) -> (Vec<u32>, usize) {
    let longest = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut flat = Vec::with_capacity(rows.len() * longest);
    for r in rows {
        flat.extend_from_slice(r);
        flat.extend(std::iter::repeat_n(pad, longest - r.len()));
    }
    (flat, longest)
}

/// Scores encoded pairs in token-budget batches. `lengths[i]` and `truncated[i]` describe
/// pair `i` after encoding; `run` scores one batch (pair indices, shortest first) and returns
/// one score per index, in that order.
pub fn score_in_batches(
    lengths: &[usize],
    truncated: &[bool],
    budget: usize,
    mut run: impl FnMut(&[usize]) -> Result<Vec<f32>>,
) -> Result<Vec<Scored>> {
    let mut out = vec![
        Scored {
            score: 0.0,
            tokens: 0,
            truncated: false
        };
        lengths.len()
    ];
    for batch in plan(lengths, budget) {
        let scores = run(&batch)?;
        for (&i, score) in batch.iter().zip(scores) {
            out[i] = Scored {
                score,
                tokens: lengths[i],
                truncated: truncated[i],
            };
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_respect_the_budget_and_cover_everything() {
        let lengths = [5, 100, 7, 30, 6, 250];
        let batches = plan(&lengths, 120);
        let mut all: Vec<usize> = batches.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..6).collect::<Vec<_>>());
        for b in &batches {
            let longest = b.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(b.len() == 1 || b.len() * longest <= 120, "{b:?}");
        }
        let mut v = vec![1, 2, 3, 4, 5];
        assert!(truncate_front(&mut v, 3));
        assert_eq!(v, [3, 4, 5]);
        assert!(!truncate_front(&mut v, 3));
        let (flat, n) = pad_right(&[&[1, 2], &[3]], 0);
        assert_eq!((flat, n), (vec![1, 2, 3, 0], 2));
    }
}
