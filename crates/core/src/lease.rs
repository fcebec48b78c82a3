//! Lease arithmetic.
//!
//! A runner may act on an attempt only while it holds the attempt's lease. The server measures
//! every deadline on its own clock from the durable write (accept or renewal); nothing in this
//! module reads a clock. After a control-plane outage, live deadlines are moved forward by the
//! length of the outage, so leases do not all expire together the moment the server returns.

use std::time::Duration;

use crate::Timestamp;

/// The protocol's timing parameters. The defaults suit production; tests shrink them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// How long a lease lasts after an accept or a renewal. Runners renew every third of it.
    pub lease_ttl: Duration,
    /// How long an offer waits for its accept before it is revoked and re-offered.
    pub accept_timeout: Duration,
    /// How long a session lives after its last poll or renewal.
    pub session_ttl: Duration,
    /// The longest a long-poll may wait.
    pub long_poll_max: Duration,
}

impl Timeouts {
    pub const DEFAULT: Timeouts = Timeouts {
        lease_ttl: Duration::from_secs(60),
        accept_timeout: Duration::from_secs(15),
        session_ttl: Duration::from_secs(90),
        long_poll_max: Duration::from_secs(60),
    };

    /// The renewal interval runners use: a lease survives two lost renewals.
    pub fn renew_interval(&self) -> Duration {
        self.lease_ttl / 3
    }

    /// Checks the relationships between the timeouts; the server refuses to start otherwise.
    pub fn validate(&self) -> Result<(), TimeoutsError> {
        if self.lease_ttl < Duration::from_millis(30) {
            return Err(TimeoutsError("lease ttl must be at least 30 ms"));
        }
        if self.accept_timeout.is_zero() {
            return Err(TimeoutsError("accept timeout must be positive"));
        }
        // Runners ask for whole seconds of wait; a shorter maximum would refuse every poll.
        if self.long_poll_max < Duration::from_secs(1) {
            return Err(TimeoutsError("the longest long-poll must be at least 1 s"));
        }
        // A session must outlive one full long-poll, or an idle runner would flap offline.
        if self.session_ttl <= self.long_poll_max {
            return Err(TimeoutsError("session ttl must be longer than the longest long-poll"));
        }
        Ok(())
    }
}

// The shipped defaults obey the same relationships `validate` checks.
const _: () = assert!(Timeouts::DEFAULT.session_ttl.as_millis() > Timeouts::DEFAULT.long_poll_max.as_millis());
const _: () = assert!(Timeouts::DEFAULT.lease_ttl.as_millis() >= 30);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timeouts: {0}")]
pub struct TimeoutsError(pub &'static str);

/// The lease deadline after an accept or renewal committed at `now`.
pub fn deadline(now: Timestamp, ttl: Duration) -> Timestamp {
    now.plus(ttl)
}

/// A deadline has passed when `now` is strictly after it.
pub fn is_past(deadline: Timestamp, now: Timestamp) -> bool {
    now > deadline
}

/// How long the control plane was away, given the last instant it recorded itself alive and the
/// tick at which it records that. Gaps of up to two ticks are normal scheduling jitter.
pub fn outage(last_alive: Timestamp, now: Timestamp, tick: Duration) -> Option<Duration> {
    let gap = now.since(last_alive);
    (gap > tick * 2).then_some(gap)
}

/// A live deadline moved forward by an outage.
pub fn extend(deadline: Timestamp, outage: Duration) -> Timestamp {
    deadline.plus(outage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_and_expiry() {
        let now = Timestamp(1_000);
        let due = deadline(now, Duration::from_millis(500));
        assert_eq!(due, Timestamp(1_500));
        assert!(!is_past(due, Timestamp(1_500)), "the deadline itself is still inside the lease");
        assert!(is_past(due, Timestamp(1_501)));
    }

    #[test]
    fn outage_detection() {
        let tick = Duration::from_secs(1);
        assert_eq!(outage(Timestamp(10_000), Timestamp(11_500), tick), None);
        assert_eq!(outage(Timestamp(10_000), Timestamp(12_000), tick), None);
        assert_eq!(outage(Timestamp(10_000), Timestamp(40_000), tick), Some(Duration::from_secs(30)));
        // A clock that went backwards is no outage.
        assert_eq!(outage(Timestamp(10_000), Timestamp(5_000), tick), None);
    }

    #[test]
    fn extension_moves_deadlines_by_the_outage() {
        assert_eq!(extend(Timestamp(2_000), Duration::from_secs(30)), Timestamp(32_000));
        assert_eq!(extend(Timestamp(u64::MAX - 1), Duration::from_secs(1)), Timestamp(u64::MAX));
    }

    #[test]
    fn validate_rejects_a_session_shorter_than_a_poll() {
        assert!(Timeouts::DEFAULT.validate().is_ok());
        let bad = Timeouts { session_ttl: Duration::from_secs(30), ..Timeouts::DEFAULT };
        assert!(bad.validate().is_err());
        let short_poll = Timeouts { long_poll_max: Duration::from_millis(500), ..Timeouts::DEFAULT };
        assert!(short_poll.validate().is_err());
        assert_eq!(Timeouts::DEFAULT.renew_interval(), Duration::from_secs(20));
    }
}
