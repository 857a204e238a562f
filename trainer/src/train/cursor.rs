//! The data position: a seeded shuffle per epoch and an index into it, so a resumed run
//! draws exactly the batches the uninterrupted run would have drawn.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// Position in a shuffled stream of example indices `0..len`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cursor {
    /// Seed of every epoch's shuffle (epoch `e` uses `seed + e`).
    pub seed: u64,
    /// Whether to shuffle at all.
    pub shuffle: bool,
    /// Number of examples.
    pub len: usize,
    /// Current epoch (0-based).
    pub epoch: u64,
    /// Next position within the epoch's order.
    pub index: usize,
    #[serde(skip)]
    order: Vec<usize>,
}

impl Cursor {
    /// The start of epoch 0.
    pub fn new(len: usize, seed: u64, shuffle: bool) -> Self {
        let mut c = Self {
            seed,
            shuffle,
            len,
            epoch: 0,
            index: 0,
            order: Vec::new(),
        };
        c.reorder();
        c
    }

    fn reorder(&mut self) {
        self.order = (0..self.len).collect();
        if self.shuffle {
            let mut rng = StdRng::seed_from_u64(self.seed.wrapping_add(self.epoch));
            self.order.shuffle(&mut rng);
        }
    }

    /// Restores a saved position (rebuilding that epoch's order).
    pub fn restore(&mut self, saved: &Cursor) {
        *self = saved.clone();
        self.reorder();
    }

    /// The next `n` example indices, continuing into the next epoch where this one ends.
    pub fn next_batch(&mut self, n: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n && self.len > 0 {
            if self.index >= self.len {
                self.epoch += 1;
                self.index = 0;
                self.reorder();
            }
            out.push(self.order[self.index]);
            self.index += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restored_cursor_continues_the_same_stream() {
        let mut a = Cursor::new(7, 3, true);
        let mut first: Vec<usize> = a.next_batch(5);
        first.extend(a.next_batch(5));
        let mut sorted = first[..7].to_vec();
        sorted.sort();
        assert_eq!(sorted, (0..7).collect::<Vec<_>>());
        let mut b = Cursor::new(7, 3, true);
        b.next_batch(5);
        let saved = serde_json::to_string(&b).unwrap();
        let mut c = Cursor::new(7, 3, true);
        c.restore(&serde_json::from_str(&saved).unwrap());
        assert_eq!(c.next_batch(5), first[5..]);
        assert_eq!(a.next_batch(9), c.next_batch(9));
    }
}
