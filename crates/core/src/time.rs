//! Time as a value.
//!
//! A [`Timestamp`] is milliseconds on the server's clock. Nothing here reads a clock: callers
//! pass `now` in, which is what lets the simulator drive time and lets tests be exact.

use std::fmt;
use std::time::Duration;

/// Milliseconds since the Unix epoch, on the server's (monotonic within one process) clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);

    pub fn from_millis(millis: u64) -> Timestamp {
        Timestamp(millis)
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + duration`, saturating at the far future instead of overflowing.
    pub fn plus(self, duration: Duration) -> Timestamp {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(millis))
    }

    /// How long after `earlier` this instant is; zero when it is not after it.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}
