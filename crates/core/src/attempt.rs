//! The job-attempt state machine.
//!
//! ```text
//! queued -> offered -> running -> completed{success|failure|cancelled}
//! offered -> queued      (offer not accepted within the accept timeout; its token is revoked)
//! running -> lost        (lease expired; the job gets a new attempt or fails)
//! ```
//! `completed` and `lost` are terminal: no event moves an attempt out of them, so a finished
//! attempt can never be reported lost afterwards.

use crate::machine::{self, InvalidTransition, Transition, named_enum};

named_enum! {
    /// Where one attempt of a job stands.
    pub enum AttemptState {
        /// Waiting for a runner.
        Queued = "queued",
        /// Offered to one runner with a fencing epoch; waiting for its accept.
        Offered = "offered",
        /// Accepted; the runner holds a lease it must renew.
        Running = "running",
        /// Finished with a result reported by the runner (or cancelled before it ran).
        Completed = "completed",
        /// The lease expired: the runner stopped renewing. Terminal.
        Lost = "lost",
    }
}

named_enum! {
    /// What can happen to an attempt.
    pub enum AttemptEvent {
        /// Dispatch matched it with a runner.
        Offer = "offer",
        /// The runner accepted the offer with the current epoch.
        Accept = "accept",
        /// The offer was not accepted within the accept timeout.
        OfferTimeout = "offer_timeout",
        /// The runner renewed its lease.
        Renew = "renew",
        /// The runner reported a result.
        Complete = "complete",
        /// The lease deadline passed without a renewal.
        LeaseExpire = "lease_expire",
        /// An operator cancelled the job: ends a queued or offered attempt at once; a running
        /// attempt stays running until its runner reports the cancelled result.
        Cancel = "cancel",
    }
}

named_enum! {
    /// The result a runner reports for a completed attempt.
    pub enum AttemptResult {
        Success = "success",
        Failure = "failure",
        Cancelled = "cancelled",
    }
}

use AttemptEvent as E;
use AttemptState as S;

/// Every allowed transition of an attempt; any other pair is invalid.
pub const TRANSITIONS: &[Transition<AttemptState, AttemptEvent>] = &[
    Transition { from: S::Queued, event: E::Offer, to: S::Offered },
    Transition { from: S::Queued, event: E::Cancel, to: S::Completed },
    Transition { from: S::Offered, event: E::Accept, to: S::Running },
    Transition { from: S::Offered, event: E::OfferTimeout, to: S::Queued },
    Transition { from: S::Offered, event: E::Cancel, to: S::Completed },
    Transition { from: S::Running, event: E::Renew, to: S::Running },
    Transition { from: S::Running, event: E::Complete, to: S::Completed },
    Transition { from: S::Running, event: E::LeaseExpire, to: S::Lost },
    Transition { from: S::Running, event: E::Cancel, to: S::Running },
];

impl AttemptState {
    /// The state after `event`, or the invalid pair.
    pub fn on(self, event: AttemptEvent) -> Result<AttemptState, InvalidTransition> {
        machine::step("attempt", TRANSITIONS, self, event)
    }

    /// Offered and running attempts hold a runner slot and make that runner busy.
    pub fn holds_runner(self) -> bool {
        matches!(self, S::Offered | S::Running)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, S::Completed | S::Lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn every_pair_has_a_reviewed_outcome() {
        let rendered = machine::render_outcomes("attempt", TRANSITIONS, AttemptState::ALL, AttemptEvent::ALL);
        expect![[r#"
            queued     --offer         --> offered
            queued     --accept        --> invalid
            queued     --offer_timeout --> invalid
            queued     --renew         --> invalid
            queued     --complete      --> invalid
            queued     --lease_expire  --> invalid
            queued     --cancel        --> completed
            offered    --offer         --> invalid
            offered    --accept        --> running
            offered    --offer_timeout --> queued
            offered    --renew         --> invalid
            offered    --complete      --> invalid
            offered    --lease_expire  --> invalid
            offered    --cancel        --> completed
            running    --offer         --> invalid
            running    --accept        --> invalid
            running    --offer_timeout --> invalid
            running    --renew         --> running
            running    --complete      --> completed
            running    --lease_expire  --> lost
            running    --cancel        --> running
            completed  --offer         --> invalid
            completed  --accept        --> invalid
            completed  --offer_timeout --> invalid
            completed  --renew         --> invalid
            completed  --complete      --> invalid
            completed  --lease_expire  --> invalid
            completed  --cancel        --> invalid
            lost       --offer         --> invalid
            lost       --accept        --> invalid
            lost       --offer_timeout --> invalid
            lost       --renew         --> invalid
            lost       --complete      --> invalid
            lost       --lease_expire  --> invalid
            lost       --cancel        --> invalid
        "#]]
        .assert_eq(&rendered);
    }

    #[test]
    fn terminal_states_accept_no_event() {
        for &state in AttemptState::ALL.iter().filter(|state| state.is_terminal()) {
            for &event in AttemptEvent::ALL {
                assert!(state.on(event).is_err(), "{state} accepted {event}");
            }
        }
    }

    #[test]
    fn a_completed_attempt_can_never_become_lost() {
        // F1: nothing turns a finished attempt into a lost one.
        assert!(AttemptState::Completed.on(AttemptEvent::LeaseExpire).is_err());
        assert!(TRANSITIONS.iter().all(|row| !(row.from == S::Completed && row.to == S::Lost)));
    }

    #[test]
    fn names_round_trip() {
        for &state in AttemptState::ALL {
            assert_eq!(AttemptState::parse(&state.to_string()), Some(state));
        }
        for &event in AttemptEvent::ALL {
            assert_eq!(AttemptEvent::parse(&event.to_string()), Some(event));
        }
        for &result in AttemptResult::ALL {
            assert_eq!(AttemptResult::parse(&result.to_string()), Some(result));
        }
    }
}
