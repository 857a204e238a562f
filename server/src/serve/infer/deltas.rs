//! Plain streaming: each answer's new text as its row grows, whichever policy grows it (a
//! local batch a decode step at a time, a remote server's stream as its tokens arrive).
//! Text that could still turn out to start a stop string is held back until the row moves
//! past it or ends; with `logprobs`, each delta carries the tokens its text completes (the
//! rule is in [`token_spans`](super::token_spans)); with `return_token_ids`, the ids
//! generated since the answer's last delta (with `logprobs`, those of the tokens it
//! carries, so that the two lists pair up).

use thresh_decoding::{DecodeError, Row};
use thresh_models::Tokenizer;
use tokio::sync::mpsc;

use super::jobs::Event;
use super::output::token_logprobs;
use super::token_spans::TokenSpans;
use crate::serve::validation::GenRequest;

/// What each answer of one streamed request has been sent so far.
pub(super) struct Deltas {
    /// Bytes held back at the end of an unfinished row (the longest stop string less one).
    hold: usize,
    /// Per answer: text bytes sent.
    sent: Vec<usize>,
    /// Per answer, with `logprobs`: which tokens each chunk of text completes.
    spans: Vec<TokenSpans>,
    /// Per answer, with `return_token_ids`: token ids sent.
    ids_sent: Option<Vec<usize>>,
}

impl Deltas {
    /// Nothing sent yet of `req`'s answers.
    pub(super) fn new(req: &GenRequest) -> Self {
        Self {
            hold: req.stop.stop.iter().map(|s| s.len()).max().unwrap_or(1) - 1,
            sent: vec![0; req.n],
            spans: vec![TokenSpans::new(); if req.logprobs { req.n } else { 0 }],
            ids_sent: req.return_token_ids.then(|| vec![0; req.n]),
        }
    }

    /// Sends each row's news since the last call as [`Event::Delta`]s. A row's tokens only
    /// grow, and its text only grows, except that a stop string cuts it once, as it ends.
    pub(super) fn emit(
        &mut self,
        tokenizer: &Tokenizer,
        rows: &[Row],
        events: &mpsc::UnboundedSender<Event>,
    ) -> Result<(), DecodeError> {
        for (i, row) in rows.iter().enumerate().take(self.sent.len()) {
            let mut upto = if row.finish.is_some() {
                row.text.len()
            } else {
                row.text.len().saturating_sub(self.hold)
            };
            while !row.text.is_char_boundary(upto) {
                upto -= 1;
            }
            let (logprobs, span) = match self.spans.get_mut(i) {
                Some(sp) => {
                    if sp.len() < row.tokens.len() {
                        sp.push(tokenizer, &row.tokens[sp.len()..])?;
                    }
                    if row.finish.is_some() {
                        sp.finish(tokenizer)?;
                    }
                    let r = sp.take_upto(upto);
                    let lps = token_logprobs(
                        tokenizer,
                        &row.tokens[r.clone()],
                        &row.token_logprobs[r.clone()],
                    );
                    (Some(lps), Some(r))
                }
                None => (None, None),
            };
            // With log-probabilities, the ids are those of the tokens they are for (the two
            // lists pair up, chunk by chunk); without, every id generated so far.
            let token_ids = self.ids_sent.as_mut().map(|sent| {
                let to = span.as_ref().map_or(row.tokens.len(), |r| r.end);
                let from = sent[i].min(to);
                sent[i] = to;
                row.tokens[from..to].to_vec()
            });
            let sent = self.sent[i];
            if upto > sent
                || logprobs.as_ref().is_some_and(|l| !l.is_empty())
                || token_ids.as_ref().is_some_and(|t| !t.is_empty())
            {
                let _ = events.send(Event::Delta {
                    index: i,
                    text: row.text.get(sent..upto.max(sent)).unwrap_or("").to_string(),
                    logprobs,
                    token_ids,
                });
                self.sent[i] = upto.max(sent);
            }
        }
        Ok(())
    }
}
