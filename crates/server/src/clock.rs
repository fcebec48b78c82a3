//! The server's clock.
//!
//! Leases are measured on a clock that never goes backwards within one process: the wall time
//! read once at start, plus a monotonic `Instant` since then. A wall-clock step (NTP, an
//! operator) therefore cannot expire or extend leases. Across restarts, the store's outage
//! extension (`Store::mark_alive`) takes over.

use std::time::{SystemTime, UNIX_EPOCH};

use baton_core::Timestamp;
use tokio::time::Instant;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;
}

#[derive(Debug)]
pub struct SystemClock {
    base_millis: u64,
    start: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        let base_millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        SystemClock::starting_at(Timestamp(base_millis))
    }

    /// A clock that reads `origin` now (the simulator's fixed epoch).
    pub fn starting_at(origin: Timestamp) -> SystemClock {
        SystemClock { base_millis: origin.0, start: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.base_millis).plus(self.start.elapsed())
    }
}

/// Renders a timestamp as RFC 3339 in UTC, as the API does.
pub fn rfc3339(at: Timestamp) -> String {
    let millis = i64::try_from(at.0).unwrap_or(i64::MAX);
    match jiff::Timestamp::from_millisecond(millis) {
        Ok(timestamp) => timestamp.to_string(),
        Err(_) => format!("@{millis}ms"),
    }
}
