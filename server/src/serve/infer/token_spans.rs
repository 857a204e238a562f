//! Which tokens' log-probabilities travel with which streamed chunk.
//!
//! Streamed text and tokens do not line up: a token can end inside a multi-byte character
//! (its text appears only with a later token), the stream holds back text that could still
//! start a stop string, and a stop string cuts the answer inside or before the tokens that
//! spelled it. The rule:
//!
//! * A token's text *ends* where the answer's text stood once the text it contributes to
//!   was released by the incremental detokenizer: for most tokens right after their own
//!   text; for a token that ends inside a character, after the token that completes it.
//! * A token's log-probability is sent with the first chunk whose text reaches its end
//!   (so a token whose text is still held back waits, and several tokens can share a
//!   chunk; at the finish a chunk with empty text carries any that remain).
//! * Tokens whose text ends past the returned text, that is the tokens that spelled a stop
//!   string (at least the one that completed it), are not sent. Every other token is, so
//!   the streamed entries, concatenated, are the non-streamed `logprobs` with the cut
//!   tokens left off the end, and their count is `usage.completion_tokens` minus the cut
//!   tokens.

use std::ops::Range;

use thresh_decoding::{DecodeError, IncrementalDetokenizer};
use thresh_models::Tokenizer;

/// Follows one answer's tokens as they are decoded and tells which of them a chunk of its
/// text completes. It replays the decoder's incremental detokenisation, so its text lengths
/// are those of the answer's text before any stop-string cut.
#[derive(Debug, Clone, Default)]
pub struct TokenSpans {
    detok: IncrementalDetokenizer,
    text_len: usize,
    ends: Vec<usize>,
    sent: usize,
    finished: bool,
}

impl TokenSpans {
    /// Spans of an answer with no tokens yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The ends of every token of a finished answer, `ids`, in its text (bytes, before a
    /// stop-string cut): a token whose end is past the returned text's length was cut.
    pub fn replay(tokenizer: &Tokenizer, ids: &[u32]) -> Result<Vec<usize>, DecodeError> {
        let mut s = Self::new();
        s.push(tokenizer, ids)?;
        s.finish(tokenizer)?;
        Ok(s.ends)
    }

    /// Tokens seen so far.
    pub fn len(&self) -> usize {
        self.detok.ids().len()
    }

    /// Whether no token was seen yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds the answer's new token ids, in order.
    pub fn push(&mut self, tokenizer: &Tokenizer, ids: &[u32]) -> Result<(), DecodeError> {
        for &id in ids {
            let chunk = self.detok.push(tokenizer, id)?;
            if !chunk.is_empty() {
                self.text_len += chunk.len();
                self.resolve();
            }
        }
        Ok(())
    }

    /// The answer ended: text the detokenizer still held back is released and every token
    /// gets its end. Calling it again does nothing.
    pub fn finish(&mut self, tokenizer: &Tokenizer) -> Result<(), DecodeError> {
        if !self.finished {
            self.finished = true;
            self.text_len += self.detok.flush(tokenizer)?.len();
            self.resolve();
        }
        Ok(())
    }

    /// Every token seen and not yet given an end ends at the current text length.
    fn resolve(&mut self) {
        let seen = self.detok.ids().len();
        self.ends.resize(seen, self.text_len);
    }

    /// The tokens to send with a chunk whose text reaches byte `upto` of the answer: those
    /// not sent yet whose text ends there or before. They count as sent.
    pub fn take_upto(&mut self, upto: usize) -> Range<usize> {
        let start = self.sent;
        while self.sent < self.ends.len() && self.ends[self.sent] <= upto {
            self.sent += 1;
        }
        start..self.sent
    }
}

/// Splits a finished answer into streamed pieces: the text cut before each space or
/// newline (one word with its leading space per piece), each with the range of tokens whose
/// text it completes, per [`TokenSpans`]' rule; `ends` from [`TokenSpans::replay`]. Tokens
/// that end at the text's end but no piece carries (an empty text) come in a last piece with
/// empty text; tokens cut by a stop string are in no piece.
pub fn word_pieces<'a>(text: &'a str, ends: &[usize]) -> Vec<(&'a str, Range<usize>)> {
    let mut cuts: Vec<usize> = text
        .char_indices()
        .skip(1)
        .filter(|&(_, c)| c == ' ' || c == '\n')
        .map(|(j, _)| j)
        .collect();
    if !text.is_empty() {
        cuts.push(text.len());
    }
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let (mut start, mut sent) = (0, 0);
    for j in cuts {
        let first = sent;
        while sent < ends.len() && ends[sent] <= j {
            sent += 1;
        }
        pieces.push((&text[start..j], first..sent));
        start = j;
    }
    let first = sent;
    while sent < ends.len() && ends[sent] <= text.len() {
        sent += 1;
    }
    if sent > first {
        pieces.push(("", first..sent));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_carry_the_tokens_they_complete() {
        // "ab cd" from tokens ending at 1, 2 (a, b), 3 (space), an empty token, 5 (cd).
        let ends = [1, 2, 3, 5, 5];
        let p = word_pieces("ab cd", &ends);
        assert_eq!(p, vec![("ab", 0..2), (" cd", 2..5)]);
    }

    #[test]
    fn tokens_past_the_text_are_cut() {
        // Text "ab" cut before a stop string the last two tokens spelled.
        let p = word_pieces("ab", &[1, 2, 3, 4]);
        assert_eq!(p, vec![("ab", 0..2)]);
    }

    #[test]
    fn tokens_of_an_empty_text_come_in_an_empty_piece() {
        assert_eq!(word_pieces("", &[0, 0]), vec![("", 0..2)]);
        assert!(word_pieces("", &[]).is_empty());
    }
}
