//! The kinds of request a `thresh-bench load --mix` run draws from.

use std::fmt;
use std::str::FromStr;

use crate::error::BenchError;

/// The kind of one request of a mixed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequestKind {
    /// A whole (non-streamed) response without alignment.
    Plain,
    /// A whole response with `alignment.strategy = best_of_n`.
    BestOfN,
    /// A whole response with `alignment.strategy = speculative_rejection`.
    SpeculativeRejection,
    /// A streamed response without alignment, read to the end.
    Stream,
    /// A streamed request the client drops after the first event or a short random time,
    /// whichever comes first: cancelled by design, never counted as a failure.
    Cancel,
}

impl RequestKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [RequestKind; 5] = [
        RequestKind::Plain,
        RequestKind::BestOfN,
        RequestKind::SpeculativeRejection,
        RequestKind::Stream,
        RequestKind::Cancel,
    ];

    /// The name used by `--mix` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Plain => "plain",
            RequestKind::BestOfN => "best-of-n",
            RequestKind::SpeculativeRejection => "speculative-rejection",
            RequestKind::Stream => "stream",
            RequestKind::Cancel => "cancel",
        }
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RequestKind {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase().replace('_', "-");
        let k = match t.as_str() {
            "plain" => RequestKind::Plain,
            "best-of-n" | "bon" => RequestKind::BestOfN,
            "speculative-rejection" | "sr" => RequestKind::SpeculativeRejection,
            "stream" => RequestKind::Stream,
            "cancel" => RequestKind::Cancel,
            _ => {
                return Err(BenchError::Config(format!(
                    "unknown request kind {s:?} in --mix (known: plain, best-of-n, \
                     speculative-rejection, stream, cancel)"
                )));
            }
        };
        Ok(k)
    }
}
