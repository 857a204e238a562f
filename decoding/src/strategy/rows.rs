//! What a strategy drives: a batch of candidate answers that grow together. A local
//! [`DecodeBatch`] steps token by token on the decoder; a remote batch
//! ([`RemoteBatch`](crate::remote::RemoteBatch)) asks a policy server for a round's tokens at
//! once. Best-of-N and Speculative Rejection are written once, over this trait.

use crate::batch::{BatchStats, DecodeBatch, Row};
use crate::error::Result;

/// A batch of rows that share a prompt and advance in lockstep.
pub trait RowBatch {
    /// Tokens each active row has generated so far (active rows all have the same count).
    fn generated(&self) -> usize;
    /// Tokens each active row holds: the prompt plus [`RowBatch::generated`] (the unit of the
    /// budget schedule).
    fn row_len(&self) -> usize;
    /// Every row, finished or not, in their original order.
    fn rows(&self) -> &[Row];
    /// The rows still generating.
    fn active_rows(&self) -> &[usize];
    /// Whether every row has finished.
    fn is_done(&self) -> bool {
        self.active_rows().is_empty()
    }
    /// Advances every active row until it finishes or has generated `until` tokens in all
    /// (`None`: until it finishes); returns the rows that finished.
    fn advance(&mut self, until: Option<usize>) -> Result<Vec<usize>>;
    /// Drops active rows before they finish; returns the KV bytes in use before and after.
    fn prune(&mut self, rows: &[usize]) -> Result<(usize, usize)>;
    /// The most KV bytes this batch has held at once (0 where the memory is elsewhere).
    fn peak_kv_bytes(&self) -> usize;
    /// The rows and the counters.
    fn finish(self) -> (Vec<Row>, BatchStats);
}

impl RowBatch for DecodeBatch<'_> {
    fn generated(&self) -> usize {
        self.row_len() - self.prompt_len()
    }

    fn row_len(&self) -> usize {
        self.cache().len()
    }

    fn rows(&self) -> &[Row] {
        DecodeBatch::rows(self)
    }

    fn active_rows(&self) -> &[usize] {
        DecodeBatch::active_rows(self)
    }

    fn advance(&mut self, until: Option<usize>) -> Result<Vec<usize>> {
        let mut finished = Vec::new();
        while !self.is_done() && until.is_none_or(|d| RowBatch::generated(self) < d) {
            finished.extend(self.step()?);
        }
        Ok(finished)
    }

    fn prune(&mut self, rows: &[usize]) -> Result<(usize, usize)> {
        let before = self.cache().bytes_in_use();
        DecodeBatch::prune(self, rows)?;
        Ok((before, self.cache().bytes_in_use()))
    }

    fn peak_kv_bytes(&self) -> usize {
        self.stats().peak_kv_bytes
    }

    fn finish(self) -> (Vec<Row>, BatchStats) {
        self.into_parts()
    }
}
