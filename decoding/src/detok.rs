//! Incremental detokenisation that never emits half a UTF-8 character.
//!
//! Byte-level BPE tokens can end in the middle of a multi-byte character, and some
//! tokenizers change the text of earlier tokens depending on what follows (leading-space
//! rules). As TGI and vLLM do, text is decoded over a short window of recent ids, and a
//! chunk is released only when it does not end in the replacement character.

use thresh_models::Tokenizer;

use crate::error::Result;

/// Turns a growing list of ids into a stream of text chunks.
#[derive(Debug, Clone, Default)]
pub struct IncrementalDetokenizer {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl IncrementalDetokenizer {
    /// A detokenizer with no ids yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one id and returns the text it completes (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let prefix = tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset], true)?;
        let full = tokenizer.decode(&self.ids[self.prefix_offset..], true)?;
        if full.len() > prefix.len()
            && !full.ends_with('\u{FFFD}')
            && full.is_char_boundary(prefix.len())
        {
            let chunk = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(chunk)
        } else {
            Ok(String::new())
        }
    }

    /// Text still held back (an incomplete character at the end), released at the finish.
    pub fn flush(&mut self, tokenizer: &Tokenizer) -> Result<String> {
        let prefix = tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset], true)?;
        let full = tokenizer.decode(&self.ids[self.prefix_offset..], true)?;
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        if full.len() > prefix.len() && full.is_char_boundary(prefix.len()) {
            Ok(full[prefix.len()..].to_string())
        } else {
            Ok(String::new())
        }
    }

    /// Every id pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

/// Finds the earliest stop string in `text` that ends after byte `from`, returning where it
/// starts. Stop strings may span token boundaries, so the caller passes the full text and the
/// length it had before the newest chunk.
pub fn find_stop(text: &str, from: usize, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            // A match that ends in the new text starts at most len(s) - 1 bytes before it.
            let mut start = from.saturating_sub(s.len().saturating_sub(1));
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            text[start..].find(s.as_str()).map(|i| start + i)
        })
        .min()
}

/// Cuts `text` before the earliest stop string that ends after byte `from` (see
/// [`find_stop`]) and returns the stop string it found.
pub fn cut_at_stop(text: &mut String, from: usize, stops: &[String]) -> Option<String> {
    let at = find_stop(text, from, stops)?;
    let matched = stops
        .iter()
        .find(|s| text[at..].starts_with(s.as_str()))
        .cloned()
        .unwrap_or_default();
    text.truncate(at);
    Some(matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_spanning_chunks() {
        let stops = vec!["\n\nUser:".to_string(), "END".to_string()];
        assert_eq!(find_stop("hello\n\nUs", 7, &stops), None);
        assert_eq!(find_stop("hello\n\nUser: hi", 9, &stops), Some(5));
        assert_eq!(find_stop("aENDbEND", 0, &stops), Some(1));
        assert_eq!(find_stop("aENDbEND", 5, &stops), Some(5));
        assert_eq!(find_stop("héllo END", 4, &stops), Some(7));
        assert_eq!(find_stop("x", 0, &[String::new()]), None);
    }
}
