//! An incremental parser of server-sent events: feed it the bytes of a response as they
//! arrive, in chunks of any size, and take out the `data` payloads of complete events.

/// Splits a byte stream into SSE `data` payloads (comments and other fields are skipped;
/// multi-line data is joined with `\n`).
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    data: Vec<String>,
}

impl SseParser {
    /// A parser with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes; returns the payloads of the events they complete, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(self.data.join("\n"));
                    self.data.clear();
                }
            } else if let Some(d) = line.strip_prefix("data:") {
                self.data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            }
        }
        out
    }

    /// The payload of an event left unterminated when the stream ended, if any.
    pub fn finish(&mut self) -> Option<String> {
        let rest = self.feed(b"\n\n");
        rest.into_iter().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = ": started strategy=none\n\ndata: {\"a\":1}\n\n: progress\n\ndata: {\"b\":\r\ndata: 2}\r\n\r\ndata: [DONE]\n\n";

    #[test]
    fn events_come_out_whole_whatever_the_chunking() {
        let bytes = STREAM.as_bytes();
        for size in [1, 2, 3, 7, 16, bytes.len()] {
            let mut p = SseParser::new();
            let mut got = Vec::new();
            for chunk in bytes.chunks(size) {
                got.extend(p.feed(chunk));
            }
            assert_eq!(p.finish(), None);
            assert_eq!(
                got,
                vec!["{\"a\":1}", "{\"b\":\n2}", "[DONE]"],
                "chunk size {size}"
            );
        }
    }

    #[test]
    fn an_unterminated_event_is_returned_at_the_end() {
        let mut p = SseParser::new();
        assert!(p.feed(b"data: tail").is_empty());
        assert_eq!(p.finish().as_deref(), Some("tail"));
    }
}
